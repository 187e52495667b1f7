"""A library written by synference 0.1.4 itself (issue 19): read as synference writes it, rebuilt exactly,
fitted through the workflow; and seqsbi's libraries read by synference's own code.

The library comes from tests/synference_library.py run with .venv-synference's python (`make
synference-venv`, built here when missing): synference's GalaxyBasis on seqsbi's BC03 test grid, 4 NIRCam
bands, LogNormal SFH, DeltaConstant metallicity, PowerLaw dust, Inoue14, Planck18.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, galaxy_test_model, snakemake, write_workdir
from seqsbi.errors import LibraryError
from seqsbi.simulators.galaxy.library import check_reconstruction, read_library, write_library
from seqsbi.simulators.galaxy.model import build_simulator

SYNFERENCE_PYTHON = ROOT / ".venv-synference" / "bin" / "python"
SCRIPT = ROOT / "tests" / "synference_library.py"
CODES = ("JWST/NIRCam.F090W", "JWST/NIRCam.F200W", "JWST/NIRCam.F356W", "JWST/NIRCam.F444W")
N_ROWS = 24


def synference(*args: str) -> str:
    """Run tests/synference_library.py with synference's venv (built when missing); its stdout."""
    if not (ROOT / ".venv-synference" / ".synference-installed").exists():
        subprocess.run(["make", "-C", str(ROOT), "-o", ".venv/.seqsbi-installed", "synference-venv"], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNTHESIZER_DIR": str(ROOT / ".synthesizer")}
    result = subprocess.run([str(SYNFERENCE_PYTHON), str(SCRIPT), *args], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(base directory, the synference library's path, seqsbi's spec of the same grid and filters)."""
    base = tmp_path_factory.mktemp("synference")
    spec, svo = galaxy_test_model(base, n_wavelengths=1000)
    out = synference(str(base / "out"), str(base / "grids"), spec.grid_name, str(svo), str(N_ROWS), *CODES)
    path = base / "out" / "synference_library.hdf5"
    assert str(path) in out
    return base, path, dataclasses.replace(spec, filters=CODES)


def test_synference_library_is_read_as_synference_writes_it(made):
    _, path, _ = made
    with h5py.File(path) as hf:  # what synference wrote, as the issue describes it
        assert hf["Model"].attrs["cosmology"].startswith("!astropy.cosmology.FlatLambdaCDM")
        assert "sfh_max_age" not in hf["Model"].attrs and "sfh" not in hf["Model"].attrs
    library = read_library(path)
    spec = library.spec
    assert library.model_name == "synference_test" and library.theta.shape == (N_ROWS, 6)
    assert (spec.sfh, spec.metal_dist, spec.emission_model) == ("LogNormal", "DeltaConstant", "attenuated_incident")
    assert (spec.dust_law, spec.dust_law_params, spec.igm) == ("PowerLaw", {"slope": -0.7}, "Inoue14")
    assert spec.cosmology == "Planck18"  # the YAML is exactly Planck18's parameters
    assert (spec.sfh_max_age, spec.sfh_max_redshift, spec.fixed_parameters) == ("age_since_max_redshift", 20.0,
                                                                                {"min_age": 0.0})
    assert list(library.filter_curves) == list(CODES)  # its own curves: no SVO cache needed


@pytest.mark.parametrize("backend", ["batched", "reference"])
def test_synference_library_rebuilds_to_1e3_mag_on_every_row_and_band(made, tmp_path, backend):
    _, path, _ = made
    library = read_library(path)
    rows = np.arange(N_ROWS)
    simulator = build_simulator(library.spec, tmp_path / "no_svo_cache", backend, library.filter_curves)
    assert check_reconstruction(library, simulator, rows) == []
    if backend == "batched":  # the proof has teeth: seqsbi's old max-age convention fails it
        wrong = copy.copy(simulator)  # the same grid, curves and redshift tables; only the spec differs
        wrong.spec = dataclasses.replace(library.spec, sfh_max_age="age_of_universe_at_redshift")
        assert len(check_reconstruction(library, wrong, rows)) > N_ROWS


@pytest.mark.parametrize(("where", "attribute", "value", "message"), [
    ("Model", "sfh_class", "DelayedExponential", "'sfh_class' is 'DelayedExponential'"),
    ("Model", "metallicity_distribution_class", "Normal", "'metallicity_distribution_class' is 'Normal'"),
    ("Model/EmissionModel", "name", "PacmanEmission", "'EmissionModel/name' is 'PacmanEmission'"),
    ("Model/EmissionModel", "dust_law", "Calzetti2000", "'dust_law' is 'Calzetti2000'"),
    ("Model", "emission_model_key", "total", "'emission_model_key' is 'total'"),
    ("Model", "fixed_param_names", np.array(["max_age"], dtype=object), "'fixed_param_names' is \\['max_age'\\]"),
    ("Model", "cosmology", "!astropy.cosmology.NoSuch\nH0: 1", "attribute 'cosmology'"),
])
def test_what_seqsbi_cannot_rebuild_is_named_with_its_value(made, tmp_path, where, attribute, value, message):
    _, path, _ = made
    changed = tmp_path / "changed.hdf5"
    shutil.copy(path, changed)
    with h5py.File(changed, "a") as hf:
        hf[where].attrs[attribute] = value
    with pytest.raises(LibraryError, match=message):
        read_library(changed)


def test_seqsbi_library_records_synferences_attributes_and_synference_reads_them(made, tmp_path):
    base, path, spec = made
    theta = read_library(path).theta[:3]
    simulator = build_simulator(spec, base / "svo", "batched")
    ours = tmp_path / "seqsbi.hdf5"
    write_library(ours, "ours", theta, simulator(theta), spec, simulator.filters)
    assert read_library(ours).spec == spec  # seqsbi's own attributes win where both are written
    theirs, mine = (json.loads(line) for line in synference("--inspect", str(path), str(ours)).splitlines()[-2:])
    assert mine["photometry_shape"] == [4, 3] and theirs["photometry_shape"] == [4, N_ROWS]
    for key in ("parameter_names", "filter_codes", "cosmology_equals_planck18", "sfh_class",
                "metallicity_distribution_class", "emission_model", "emission_model_key", "dust_law", "dust_slope",
                "fixed_params", "instrument_filters"):
        assert mine[key] == theirs[key], key
    assert mine["cosmology_equals_planck18"] and mine["fixed_params"] == {"min_age": [0.0, "yr"]}


def test_grid_directory_override_and_a_missing_grid_are_settled_at_validation(made, tmp_path):
    from conftest import tiny_run
    from seqsbi.config import plan_workflow
    from seqsbi.errors import ConfigError

    base, path, _ = made
    library = tmp_path / "theirs.hdf5"
    shutil.copy(path, library)
    with h5py.File(library, "a") as hf:
        hf["Model"].attrs["grid_dir"] = "/elsewhere/grids"  # as written on another machine
    config = yaml.safe_load(write_workdir(tmp_path, {"r": tiny_run()}).read_text())
    config["galaxy"] = {"filters": list(CODES), "library": {"path": str(library)}}
    with pytest.raises(ConfigError, match="grid_dir '/elsewhere/grids' and grid_name 'bc03_test'.*set "
                                          "galaxy.library.grid_dir"):
        plan_workflow(config)
    config["galaxy"]["library"]["grid_dir"] = str(tmp_path)
    with pytest.raises(ConfigError, match="galaxy.library.grid_dir: .* holds no bc03_test.hdf5"):
        plan_workflow(config)
    config["galaxy"]["library"]["grid_dir"] = str(base / "grids")
    plan_workflow(config)


@pytest.mark.slow
@pytest.mark.workflow
def test_synference_library_fits_end_to_end_with_its_grid_elsewhere(made, tmp_path):
    """A tiny fit (1 round x 200 simulations) on the synference library through the CLI, its grid moved
    (galaxy.library.grid_dir); without grid_dir the missing grid stops Snakemake before any job."""
    base, path, _ = made
    library = tmp_path / "theirs.hdf5"
    shutil.copy(path, library)
    moved = tmp_path / "moved_grids"
    shutil.copytree(base / "grids", moved)
    with h5py.File(library, "a") as hf:
        hf["Model"].attrs["grid_dir"] = str(tmp_path / "gone")  # as on another machine
    config_path = write_workdir(tmp_path / "work", {})
    config = yaml.safe_load(config_path.read_text())
    config["galaxy"] = {"filters": list(CODES), "library": {"name": "theirs", "path": str(library), "check_rows": 24},
                        "features": {"kind": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0}}}
    config["runs"] = {"g": {"simulator": "galaxy", "prior": {"from_library": True}, "engine": "NPE", "rounds": 1,
                            "simulations_per_round": 200, "posterior_samples": 200,
                            "training": {"max_num_epochs": 5}}}
    config_path.write_text(yaml.safe_dump(config))
    (tmp_path / "work" / "observations.tsv").write_text("observation\tx_o\tlibrary_index\nrow3\t\t3\n")
    refused = snakemake(tmp_path / "work", "-n", "--cores", "1", check=False)
    assert refused.returncode != 0
    assert "set galaxy.library.grid_dir" in refused.stdout + refused.stderr
    assert str(tmp_path / "gone") in refused.stdout + refused.stderr

    config["galaxy"]["library"]["grid_dir"] = str(moved)
    config_path.write_text(yaml.safe_dump(config))
    snakemake(tmp_path / "work", "--cores", "2")
    work = tmp_path / "work"
    log = (work / "results/logs/rebuild_simulator/theirs.log").read_text()
    assert "reproduces 24 library rows in all 4 bands" in log
    assert (work / "results/runs/g/row3/round_0/samples.npz").exists()
    assert (work / "results/runs/g/row3/posterior_summary.tsv").exists()
