"""Corrupt inputs and settings that validate but cannot run (issue 15, items 6 and 7): each is one clear
error before any training, naming the file, row or key and the fix. Each case once, at the cheapest level."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import tiny_run, write_workdir
from seqsbi.config import plan_workflow
from seqsbi.errors import ArtifactError, ConfigError, LibraryError

CODES = ["JWST/NIRCam.F070W", "JWST/NIRCam.F444W"]


def plan(tmp_path, sheet=None, galaxy=None, **run_overrides):
    config = yaml.safe_load(write_workdir(tmp_path, {"r": tiny_run(**run_overrides)}, sheet).read_text())
    if galaxy is not None:
        config["galaxy"] = galaxy
    return plan_workflow(config)


def refused(tmp_path, *fragments, **kwargs) -> str:
    with pytest.raises(ConfigError) as error:
        plan(tmp_path, **kwargs)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- model library (galaxy.library.path), read at parse time -------------------------------------------------

@pytest.fixture
def library(tmp_path):
    from seqsbi.simulators.galaxy.library import write_library
    from seqsbi.simulators.galaxy.model import GalaxyModelSpec

    spec = GalaxyModelSpec(grid_name="g", grid_dir=str(tmp_path), filters=tuple(CODES))
    rng = np.random.default_rng(0)
    path = tmp_path / "lib.hdf5"
    write_library(path, "lib", rng.uniform(0.1, 1.0, (20, 6)), rng.uniform(10, 100, (20, 2)), spec)
    return path


def test_truncated_library_names_file_and_fix(library, tmp_path):
    from seqsbi.simulators.galaxy.library import read_library

    library.write_bytes(library.read_bytes()[:3000])
    with pytest.raises(LibraryError) as error:
        read_library(library)
    assert str(library) in str(error.value) and "truncated, or not an HDF5 file" in str(error.value)
    # At parse time it is a ConfigError naming the key.
    refused(tmp_path, "galaxy.library.path:", str(library), "cannot be opened as HDF5", "point galaxy.library.path",
            galaxy={"filters": CODES, "library": {"path": str(library)}})


def test_non_hdf5_library(tmp_path):
    from seqsbi.simulators.galaxy.library import read_library

    path = tmp_path / "lib.hdf5"
    path.write_text("id,flux\n1,2\n")
    with pytest.raises(LibraryError, match=r"lib\.hdf5' cannot be opened as HDF5 .*point galaxy\.library\.path"):
        read_library(path)


@pytest.mark.parametrize("missing, expected", [
    ("Grid/Parameters", "lacks dataset 'Grid/Parameters'"),
    ("ParameterNames", "lacks root attribute 'ParameterNames'"),
    ("Model.grid_name", "Model group lacks attribute 'grid_name'"),
])
def test_library_missing_dataset_or_attribute(library, missing, expected):
    import h5py

    from seqsbi.simulators.galaxy.library import read_library

    with h5py.File(library, "a") as hf:
        if missing == "Model.grid_name":
            del hf["Model"].attrs["grid_name"]
        elif missing in hf:
            del hf[missing]
        else:
            del hf.attrs[missing]
    with pytest.raises(LibraryError) as error:
        read_library(library)
    assert str(library) in str(error.value) and expected in str(error.value), str(error.value)
    assert "galaxy.library.path" in str(error.value)  # the fix


def test_corrupt_sps_grid_names_file(tmp_path):
    (tmp_path / "bc03_miles_kroupa.hdf5").write_text("not hdf5")
    refused(tmp_path, "galaxy.sps_grid: grid", "bc03_miles_kroupa.hdf5", "cannot be read",
            galaxy={"sps_grid": {"grid_dir": str(tmp_path)}})


@pytest.mark.parametrize("content, expected", [(b"PK\x03\x04 truncated", "cannot be read as .npz"),
                                               (None, "lacks array(s) ['x']")])
def test_damaged_features_file(tmp_path, content, expected):
    from seqsbi.observations import observation_from_params

    path = tmp_path / "lib.features.npz"
    if content is None:
        np.savez(path, theta=np.zeros((3, 2)))
    else:
        path.write_bytes(content)
    with pytest.raises(ArtifactError) as error:
        observation_from_params({"name": "o", "library_index": 0}, path)
    assert str(path) in str(error.value) and expected in str(error.value) and "run snakemake again" in str(error.value)


# --- observation sheet ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sheet, expected", [
    ("observation\tx_o\na\t0,0,0\nb\t0,0,0\textra\n", ["observations:", "line 3 has 3 fields; the header has 2"]),
    ("observation\tx_o\na\t0,0,0\textra\n", ["line 2 has 3 fields"]),
    ("observation\tx_o\tx_o\na\t0,0,0\t1\n", ["repeated column name(s) ['x_o.1']"]),
    ("observation\tx_o\na\t0,0,0\na\t1,1,1\n", ["observation 'a' appears twice"]),
    ("observation\tx_o\na\t0,zero,0\n", ["row 'a' column x_o: 'zero' is not a number"]),
    ("observation\tx_o\na\t0,0\n", ["row 'a' column x_o: has 2 values", "returns 3"]),
    ("observation\tx_o\na\n", ["row 'a': give exactly one of x_o, library_index and catalogue_id (got none)"]),
    ("\n", ["is empty"]),
])
def test_malformed_sheet_rows_are_named(tmp_path, sheet, expected):
    message = refused(tmp_path, *expected, sheet=sheet)
    assert "observations.tsv" in message


def test_sheet_that_is_not_text(tmp_path):
    (tmp_path / "bin.tsv").write_bytes(b"\xff\xfe\x00\x81garbage")
    write_workdir(tmp_path, {"r": tiny_run()})
    from seqsbi.observations import read_observations

    with pytest.raises(ConfigError, match=r"observations: '.*bin\.tsv' cannot be read as a table \('utf-8' codec"):
        read_observations(tmp_path / "bin.tsv")


# --- catalogue -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("id,F070W,F070W_err,F444W,F444W_err\n7,100,5,abc,5\n", "id '7' column 'F444W': 'abc' is not a number"),
    ("id,F070W,F070W_err,F444W,F444W_err\n7,100,5,100,5\n7,200,5,200,5\n", "id(s) ['7'] on more than one row"),
    ("id,F070W,F070W_err,F444W\n7,100,5,100\n", "no flux and _err columns for ['JWST/NIRCam.F444W']"),
    ("id,F070W,F070W_err,F444W,F444W_err\n7,100,5,100,5\n8,1,2,3,4,5,6\n", "line 3 has 7 fields; the header has 5"),
    ("id,F070W,F070W_err,F444W,F444W_err\n,100,5,100,5\n", "data row 1 has an empty id"),
])
def test_malformed_catalogue_rows_are_named(tmp_path, text, expected):
    from seqsbi.observations import Observation
    from seqsbi.simulators.galaxy.catalogue import catalogue_observations

    (tmp_path / "cat.csv").write_text(text)
    galaxy = {"catalogue": str(tmp_path / "cat.csv"), "filters": CODES, "features": {"kind": "ab_magnitude"}}
    with pytest.raises(ConfigError) as error:
        catalogue_observations({"g1": Observation("g1", None, catalogue_id="7")}, galaxy)
    assert "galaxy.catalogue" in str(error.value) and "cat.csv" in str(error.value)
    assert expected in str(error.value), str(error.value)


# --- settings the schema accepts but that cannot run --------------------------------------------------------

@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps"])
def test_missing_device_is_refused_at_validation(tmp_path, monkeypatch, device):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    refused(tmp_path, f"runs.r.device: '{device}' but torch", "use device: cpu", device=device)


def test_a_cluster_run_may_name_a_device_the_submitting_machine_lacks(tmp_path, monkeypatch):
    """The Snakefile plans without the device check (its login node may have no GPU); a local run
    checks in onstart, each round job at its start (test_workflow.py shows the local refusal)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    config = yaml.safe_load(write_workdir(tmp_path, {"r": tiny_run(device="cuda")}).read_text())
    assert plan_workflow(config, check_devices=False).runs["r"].device == "cuda"


