"""One training round: proposal -> simulate -> append -> train -> posterior -> samples.

``train_round`` is pure in-memory work (the Snakemake rule and the in-process benchmark both call
it); ``write_round`` / ``read_previous_round`` put its state on disk, where it is the DAG's state.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi import artifacts
from seqsbi.config import Observation, RunSettings
from seqsbi.seeds import round_seed

logger = logging.getLogger("seqsbi.rounds")

#: Test-only switch: comma-separated "run/observation/round" entries whose round job must crash,
#: so tests can show that one failing observation leaves the others running.
FAIL_ROUND_VARIABLE = "SEQSBI_FAIL_ROUND"


class InjectedFailure(RuntimeError):
    """Raised on purpose for rounds listed in $SEQSBI_FAIL_ROUND."""


def fail_if_requested(run: str, observation: str, round_index: int) -> None:
    requested = {item.strip() for item in os.environ.get(FAIL_ROUND_VARIABLE, "").split(",") if item.strip()}
    if f"{run}/{observation}/{round_index}" in requested:
        raise InjectedFailure(f"{FAIL_ROUND_VARIABLE} asks round {run}/{observation}/{round_index} to fail")


@dataclass
class RoundResult:
    """Everything one round produces. Arrays: theta (n, d), x (n, k), samples (N, d)."""

    round_index: int
    theta: np.ndarray
    x: np.ndarray
    inference: Any
    estimator: Any
    posterior: Any
    samples: np.ndarray
    training_log: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and numpy's global state (sbi samples with both); return a Generator for simulators."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return np.random.default_rng(seed)


def train_round(
    settings: RunSettings,
    observation: Observation,
    round_index: int,
    previous: RoundResult | None = None,
) -> RoundResult:
    """Run round ``round_index`` of ``settings`` at ``observation``.

    Round 0 simulates from the prior with a new trainer; round k >= 1 continues round k-1's trainer
    (all earlier simulations, warm-started network) and simulates from the method's proposal built
    from round k-1's posterior at x_o (see :func:`seqsbi.engines.proposal_for_round`).
    """
    from seqsbi import engines

    fail_if_requested(settings.name, observation.name, round_index)
    if (round_index == 0) != (previous is None):
        raise ValueError(f"round {round_index} needs {'no' if round_index == 0 else 'the previous'} round's result")
    seed = round_seed(settings.seed, settings.name, observation.name, round_index)
    rng = seed_everything(seed)
    timings: dict[str, float] = {}
    n = settings.simulations_per_round

    start = time.perf_counter()
    prior = engines.make_prior(settings.prior, settings.device)
    if previous is None:
        inference = engines.new_inference(settings, prior)
    else:
        inference = previous.inference
    source, proposal = engines.proposal_for_round(settings, prior, None if previous is None else previous.posterior)
    logger.info("round %d: %d simulations from %s", round_index, n,
                "the prior" if source is prior else type(source).__name__ + f" of round {round_index - 1}")
    theta = engines.draw(source, n)
    timings["proposal_s"] = time.perf_counter() - start

    start = time.perf_counter()
    x = settings.simulator()(theta, rng)
    timings["simulate_s"] = time.perf_counter() - start
    invalid = int((~np.isfinite(x).all(axis=1)).sum())
    if invalid:
        logger.warning("%d of %d simulations are not finite; sbi drops them from training", invalid, n)

    engines.append_round(inference, settings, theta, x, proposal, round_index)
    epochs_before = len(inference.summary["training_loss"])
    start = time.perf_counter()
    estimator = engines.train(inference, settings)
    timings["train_s"] = time.perf_counter() - start
    training_log = [
        {"epoch": i + 1, "training_loss": float(t), "validation_loss": float(v)}
        for i, (t, v) in enumerate(
            zip(inference.summary["training_loss"][epochs_before:], inference.summary["validation_loss"][epochs_before:])
        )
    ]
    logger.info("trained %d epochs in %.1f s; best validation loss %.4f", len(training_log), timings["train_s"],
                inference.summary["best_validation_loss"][-1])

    posterior = engines.build_posterior(inference, settings, estimator, observation.x_o)
    start = time.perf_counter()
    inside = engines.fraction_inside_prior(posterior, settings)
    if inside is not None:
        logger.info("posterior mass inside the prior: %.1f%%", 100 * inside)
    samples = engines.draw(posterior, settings.posterior_samples)
    timings["sample_s"] = time.perf_counter() - start
    logger.info("drew %d posterior samples in %.1f s", settings.posterior_samples, timings["sample_s"])

    summary = {
        "run": settings.name,
        "observation": observation.name,
        "round": round_index,
        "engine": settings.engine,
        "sbi_trainer": settings.sbi_trainer,
        "density_estimator": settings.density_estimator,
        "seed": seed,
        "simulations_this_round": n,
        "simulations_total": n * (round_index + 1),
        "non_finite_simulations": invalid,
        "epochs": len(training_log),
        "best_validation_loss": float(inference.summary["best_validation_loss"][-1]),
        "posterior_mass_inside_prior": inside,
        "posterior_mean": samples.mean(axis=0).tolist(),
        "posterior_std": samples.std(axis=0).tolist(),
        "timings": timings,
    }
    return RoundResult(round_index, theta, x, inference, estimator, posterior, samples, training_log, summary)


def write_round(result: RoundResult, settings: RunSettings, outputs: dict[str, str | Path]) -> None:
    """Write every artifact of ``result`` atomically; ``outputs`` maps ROUND_FILES keys to paths."""
    names = np.array(settings.prior.names)
    units = np.array(settings.prior.units)
    artifacts.write_npz(outputs["simulations"], theta=result.theta, x=result.x, parameter_names=names)
    artifacts.write_torch(outputs["estimator"], result.estimator)
    artifacts.write_torch(outputs["posterior"], result.posterior)
    artifacts.write_torch(outputs["inference"], result.inference)
    artifacts.write_npz(outputs["samples"], samples=result.samples, parameter_names=names, parameter_units=units)
    lines = ["epoch\ttraining_loss\tvalidation_loss"] + [
        f"{row['epoch']}\t{row['training_loss']:.6g}\t{row['validation_loss']:.6g}" for row in result.training_log
    ]
    artifacts.write_text(outputs["training_log"], "\n".join(lines) + "\n")
    # round.json last: its presence says the round is complete even to tools outside Snakemake.
    artifacts.write_json(outputs["summary"], result.summary)


def read_previous_round(inference_path: str | Path, posterior_path: str | Path, settings: RunSettings) -> RoundResult:
    """The parts of round k-1 that round k needs: its trainer (all data so far) and its posterior."""
    from seqsbi import engines

    round_index = int(Path(inference_path).parent.name.removeprefix("round_"))
    return RoundResult(
        round_index=round_index,
        theta=np.empty((0, settings.prior.dim)),
        x=np.empty((0, 0)),
        inference=engines.load(inference_path, settings.device),
        estimator=None,
        posterior=engines.load(posterior_path, settings.device),
        samples=np.empty((0, settings.prior.dim)),
        training_log=[],
    )
