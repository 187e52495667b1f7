"""The Snakemake workflow catalog's test case: `snakemake --directory .test` runs the toy in .test/ end to end."""

from __future__ import annotations

import csv
import shutil

import pytest
import yaml

from conftest import ROOT, snakemake
from seqsbi.artifacts import ROUND_FILES, read_npz

pytestmark = pytest.mark.workflow


def test_dot_test_config_runs_through_the_cli(tmp_path):
    # A copy, so the repository's .test/ stays clean. No --configfile: the Snakefile's default
    # config/config.yaml is read relative to --directory, i.e. .test/config/config.yaml, and so is the
    # observation sheet it names.
    workdir = tmp_path / ".test"
    shutil.copytree(ROOT / ".test", workdir, ignore=shutil.ignore_patterns("results", ".snakemake"))
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    with open(workdir / config["observations"], newline="") as sheet:
        observations = [row["observation"] for row in csv.DictReader(sheet, delimiter="\t")]
    assert config["observations"] == "config/observations.tsv" and observations

    snakemake(workdir, "--cores", "2")

    [(run, settings)] = config["runs"].items()  # .test has one run
    n_parameters = len(settings["prior"]["parameters"])
    for obs in observations:
        directory = workdir / "results" / "runs" / run / obs
        for k in range(settings["rounds"]):
            round_dir = directory / f"round_{k}"
            assert sorted(p.name for p in round_dir.iterdir()) == sorted(ROUND_FILES.values())
            samples = read_npz(round_dir / "samples.npz")["samples"]
            assert samples.shape == (settings["posterior_samples"], n_parameters)
        assert (directory / "pairplot.png").read_bytes()[:4] == b"\x89PNG"
        summary = (directory / "posterior_summary.tsv").read_text().splitlines()
        assert len(summary) == 1 + n_parameters

    # The report's landing page (workflow/report/workflow.rst) and captions render.
    snakemake(workdir, "--report", "report.html")
    assert "multi-round simulation-based inference (sbi 0.27)" in (workdir / "report.html").read_text()
