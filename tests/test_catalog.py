"""The Snakemake workflow catalog's test case: `snakemake --directory .test` runs the toy in .test/ end to end."""

from __future__ import annotations

import base64
import csv
import re
import shutil
import time

import pytest
import yaml

import report_browser
from conftest import ROOT, job_counts, snakemake
from seqsbi.artifacts import ROUND_FILES, read_npz

pytestmark = pytest.mark.workflow

DIAGNOSTICS = ("predictive_check.png", "predictive_check.tsv", "convergence.csv", "convergence.png",
               "training_curves.png", "training_summary.tsv")


@pytest.fixture(scope="module")
def dot_test(tmp_path_factory):
    """.test run through the CLI once, its report built; the tests below read it."""
    # A copy, so the repository's .test/ stays clean. No --configfile: the Snakefile's default
    # config/config.yaml is read relative to --directory, i.e. .test/config/config.yaml, and so is the
    # observation sheet it names.
    workdir = tmp_path_factory.mktemp("catalog") / ".test"
    shutil.copytree(ROOT / ".test", workdir, ignore=shutil.ignore_patterns("results", ".snakemake"))
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    with open(workdir / config["observations"], newline="") as sheet:
        observations = [row["observation"] for row in csv.DictReader(sheet, delimiter="\t")]
    assert config["observations"] == "config/observations.tsv" and observations

    snakemake(workdir, "--cores", "2")
    # The report's landing page (workflow/report/workflow.rst) and captions render.
    snakemake(workdir, "--report", "report.html")
    return workdir, config, observations


def test_dot_test_config_runs_through_the_cli(dot_test):
    workdir, config, observations = dot_test
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
        # The diagnostics: predictive check of every feature, convergence of every round, training verdicts.
        assert all((directory / name).stat().st_size for name in DIAGNOSTICS)
        predictive = (directory / "predictive_check.tsv").read_text().splitlines()
        assert len(predictive) == 1 + n_parameters + 1 and predictive[-1].startswith("# posterior predictive p-value")
        convergence = (directory / "convergence.csv").read_text().splitlines()
        assert len(convergence) == 1 + settings["rounds"] and "c2st_previous_round" in convergence[0]
        training = (directory / "training_summary.tsv").read_text().splitlines()
        assert [line.split("\t")[0] for line in training[1:1 + settings["rounds"]]] == ["0", "1"]
        log = (workdir / "results" / "logs" / "convergence" / run / f"{obs}.log").read_text()
        assert re.search(r"the last round (\(round 1\) still moved|settled)", log)

    assert "multi-round simulation-based inference (sbi 0.27)" in (workdir / "report.html").read_text()


def test_diagnostics_settings_rerun_only_the_diagnostics(dot_test):
    workdir, config, _ = dot_test
    [run] = config["runs"]
    edited = workdir / "edited.yaml"
    config["runs"][run]["diagnostics"] = {"moved_c2st": 0.6, "predictive_samples": 300}
    edited.write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--cores", "1", "--dry-run", "--configfile", str(edited)).stdout)
    assert "train_round" not in counts and counts["convergence"] == counts["predictive_check"] == 1


def test_report_in_a_browser_shows_the_pair_plot_predictive_check_and_summary_table(dot_test, tmp_path):
    """Headless Chromium opens the report, clicks Results and each plot's view button as a user would, and
    the rendered page shows the pair plot and predictive check (the files' bytes) and offers the summary table."""
    workdir, config, [obs, *_] = dot_test
    [run] = config["runs"]
    directory = workdir / "results" / "runs" / run / obs
    start = time.perf_counter()
    browser = report_browser.chromium()  # apt-get install chromium when missing (~100 s here)
    print(f"chromium ready in {time.perf_counter() - start:.1f} s: {browser}")
    steps = [("menu", "Results"), ("view", "pair plot"), ("view", "predictive check")]
    dom = report_browser.click_through(workdir / "report.html", steps, tmp_path)
    body = report_browser.body_attributes(dom)
    assert [body.get(f"data-step-{k}") for k in range(3)] == ["clicked"] * 3, body.keys()
    for k, name in ((1, "pairplot.png"), (2, "predictive_check.png")):
        shown = body[f"data-shown-{k}"]
        assert f"filename={name}" in shown
        assert base64.b64decode(shown.split(",", 1)[1]) == (directory / name).read_bytes()
    # The results table the app rendered lists every result, the summary table as a download of the file.
    rendered = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    for label in ("pair plot", "predictive check", "predictive check table", "summary table", "convergence",
                  "training curves"):
        assert f">{label}</td>" in rendered, label
    link = re.search(r'<a [^>]*href="data:[^"]*;base64,([^"]+)"[^>]*download="posterior_summary.tsv"', rendered)
    assert link and base64.b64decode(link.group(1)) == (directory / "posterior_summary.tsv").read_bytes()
    assert "Results" in report_browser.visible_text(dom)
