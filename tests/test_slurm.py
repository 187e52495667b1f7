"""The tiny workflow through `--profile profiles/slurm` on a real one-node SLURM started by the test.

One observation's round 1 is made to crash (test-only switch): the other observation must finish,
a rerun must do only the missing work, every job must have run as a SLURM job, and the posterior
samples must equal those of a local run with the same seeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, job_counts, per_observation_jobs, snakemake, tiny_run, write_workdir
from seqsbi.artifacts import read_npz
from slurm_cluster import one_node_slurm

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Values for the test cluster only: it has no accounting database (so sacct cannot answer; the
# plugin must poll squeue) and jobs finish in seconds (so poll often).
TEST_CLUSTER_ARGS = ("--profile", str(ROOT / "profiles" / "slurm"), "--slurm-status-command", "squeue",
                     "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                     "--latency-wait", "5")
ROUNDS = [(obs, k) for obs in ("zero", "shifted") for k in (0, 1)]


def samples(workdir: Path, obs: str, k: int) -> np.ndarray:
    return read_npz(workdir / "results/runs/tiny" / obs / f"round_{k}" / "samples.npz")["samples"]


def test_tiny_workflow_on_slurm_matches_local_run(tmp_path):
    runs = {"tiny": tiny_run()}
    local = tmp_path / "local"
    write_workdir(local, runs)
    snakemake(local, "--cores", "2")

    cluster = tmp_path / "cluster"
    write_workdir(cluster, runs)
    with one_node_slurm(tmp_path) as slurm_env:
        crashed = snakemake(cluster, *TEST_CLUSTER_ARGS, check=False,
                            env={**slurm_env, "SEQSBI_FAIL_ROUND": "tiny/shifted/1"})
        assert crashed.returncode != 0
        # --keep-going: the healthy observation finished, the broken one kept its round 0.
        assert (cluster / "results/runs/tiny/zero/pairplot.png").exists()
        assert (cluster / "results/runs/tiny/shifted/round_0/round.json").exists()
        assert not (cluster / "results/runs/tiny/shifted/round_1").exists()
        crash_log = (cluster / "results/logs/train_round/tiny/shifted/round_1.log").read_text()
        assert "SEQSBI_FAIL_ROUND asks round tiny/shifted/1 to fail" in crash_log

        dry = snakemake(cluster, *TEST_CLUSTER_ARGS, "-n", env=slurm_env)
        assert job_counts(dry.stdout) == {"train_round": 1, **per_observation_jobs(1), "all": 1}
        snakemake(cluster, *TEST_CLUSTER_ARGS, env=slurm_env)

    for obs, k in ROUNDS:
        log = (cluster / f"results/logs/train_round/tiny/{obs}/round_{k}.log").read_text()
        assert re.search(r"SLURM job \d+", log), f"round {obs}/{k} did not run as a SLURM job:\n{log[:500]}"
        assert np.array_equal(samples(cluster, obs, k), samples(local, obs, k)), (obs, k)
    for obs in ("zero", "shifted"):
        assert re.search(r"SLURM job \d+", (cluster / f"results/logs/pairplot/tiny/{obs}.log").read_text())
