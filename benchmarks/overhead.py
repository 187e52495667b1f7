"""Workflow overhead: the sbi tutorial through Snakemake vs the same rounds in one Python process.

Runs config/examples/sbi_tutorial.yaml (2 rounds x 500 simulations, SNPE) twice, in one run:
  1. `snakemake --cores 2` in a temporary working directory (one process per round job, artifacts
     on disk, plus the pair plot and summary jobs);
  2. seqsbi.rounds.train_round for the same rounds, in this process, objects kept in memory.
Prints, last, `overhead_ratio=<snakemake wall / in-process wall>` (target <= 1.5).
Usage: .venv/bin/python benchmarks/overhead.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))
os.environ["OMP_NUM_THREADS"] = "1"


def snakemake_wall(config: dict, workdir: Path) -> float:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "--cores", "2", "--quiet", "all"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def in_process_wall(config: dict) -> float:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    from seqsbi.config import plan_workflow
    from seqsbi.rounds import train_round

    plan = plan_workflow(config)
    for run_name, obs_name in plan.targets():
        settings, observation = plan.runs[run_name], plan.observations[obs_name]
        previous = None
        for k in range(settings.rounds):
            previous = train_round(settings, observation, k, previous)
    return time.perf_counter() - start


def main() -> None:
    config = yaml.safe_load((ROOT / "config/examples/sbi_tutorial.yaml").read_text())
    config["observations"] = str(ROOT / config["observations"])
    with tempfile.TemporaryDirectory() as tmp:
        workflow_s = snakemake_wall(config, Path(tmp))
        samples = np.load(Path(tmp) / "results/runs/sbi_tutorial/x_o_zero/round_1/samples.npz")["samples"]
    in_process_s = in_process_wall(config)
    print(f"snakemake_wall_s={workflow_s:.1f} in_process_wall_s={in_process_s:.1f} "
          f"final_mean={np.round(samples.mean(axis=0), 3).tolist()}")
    print(f"overhead_ratio={workflow_s / in_process_s:.2f}")


if __name__ == "__main__":
    main()
