"""Galaxy model library: synthesizer reference simulator, synference layout, reconstruction check."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import galaxy_test_model
from seqsbi.errors import LibraryError
from seqsbi.simulators.galaxy import filters
from seqsbi.simulators.galaxy.library import ab_magnitudes, check_reconstruction, read_library, write_library
from seqsbi.simulators.galaxy.model import PARAMETERS, ReferenceGalaxySimulator

RANGES = {"redshift": (0.5, 5.0), "log_mass": (8, 12), "tau_v": (0.01, 3), "tau": (0.1, 2),
          "peak_age": (10, 1000), "log10metallicity": (-4, -1.4)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small BC03 grid and the 8 NIRCam wide bands in a private SVO cache, and a 12-galaxy library."""
    base = tmp_path_factory.mktemp("galaxy")
    spec, _ = galaxy_test_model(base, n_wavelengths=1000)
    rng = np.random.default_rng(3)
    theta = np.column_stack([rng.uniform(*RANGES[name], size=12) for name in PARAMETERS])
    simulator = ReferenceGalaxySimulator(spec, base / "svo")
    path = base / "library.hdf5"
    write_library(path, "test", theta, simulator(theta), spec)
    return base, spec, theta, path


def test_library_round_trips(setup):
    base, spec, theta, path = setup
    library = read_library(path)
    assert library.parameter_names == PARAMETERS and library.filter_codes == filters.NIRCAM_WIDE
    assert library.parameter_units[PARAMETERS.index("peak_age")] == "Myr"
    assert np.array_equal(library.theta, theta)
    assert library.photometry_njy.shape == (12, 8) and np.all(library.photometry_njy > 0)
    assert library.spec == spec
    with h5py.File(path) as hf:
        assert hf["Grid/Photometry"].shape == (8, 12) and hf["Grid/Parameters"].shape == (6, 12)
        assert hf.attrs["PhotometryUnits"] == "nJy" and hf.attrs["model_name"] == "test"


def test_photometry_responds_to_parameters_as_physics_says(setup):
    base, spec, theta, _ = setup
    simulator = ReferenceGalaxySimulator(spec, base / "svo")
    row = np.array([2.0, 10.0, 0.0, 0.5, 300.0, -2.0])
    heavier, dusty = row.copy(), row.copy()
    heavier[1] += 1.0
    dusty[2] = 1.0
    flux, flux_heavier, flux_dusty = simulator(np.stack([row, heavier, dusty]))
    assert np.allclose(flux_heavier / flux, 10.0)  # photometry scales with mass formed
    assert np.all(flux_dusty < flux) and (flux_dusty / flux)[0] < (flux_dusty / flux)[-1]  # dust reddens


def test_simulator_rebuilt_from_library_metadata_reproduces_it(setup):
    base, _, _, path = setup
    library = read_library(path)
    rebuilt = ReferenceGalaxySimulator(library.spec, base / "svo")
    assert check_reconstruction(library, rebuilt, np.arange(12)) == []


def test_reconstruction_check_names_tampered_rows_and_bands(setup, tmp_path):
    base, spec, theta, path = setup
    library = read_library(path)
    tampered = library.photometry_njy.copy()
    tampered[4, 2] *= 1.01  # 0.011 mag
    write_library(tmp_path / "tampered.hdf5", "tampered", library.theta, tampered, spec)
    problems = check_reconstruction(read_library(tmp_path / "tampered.hdf5"),
                                    ReferenceGalaxySimulator(spec, base / "svo"), np.arange(12))
    assert len(problems) == 1 and problems[0].startswith("row 4 JWST/NIRCam.F115W")


def test_synference_style_library_is_readable(tmp_path):
    path = tmp_path / "synference.hdf5"
    with h5py.File(path, "w") as hf:
        hf.create_dataset("Grid/Parameters", data=np.ones((2, 5)))
        hf.create_dataset("Grid/Photometry", data=np.full((3, 5), 100.0))
        hf.attrs["ParameterNames"] = np.array(["redshift", "log_mass"], dtype="S")
        hf.attrs["FilterCodes"] = np.array(["JWST/NIRCam.F070W", "JWST/NIRCam.F090W", "JWST/NIRCam.F115W"], dtype="S")
    library = read_library(path)
    assert library.parameter_names == ("redshift", "log_mass") and library.filter_codes[2] == "JWST/NIRCam.F115W"
    assert library.spec is None and library.parameter_units == ("", "log10 Msun")
    assert np.allclose(ab_magnitudes(library.photometry_njy), 31.4 - 5.0)


@pytest.mark.parametrize("missing", ["Grid/Photometry", "FilterCodes"])
def test_library_missing_keys_are_named(setup, tmp_path, missing):
    _, spec, theta, path = setup
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(path.read_bytes())
    with h5py.File(broken, "a") as hf:
        if missing in hf:
            del hf[missing]
        else:
            del hf.attrs[missing]
    with pytest.raises(LibraryError, match=f"lacks .*'{missing}'"):
        read_library(broken)
