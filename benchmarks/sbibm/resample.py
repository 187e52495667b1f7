"""How much of one fit's C2ST is its MCMC draw: resample finished SNLE/SNRE fits' final posteriors
with other seeds and chain counts, and score every draw with the benchmark's C2ST.

A benchmark cell is one draw of the simulations, the training and the posterior's MCMC chains. With
100 slice-sampling chains a multimodal posterior's mode weights are settled by where 100 chains
start, so the same trained network can score differently from draw to draw; this separates that
part from the training's.

Usage, from the project root after the benchmark has fitted the runs:
  .venv/bin/python benchmarks/sbibm/resample.py --run sbibm-two_moons-SNLE-10000 --task two_moons \\
      --observations 1 2 3 --chains 100 250 500 --seeds 1 2
Prints one line per draw (observation, chains, seed, C2ST, seconds), then the mean C2ST per chain
count. Each draw takes posterior_samples draws (default 2,500, as the benchmark) and scores the
first c2st_samples (2,000) against sbibm's reference samples, C2ST seeded 0 as the benchmark seeds it
for seed 0's fits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "workflow"))

import benchmark  # noqa: E402
import sbibm_tasks  # noqa: E402


def final_posterior(run: str, observation: str, results: Path = Path("results")) -> Path:
    """The last round's posterior.pt of ``run`` for ``observation``."""
    rounds = sorted((results / "runs" / run / observation).glob("round_*/posterior.pt"),
                    key=lambda path: int(path.parent.name.split("_")[1]))
    if not rounds:
        raise FileNotFoundError(f"no finished round under {results / 'runs' / run / observation}: "
                                f"fit it first (snakemake -s benchmarks/sbibm/Snakefile ...)")
    return rounds[-1]


def resampled_c2st(posterior, reference: np.ndarray, chains: int, seed: int, num_samples: int = 2500,
                   c2st_samples: int = 2000, warmup_steps: int = 10) -> tuple[float, float]:
    """(C2ST, seconds to sample) of one fresh MCMC draw of ``num_samples`` from ``posterior`` (an sbi
    MCMC posterior with its default x set) with ``chains`` chains, seeded ``seed``; C2ST on the first
    ``c2st_samples`` against ``reference`` (N, d)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    start = time.perf_counter()
    samples = posterior.sample((num_samples,), num_chains=chains, warmup_steps=warmup_steps,
                               show_progress_bars=False)
    seconds = time.perf_counter() - start
    return benchmark.c2st_score(reference, samples.numpy()[:c2st_samples], seed=0), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a benchmark run, e.g. sbibm-two_moons-SNLE-10000")
    parser.add_argument("--task", required=True, help="its sbibm task, e.g. two_moons")
    parser.add_argument("--observations", type=int, nargs="+", default=[1])
    parser.add_argument("--chains", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--posterior-samples", type=int, default=2500)
    parser.add_argument("--c2st-samples", type=int, default=2000)
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from seqsbi import engines

    scores: dict[int, list[float]] = {chains: [] for chains in args.chains}
    for number in args.observations:
        posterior = engines.load(final_posterior(args.run, benchmark.observation_name(args.task, number), args.results))
        reference = sbibm_tasks.reference_samples(args.task, number)
        for chains in args.chains:
            for seed in args.seeds:
                score, seconds = resampled_c2st(posterior, reference, chains, seed, args.posterior_samples,
                                                args.c2st_samples)
                scores[chains].append(score)
                print(f"observation {number} chains {chains} seed {seed}: c2st {score:.3f} ({seconds:.0f} s)",
                      flush=True)
    for chains, values in scores.items():
        print(f"chains {chains}: mean c2st {np.mean(values):.3f} over {len(values)} draws "
              f"(min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
