"""Write a small model library with synference 0.1.4's own library API (run with .venv-synference's python).

    .venv-synference/bin/python tests/synference_library.py OUT_DIR GRID_DIR GRID_NAME SVO_CACHE N [CODE ...]
    .venv-synference/bin/python tests/synference_library.py --inspect LIBRARY [LIBRARY ...]

``--inspect`` reads libraries (seqsbi's too) with synference's own code and prints, one JSON line each, what its
``GalaxySimulator.from_library`` takes from the ``Model`` group: the arrays through
``synference.utils.load_library_from_hdf5``, the cosmology through ``Cosmology.from_format(..., "yaml")``,
the SFH and metallicity classes, the dust law built from its stored keys and values, the fixed parameters
and the instrument through synthesizer's ``Instrument._from_hdf5``. (``from_library`` itself cannot rebuild
an ``AttenuatedEmission`` model, synference's own libraries included: it calls the class with ``grid`` and
``dust_curve`` only, and ``AttenuatedEmission`` also needs ``apply_to`` and ``emitter``.)

The model is the synference seed's: LogNormal SFH (tau, peak_age in Myr), DeltaConstant metallicity, incident
stellar emission attenuated by a PowerLaw dust curve (slope -0.7; tau_v per galaxy), Inoue14 IGM, Planck18,
redshift 0.01-5, log_mass 8-12, parameters drawn from synference's Latin hypercube. Filters come from the
synthesizer SVO cache SVO_CACHE (filled by the caller, offline). Writes OUT_DIR/synference_library.hdf5 and
prints its path. Only synference, synthesizer and numpy here: seqsbi is not imported, so the library is
synference's writing alone.

synference's package ``__init__`` imports LtU-ILI (``custom_runner.py``), which is not on PyPI; its library
generation does not need it, so this script loads ``synference.library`` under a bare package module (the
``logger`` that ``__init__`` would have made) instead of running that ``__init__``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import types
from pathlib import Path


def import_synference_library():
    """``synference.library`` without synference's ``__init__`` (which needs LtU-ILI)."""
    if "synference.library" in sys.modules:
        return sys.modules["synference.library"]
    spec = importlib.util.find_spec("synference")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("synference is not installed in this interpreter; run `make synference-venv` and use "
                         ".venv-synference/bin/python")
    package = types.ModuleType("synference")
    package.__path__ = list(spec.submodule_search_locations)
    package.logger = logging.getLogger("synference")
    sys.modules["synference"] = package
    import synference.library as library

    return library


def main(out_dir: str, grid_dir: str, grid_name: str, svo_cache: str, n: str, *codes: str) -> None:
    os.environ["SYNTHESIZER_SVO_FILTER_CACHE"] = str(Path(svo_cache).resolve())
    library = import_synference_library()
    import numpy as np
    from astropy.cosmology import Planck18
    from synthesizer.emission_models import AttenuatedEmission, IncidentEmission
    from synthesizer.emission_models.attenuation import PowerLaw
    from synthesizer.grid import Grid
    from synthesizer.instruments import FilterCollection, Instrument
    from synthesizer.parametric import SFH, ZDist
    from unyt import Myr

    codes = codes or ("JWST/NIRCam.F090W", "JWST/NIRCam.F200W", "JWST/NIRCam.F356W", "JWST/NIRCam.F444W")
    grid = Grid(grid_name, grid_dir=grid_dir)
    instrument = Instrument("JWST", filters=FilterCollection(filter_codes=list(codes), new_lam=grid.lam))
    ranges = {"redshift": (0.01, 5.0), "log_mass": (8.0, 12.0), "tau_v": (0.0, 2.0), "tau": (0.1, 2.0),
              "peak_age": (10.0, 500.0), "log10metallicity": (-4.0, -1.4)}
    draws = library.draw_from_hypercube(ranges, int(n), rng=np.random.default_rng(7))
    # float32 draws: synthesizer refuses a float32 metallicity beside its float64 masses (it never converts).
    draws = {name: np.asarray(values, dtype=np.float64) for name, values in draws.items()}
    sfhs, redshifts = library.generate_sfh_basis(
        sfh_type=SFH.LogNormal, sfh_param_names=["tau", "peak_age"],
        sfh_param_arrays=[draws["tau"], draws["peak_age"] * Myr], redshifts=np.asarray(draws["redshift"]),
        max_redshift=20, cosmo=Planck18, iterate_redshifts=False)
    metal_dists = [ZDist.DeltaConstant(log10metallicity=z) for z in draws["log10metallicity"]]
    emission = AttenuatedEmission(dust_curve=PowerLaw(slope=-0.7), apply_to=IncidentEmission(grid), emitter="stellar")
    basis = library.GalaxyBasis(
        model_name="synference_test", redshifts=redshifts, grid=grid, emission_model=emission, sfhs=sfhs,
        metal_dists=metal_dists, cosmo=Planck18, instrument=instrument, galaxy_params={"tau_v": draws["tau_v"]},
        redshift_dependent_sfh=True, params_to_ignore=["max_age"], build_library=False)
    basis.create_mock_library(out_name="synference_library", log_stellar_masses=draws["log_mass"],
                              emission_model_key="attenuated", out_dir=str(out_dir), n_proc=1, overwrite=True)
    print(Path(out_dir) / "synference_library.hdf5")


def inspect_library(path: str) -> None:
    """Print (JSON) what synference's reader takes from ``path``; see the module docstring."""
    import json

    library = import_synference_library()
    import h5py
    import numpy as np
    from astropy.cosmology import Cosmology, realizations
    from synthesizer.emission_models import attenuation
    from synthesizer.instruments import Instrument
    from synthesizer.parametric import SFH, ZDist

    arrays = sys.modules["synference.utils"].load_library_from_hdf5(path)
    with h5py.File(path, "r") as hf:
        model = hf["Model"]
        cosmology = Cosmology.from_format(model.attrs["cosmology"], format="yaml")
        emission = model["EmissionModel"]
        dust = getattr(attenuation, emission.attrs["dust_law"])(**{
            key: float(value) for key, value in zip(emission.attrs["dust_attenuation_keys"],
                                                    emission.attrs["dust_attenuation_values"])})
        instrument = Instrument._from_hdf5(model["Instrument"])
        out = {
            "parameter_names": [str(n) for n in arrays["parameter_names"]],
            "filter_codes": [str(c) for c in arrays["filter_codes"]],
            "photometry_shape": list(np.shape(arrays["photometry"])),
            "cosmology_equals_planck18": bool(cosmology == realizations.Planck18),
            "sfh_class": getattr(SFH, str(model.attrs["sfh_class"])).__name__,
            "metallicity_distribution_class": getattr(
                ZDist, str(model.attrs["metallicity_distribution_class"])).__name__,
            "emission_model": str(emission.attrs["name"]),
            "emission_model_key": str(model.attrs["emission_model_key"]),
            "dust_law": type(dust).__name__,
            "dust_slope": float(dust.slope),
            "fixed_params": {str(n): [float(v), str(u)] for n, v, u in zip(
                model.attrs["fixed_param_names"], model.attrs["fixed_param_values"], model.attrs["fixed_param_units"])},
            "instrument_filters": list(instrument.filters.filter_codes),
            "synference_library_module": library.__name__,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "--inspect":
        for path in sys.argv[2:]:
            inspect_library(path)
    else:
        main(*sys.argv[1:])
