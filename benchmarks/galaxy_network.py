"""Network size and training settings for the galaxy default fit: time vs held-out accuracy.

Trains the default run's engine (config/config.yaml, run synference_online) on one round's
simulations for each setting given, and scores every trained network by its mean negative log
density on held-out simulations (lower is better; for SNLE this is -log q(x | theta), whose
expectation differs from the KL to the true likelihood by a constant, so differences between
settings are differences in KL). Pass held-out sets from a run with another seed: round 0 (prior
predictive) and a late round (simulations near the observation, where the posterior is decided).

Usage (simulations from `snakemake --cores 1` on the default config, plus a second run with seed 1):
  .venv/bin/python benchmarks/galaxy_network.py --train TRAIN.npz --heldout A.npz B.npz \\
      --setting hidden=50,transforms=5,batch=500,lr=5e-4 --setting hidden=50,transforms=3,batch=500,lr=1e-3
With --score ESTIMATOR.pt ... instead of --train, scores the networks of finished rounds (the run's
engine must match). Every setting key is optional (defaults: the run's own); `max_epochs` and `patience` set sbi's
max_num_epochs and stop_after_epochs. Prints one table row per setting: epochs, seconds, held-out NLL.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from seqsbi import censoring, engines  # noqa: E402
from seqsbi.config import run_settings, validate_config  # noqa: E402
from seqsbi.simulators.galaxy.config import resolve_galaxy_run  # noqa: E402

SETTING_KEYS = {
    "hidden": ("network", "hidden_features", int),
    "transforms": ("network", "num_transforms", int),
    "batch": ("training", "training_batch_size", int),
    "lr": ("training", "learning_rate", float),
    "patience": ("training", "stop_after_epochs", int),
    "max_epochs": ("training", "max_num_epochs", int),
}


def default_settings(config_path: Path, run: str):
    """RunSettings of ``run`` in ``config_path``, defaults filled in as the workflow fills them."""
    config = validate_config(yaml.safe_load(config_path.read_text()))
    return run_settings(run, resolve_galaxy_run(run, config["runs"][run], config["galaxy"]), [])


def with_setting(settings, text: str):
    """``settings`` with the comma-separated key=value pairs of ``text`` applied (see SETTING_KEYS)."""
    groups = {"network": dict(settings.network), "training": dict(settings.training)}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        if key not in SETTING_KEYS:
            raise SystemExit(f"--setting {text!r}: unknown key {key!r}; use {', '.join(SETTING_KEYS)}")
        group, name, cast = SETTING_KEYS[key]
        groups[group][name] = cast(value)
    return dataclasses.replace(settings, **groups)


def load_simulations(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path)
    return data["theta"], data["x"]


def network_x(settings, x: np.ndarray, seed: int) -> np.ndarray:
    """x as the run's network sees it: a likelihood network's censored bands dequantized when the run sets
    training.dequantize_censored (seqsbi.censoring; seeded, so every setting sees the same values)."""
    if engines.ENGINES[settings.engine].network != "likelihood":
        return x
    return censoring.training_x(settings, x, seed)


def heldout_nll(estimator: torch.nn.Module, settings, theta: np.ndarray, x: np.ndarray) -> float:
    """Mean -log density of the held-out pairs under the trained network (nats per simulation; with dequantized
    censored bands, of the dequantized values: comparable between settings of one width)."""
    theta_t = torch.as_tensor(theta, dtype=torch.float32)
    x_t = torch.as_tensor(network_x(settings, x, 1), dtype=torch.float32)
    network = engines.ENGINES[settings.engine].network
    if network == "likelihood":
        target, condition = x_t, theta_t
    elif network == "posterior":
        target, condition = theta_t, x_t
    else:
        raise SystemExit(f"engine {settings.engine}: held-out log density needs a density estimator "
                         f"(SNLE or NPE methods)")
    with torch.no_grad():
        return float(-estimator.log_prob(target[None], condition).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--run", default="synference_online")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", help="simulations.npz to train on (theta, x)")
    source.add_argument("--score", nargs="+", help="estimator.pt files of finished rounds: score them, train nothing")
    parser.add_argument("--heldout", nargs="+", required=True, help="simulations.npz files to score on")
    parser.add_argument("--setting", action="append", default=[], help="key=value,... (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    base = default_settings(args.config, args.run)
    # Held-out sets are named by their folder (round_0, round_2, ...) in the table's header.
    heldout = {Path(path).parent.name: load_simulations(path) for path in args.heldout}
    if len(heldout) != len(args.heldout):
        raise SystemExit(f"--heldout {' '.join(args.heldout)}: give files in differently named folders")
    if args.score:
        print("estimator\t" + "\t".join(f"nll_{name}" for name in heldout))
        for path in args.score:
            estimator = engines.load(path)
            scores = [heldout_nll(estimator, base, *pair) for pair in heldout.values()]
            print(f"{path}\t" + "\t".join(f"{s:.3f}" for s in scores))
        return
    theta, x = load_simulations(args.train)
    prior = engines.make_prior(base.prior)
    print("setting\tepochs\ttrain_s\t" + "\t".join(f"nll_{name}" for name in heldout), flush=True)
    for text in args.setting or [""]:
        settings = with_setting(base, text)
        torch.manual_seed(args.seed)
        inference = engines.new_inference(settings, prior, show_progress_bars=False)
        engines.append_round(inference, settings, theta, network_x(settings, x, 0), proposal=None, round_index=0)
        start = time.perf_counter()
        estimator = engines.train(inference, settings)
        seconds = time.perf_counter() - start
        scores = [heldout_nll(estimator, settings, *pair) for pair in heldout.values()]
        epochs = len(inference.summary["training_loss"])
        scores_text = "\t".join(f"{s:.3f}" for s in scores)
        print(f"{text or 'run defaults'}\t{epochs}\t{seconds:.0f}\t{scores_text}", flush=True)


if __name__ == "__main__":
    main()