@pytest.mark.parametrize("overrides, expected", [
    # 1 training row: z-scoring divides by a zero standard deviation (nflows: "Scale must be strictly positive")
    ({"simulations_per_round": 2}, "validation_fraction=0.1 of 2 simulations leaves 1 training row(s)"),
    # no validation row: sbi's validation DataLoader gets batch_size=0
    ({"training": {"validation_fraction": 1e-20}}, "leaves 0 validation row(s)"),
    ({"simulations_per_round": 20, "training": {"validation_fraction": 0.99}}, "leaves 0 training row(s)"),
    # contrastive losses draw atoms from the other rows of a batch: a batch of 1 has none (torch.multinomial)
    ({"engine": "SNRE", "density_estimator": "mlp", "training": {"training_batch_size": 1}}, "batches of 1"),
    ({"training": {"training_batch_size": 1}}, "engine SNPE's contrastive loss"),
    # SNPE's round 1 on its own 10 simulations (9 + 1), not both rounds' 20 (18 + 2): one validation row
    ({"simulations_per_round": 10, "training": {"discard_prior_samples": True}}, "of 10 simulations leaves 1 "
                                                                                "validation row(s); engine SNPE's"),
])
def test_budgets_training_cannot_use_are_refused(tmp_path, overrides, expected):
    refused(tmp_path, "runs.r.training: ", expected, **overrides)


def test_single_round_snpe_trains_with_batches_of_one(tmp_path):
    """Round 0 of SNPE has no atomic loss: a batch of 1 is fine there."""
    plan(tmp_path, rounds=1, training={"training_batch_size": 1})


@pytest.mark.parametrize("low, high, expected", [
    (float("-inf"), 2.0, "runs.r.prior.parameters[0].low: -inf is not a finite number"),
    # finite bounds whose width overflows: the uniform prior's draws are infinite
    (-1e308, 1e308, "runs.r.prior.parameters[0] (a): low=-1e+308 and high=1e+308 must be finite"),
])
def test_unbounded_prior_is_refused(tmp_path, low, high, expected):
    parameters = [{"name": "a", "low": low, "high": high}, {"name": "b", "low": 0, "high": 1},
                  {"name": "c", "low": 0, "high": 1}]
    refused(tmp_path, expected, prior={"parameters": parameters})


def test_reversed_sps_wavelengths(tmp_path):
    refused(tmp_path, "galaxy.sps_grid.min_wavelength_angstrom: 5000 must be below max_wavelength_angstrom (1000)",
            galaxy={"sps_grid": {"min_wavelength_angstrom": 5000, "max_wavelength_angstrom": 1000}})


@pytest.mark.parametrize("overrides, key", [
    ({"training": {"learning_rate": float("inf")}}, "runs.r.training.learning_rate: inf"),
    ({"training": {"validation_fraction": float("nan")}}, "runs.r.training.validation_fraction: nan"),
    ({"truncation": {"quantile": float("nan")}}, "runs.r.truncation.quantile: nan"),
])
def test_nan_and_inf_pass_the_schema_but_are_refused(tmp_path, overrides, key):
    """NaN fails every comparison, so the schema's bounds let it (and .inf, for exclusiveMinimum) through."""
    refused(tmp_path, key, "is not a finite number", **overrides)
