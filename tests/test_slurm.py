"""The tiny workflow through `--profile profiles/slurm` on a real one-node SLURM started by the test.

One observation's round 1 is made to crash (test-only switch): the other observation must finish,
a rerun must do only the missing work, every job must have run as a SLURM job, and the posterior
samples must equal those of a local run with the same seeds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.table import Table

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


def test_catalogue_refinements_are_submitted_in_groups(tmp_path):
    """profiles/slurm's group-components: the amortized training set's chunks and the refinement batches go to
    SLURM several jobs at a time (one sbatch job each group), and the merged table has every refined galaxy."""
    from test_catalogue import galaxy_catalogue_workdir
    from test_galaxy_workflow import TARGETS

    workdir, config, _ = galaxy_catalogue_workdir(tmp_path / "cluster")
    config["amortized"] = {"galaxy_npe": {
        "prior": {"from_library": True}, "simulations": 400, "simulation_block_size": 100, "simulation_chunks": 4,
        "test_fraction": 0.3, "network": {"hidden_features": 16, "num_transforms": 2},
        "training": {"max_num_epochs": 3}}}
    run = {"engine": "SNPE", "rounds": 2, "simulations_per_round": 100, "training": {"max_num_epochs": 3}}
    # ood_min_p_value 1 flags every row: 4 refinements, one galaxy a job.
    config["catalogues"] = {"field": {
        "path": str(workdir / "field.ecsv"), "estimator": "galaxy_npe", "posterior_samples": 50, "chunks": 1,
        "sampling_block_size": 8, "flags": {"ood_min_p_value": 1.0},
        "refine": {"max_galaxies": 4, "galaxies_per_job": 1, "run": run}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--cores", "2", *TARGETS)  # the galaxy chain locally: the cluster part starts at the library

    def slurm_jobs(pattern: str) -> list[str]:
        ids = []
        for log in sorted((workdir / "results/logs").glob(pattern)):
            found = re.search(r"SLURM job (\d+)", log.read_text())
            assert found, f"{log} did not run as a SLURM job:\n{log.read_text()[:500]}"
            ids.append(found.group(1))
        return ids

    with one_node_slurm(tmp_path) as slurm_env:
        snakemake(workdir, *TEST_CLUSTER_ARGS, "results/catalogues/field/merged_summary.fits", env=slurm_env)
        simulate, refine = (slurm_jobs("amortized_simulate/galaxy_npe/chunk_*.log"),
                            slurm_jobs("refine_batch/field/*.log"))
        # group-components 10 and 4: the 4 chunks are one SLURM job; so are the 4 batches.
        assert len(simulate) == 4 and len(set(simulate)) == 1, simulate
        assert len(refine) == 4 and len(set(refine)) == 1, refine
        # What each group job asked SLURM for (the test cluster keeps finished jobs for MinJobAge, an hour): the
        # profile's cores: 1 plans a group's jobs one after another, as the plugin runs them: one CPU, and
        # the summed runtime (amortized_simulate 4 x the default 30 min, refine_batch 4 x 60 min).
        for ids, limit in ((simulate, "02:00:00"), (refine, "04:00:00")):
            shown = subprocess.run(["scontrol", "show", "job", ids[0]], capture_output=True, text=True,
                                   env={**os.environ, **slurm_env}, check=True).stdout
            assert re.search(r"\bNumCPUs=1\b", shown) and f"TimeLimit={limit}" in shown, shown
    merged = Table.read(workdir / "results/catalogues/field/merged_summary.fits")
    assert int(np.sum(merged["refined"])) == 4
