"""The sbibm benchmark workflow (benchmarks/sbibm) on a tiny grid, and its C2ST scoring."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks" / "sbibm"))

import benchmark  # noqa: E402
import sbibm_tasks  # noqa: E402

pytestmark = pytest.mark.workflow


def test_plan_gives_npe_one_round_and_the_others_the_budgets_rounds():
    bench = {"tasks": ["two_moons"], "engines": ["NPE", "TSNPE"], "rounds_per_budget": {1000: 2, 3000: 3}}
    fits = {(f.engine, f.budget): f.rounds for f in benchmark.plan_fits(bench)}
    assert fits == {("NPE", 1000): 1, ("NPE", 3000): 1, ("TSNPE", 1000): 2, ("TSNPE", 3000): 3}
    with pytest.raises(ValueError, match="does not split into 3"):
        benchmark.plan_fits({**bench, "rounds_per_budget": {1000: 3}})


def test_an_engine_variant_is_its_engine_with_its_own_settings():
    bench = {"tasks": ["two_moons"], "engines": ["SNLE", "SNLE-nsf", "NPE-wide"], "rounds_per_budget": {1000: 2},
             "observations": [1], "seed": 0, "posterior_samples": 100,
             "run_settings": {"density_estimator": "maf"},
             "engine_settings": {"SNLE-nsf": {"engine": "SNLE", "density_estimator": "nsf"},
                                 "NPE-wide": {"engine": "NPE", "network": {"hidden_features": 100}}}}
    fits = {fit.engine: fit for fit in benchmark.plan_fits(bench)}
    assert {label: fit.rounds for label, fit in fits.items()} == {"SNLE": 2, "SNLE-nsf": 2, "NPE-wide": 1}
    runs = benchmark.seqsbi_config(bench, "sheet.tsv")["runs"]
    assert runs["sbibm-two_moons-SNLE-nsf-1000"]["engine"] == "SNLE"
    assert runs["sbibm-two_moons-SNLE-nsf-1000"]["density_estimator"] == "nsf"
    assert runs["sbibm-two_moons-SNLE-1000"]["density_estimator"] == "maf"
    assert runs["sbibm-two_moons-NPE-wide-1000"]["engine"] == "NPE"
    assert runs["sbibm-two_moons-NPE-wide-1000"]["network"] == {"hidden_features": 100}


def test_a_variant_may_split_the_budget_into_its_own_rounds():
    bench = {"tasks": ["slcp"], "engines": ["SNLE", "SNLE-1round", "SNLE-more"], "rounds_per_budget": {1000: 2},
             "observations": [1], "seed": 0, "posterior_samples": 100,
             "engine_settings": {"SNLE-1round": {"engine": "SNLE", "rounds_per_budget": {1000: 1}},
                                 "SNLE-more": {"engine": "SNLE", "rounds_per_budget": {1000: 4}}}}
    runs = benchmark.seqsbi_config(bench, "sheet.tsv")["runs"]
    shape = {run: (settings["rounds"], settings["simulations_per_round"]) for run, settings in runs.items()}
    assert shape == {"sbibm-slcp-SNLE-1000": (2, 500), "sbibm-slcp-SNLE-1round-1000": (1, 1000),
                     "sbibm-slcp-SNLE-more-1000": (4, 250)}
    assert all("rounds_per_budget" not in settings for settings in runs.values())
    with pytest.raises(ValueError, match="'SNLE-1round' has no rounds for budget 3000"):
        benchmark.plan_fits({**bench, "rounds_per_budget": {1000: 2, 3000: 3}})


def test_each_seed_is_its_own_run_and_seed_zero_keeps_its_name():
    bench = {"tasks": ["two_moons"], "engines": ["SNLE"], "rounds_per_budget": {1000: 2},
             "observations": [1], "seeds": [0, 3], "posterior_samples": 100}
    runs = benchmark.seqsbi_config(bench, "sheet.tsv")["runs"]
    assert {run: settings["seed"] for run, settings in runs.items()} == {
        "sbibm-two_moons-SNLE-1000": 0, "sbibm-two_moons-SNLE-1000-seed3": 3}
    one_seed = {k: v for k, v in bench.items() if k != "seeds"} | {"seed": 5}
    assert [fit.seed for fit in benchmark.plan_fits(one_seed)] == [5]
    with pytest.raises(ValueError, match="not both"):
        benchmark.plan_fits({**bench, "seed": 0})
    with pytest.raises(ValueError, match=r"distinct non-negative integers, got \[1, 1\]"):
        benchmark.plan_fits({**bench, "seeds": [1, 1]})


def test_task_prior_and_observation_come_from_sbibm():
    assert [(p["low"], p["high"]) for p in sbibm_tasks.box_prior("slcp")] == [(-3.0, 3.0)] * 5
    x_o, theta = sbibm_tasks.observation("two_moons", 1)
    assert x_o.shape == (2,) and theta.shape == (2,)
    with pytest.raises(ValueError, match="not a uniform box"):
        sbibm_tasks.box_prior("gaussian_linear")


def test_c2st_scores_reference_samples_near_half_and_prior_draws_near_one():
    fit = benchmark.Fit("two_moons", "NPE", 1000, 1)
    reference = sbibm_tasks.reference_samples("two_moons", 1)
    summaries = [{"timings": {"train_s": 2.0, "sample_s": 0.5}}]
    same = benchmark.c2st_row(fit, 1, 0, reference[-1000:], summaries)
    prior = benchmark.c2st_row(fit, 1, 0, np.random.default_rng(0).uniform(-1, 1, (1000, 2)), summaries)
    assert same["c2st"] < 0.58, same
    assert prior["c2st"] > 0.9, prior
    assert same["wall_s"] == 2.5


@pytest.mark.slow
def test_tiny_benchmark_runs_through_the_workflow(tmp_path):
    config = {
        "tasks": ["two_moons"],
        "engines": ["NPE", "TSNPE"],
        "rounds_per_budget": {400: 2},
        "observations": [1],
        "seed": 0,
        "posterior_samples": 500,
        "c2st_samples": 400,
        "run_settings": {"training": {"max_num_epochs": 20}, "truncation": {"support_samples": 10000}},
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "benchmarks/sbibm/Snakefile"), "--cores", "2",
               "--configfile", str(tmp_path / "bench.yaml"), "--directory", str(tmp_path)]
    # The fits name their simulator relative to the working directory, as from the project root.
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    table = pd.read_csv(tmp_path / "results/benchmarks/sbibm/c2st.csv")
    assert list(table.columns) == benchmark.CSV_COLUMNS
    assert sorted(zip(table.engine, table.rounds)) == [("NPE", 1), ("TSNPE", 2)]
    assert table.c2st.between(0.45, 1.0).all() and (table.wall_s > 0).all()
    assert (tmp_path / "results/benchmarks/sbibm/c2st.png").stat().st_size > 10_000
    assert (tmp_path / "results/runs/sbibm-two_moons-TSNPE-400/two_moons-1/round_1/round.json").exists()


def test_resampling_scores_a_fresh_mcmc_draw_against_the_reference(tmp_path):
    import resample
    import torch
    from sbi.inference.posteriors.mcmc_posterior import MCMCPosterior
    from sbi.utils import BoxUniform

    # A known posterior, N(0, 0.2^2) per dimension inside the box [-1, 1]^2, sampled by sbi's MCMC.
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    posterior = MCMCPosterior(lambda theta, x_o: -0.5 * ((theta / 0.2) ** 2).sum(-1), prior,
                              num_chains=20).set_default_x(torch.zeros(1, 1))
    reference = np.random.default_rng(0).normal(0.0, 0.2, (500, 2))
    same, seconds = resample.resampled_c2st(posterior, reference, chains=20, seed=1, num_samples=600,
                                            c2st_samples=500)
    shifted, _ = resample.resampled_c2st(posterior, reference + [0.3, 0.0], chains=20, seed=1, num_samples=600,
                                         c2st_samples=500)
    assert same < 0.6 and shifted > 0.68 and seconds > 0, (same, shifted)

    for k in (2, 10, 9):
        (tmp_path / f"runs/r/two_moons-1/round_{k}").mkdir(parents=True)
        (tmp_path / f"runs/r/two_moons-1/round_{k}/posterior.pt").touch()
    assert resample.final_posterior("r", "two_moons-1", tmp_path).parent.name == "round_10"
    with pytest.raises(FileNotFoundError, match="no finished round under .*two_moons-2: fit it first"):
        resample.final_posterior("r", "two_moons-2", tmp_path)
