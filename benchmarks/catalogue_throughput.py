"""Amortized catalogue posteriors: throughput (batched vs a per-galaxy loop) and fit quality, per flow.

For each flow, trains seqsbi's amortized NPE (seqsbi.amortized.train_amortized: bounded to the prior) on a
toy problem of the galaxy problem's shape (6 parameters, 8 features: x = tanh(theta A) + noise, theta in the
unit box) and prints, on the held-out split: the mean log posterior density of the truth, the empirical
coverage of the 68% and 95% central intervals (worst parameter), and galaxies/s for 1,000 samples each,
batched (seqsbi.amortized.sample_batched, one network call per 256 galaxies) and in a Python loop of
``posterior.sample((1000,), x=x_i)`` on the same estimator. One torch thread. Prints measured numbers only.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/catalogue_throughput.py --simulations 10000 --epochs 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

D, K = 6, 8


def simulate(theta: np.ndarray, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    """Toy simulator, theta (n, 6) in [0, 1]^6 -> x (n, 8): tanh(theta A) + noise, A fixed (seed 0)."""
    a = np.random.default_rng(0).standard_normal((D, K))
    return np.tanh(theta @ a) + noise * rng.standard_normal((theta.shape[0], K))


FLOWS = {  # label -> (density_estimator, coupling)
    "nice": ("nice", True),
    "nsf-coupling": ("nsf", True),
    "maf-coupling": ("maf", True),
    "nsf-autoregressive": ("nsf", False),
    "maf-autoregressive": ("maf", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--galaxies", type=int, default=1000, help="held-out rows sampled batched")
    parser.add_argument("--loop-galaxies", type=int, default=40, help="held-out rows sampled in the loop")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--transforms", type=int, default=5)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from seqsbi.amortized import (
        interval_coverage,
        sample_batched,
        sample_loop,
        settings_for,
        simulate_training_blocks,
        train_amortized,
    )
    from seqsbi.config import validate_config

    print(f"toy problem {D} parameters, {K} features; {args.simulations} simulations (10% held out); "
          f"<= {args.epochs} epochs; network {args.hidden} x {args.transforms}; {args.samples} samples a galaxy; "
          f"1 torch thread")
    print(f"{'flow':<20} {'epochs':>6} {'train s':>8} {'logprob':>8} {'cov68 min/max':>14} {'cov95 min/max':>14} "
          f"{'batched gal/s':>13} {'loop gal/s':>10} {'ratio':>6}")
    theta = x = None
    for label in args.flows:
        estimator_name, coupling = FLOWS[label]
        config = validate_config({"amortized": {"toy": {
            "simulator": f"{Path(__file__).resolve()}:simulate",
            "prior": {"parameters": [{"name": f"theta_{i}", "low": 0, "high": 1} for i in range(D)]},
            "simulations": args.simulations, "density_estimator": estimator_name,
            "network": {"hidden_features": args.hidden, "num_transforms": args.transforms, "coupling": coupling},
            "training": {"max_num_epochs": args.epochs, "training_batch_size": 200}}}})
        settings = settings_for("toy", config["amortized"]["toy"], config["galaxy"])
        if theta is None:
            theta, x, _ = simulate_training_blocks(settings, slice(0, args.simulations))
        result = train_amortized(settings, theta, x, 0.1, check_samples=args.samples)
        held_x, held_theta = result.held_out_x[:args.galaxies], result.held_out_theta[:args.galaxies]
        start = time.perf_counter()
        samples = sample_batched(result.estimator, held_x, args.samples, seed=1)
        batched = len(held_x) / (time.perf_counter() - start)
        start = time.perf_counter()
        sample_loop(result.posterior, held_x[:args.loop_galaxies], args.samples)
        loop = args.loop_galaxies / (time.perf_counter() - start)
        coverage = interval_coverage(samples, held_theta)
        c68, c95 = list(coverage["0.68"].values()), list(coverage["0.95"].values())
        print(f"{label:<20} {result.summary['epochs']:>6} {result.summary['train_s']:>8.1f} "
              f"{result.summary['held_out_mean_log_prob']:>8.3f} {min(c68):>6.3f}/{max(c68):.3f} "
              f"{min(c95):>6.3f}/{max(c95):.3f} {batched:>13.1f} {loop:>10.1f} {batched / loop:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
