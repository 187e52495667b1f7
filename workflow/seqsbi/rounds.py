"""One training round: proposal -> simulate -> append -> train -> posterior -> samples.

``train_round`` is pure in-memory work (the Snakemake rule and the in-process benchmark both call
it); ``write_round`` / ``read_previous_round`` put its state on disk, where it is the DAG's state.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi import artifacts, censoring, engines, scatter
from seqsbi.config import RunSettings
from seqsbi.errors import InjectedFailure, SimulationError
from seqsbi.observations import Observation
from seqsbi.seeds import dequantization_seed, round_seed, training_seed

logger = logging.getLogger("seqsbi.rounds")

#: Test-only switch: comma-separated "run/observation/round" entries whose round job must crash,
#: so tests can show that one failing observation leaves the others running.
FAIL_ROUND_VARIABLE = "SEQSBI_FAIL_ROUND"
#: Config training.max_invalid_fraction's default (no schema default, so existing rounds stay up to date).
MAX_INVALID_FRACTION = 0.5


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


@dataclass
class Simulations:
    """One round's simulations: theta (n, d) from the proposal and x (n, k), with how long each took."""

    theta: np.ndarray
    x: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def propose(settings: RunSettings, observation: str, round_index: int,
            previous: RoundResult | None = None) -> np.ndarray:
    """theta (n, d): round ``round_index``'s draws from its proposal (prior in round 0, see
    :func:`seqsbi.engines.proposal_for_round`), seeded from (run, observation, round). When the
    proposal is round k-1's posterior, ``previous.samples`` (drawn from it) come first."""
    if (round_index == 0) != (previous is None):
        raise ValueError(f"round {round_index} needs {'no' if round_index == 0 else 'the previous'} round's result")
    seed_everything(round_seed(settings.seed, settings.name, observation, round_index))
    prior = engines.make_prior(settings.prior, settings.device)
    source = engines.proposal_for_round(settings, prior, None if previous is None else previous.posterior)
    n = settings.simulations_per_round
    logger.info("round %d: %d simulations from %s", round_index, n,
                "the prior" if source is prior else type(source).__name__ + f" of round {round_index - 1}")
    # When the proposal is round k-1's posterior itself, the samples that round already drew from it
    # are draws from the proposal: reusing them halves the MCMC work of SNLE and SNRE.
    reused = np.empty((0, settings.prior.dim))
    if previous is not None and source is previous.posterior:
        reused = previous.samples[:n]
    if len(reused):
        logger.info("reusing %d of round %d's posterior samples; drawing %d more", len(reused), round_index - 1,
                    n - len(reused))
    theta = reused if len(reused) == n else np.concatenate([reused, engines.draw(source, n - len(reused), settings)])
    return below_upper_bounds(theta, settings.prior.high)


def below_upper_bounds(theta: np.ndarray, high: np.ndarray) -> np.ndarray:
    """theta (n, d) with every value equal to its parameter's upper bound moved down to the largest float32
    below it (one float32 step), logged.

    A flow bounded to the prior (a sigmoid in float32) saturates at a bound for a posterior piled against it,
    and sbi's rejection accepts such draws (the box support is closed) while torch's Uniform gives them zero
    density (it is half-open: low <= theta < high): SNPE's atomic loss, which evaluates the prior at every
    theta, would stop with "NaN/Inf present in prior eval". One float32 step is below the precision the
    networks and simulators work at.
    """
    high32 = np.asarray(high, dtype=np.float32)
    at_bound = np.asarray(theta, dtype=np.float32) >= high32
    if not at_bound.any():
        return theta
    logger.info("%d proposed value(s) at a parameter's upper bound moved one float32 step below it (the prior's "
                "density is zero exactly there)", int(at_bound.sum()))
    below = np.nextafter(high32, np.float32(-np.inf)).astype(float)
    return np.where(at_bound, np.broadcast_to(below, theta.shape), theta)


def simulate_chunk(settings: RunSettings, observation: str, round_index: int, theta: np.ndarray,
                   chunk: int, n_chunks: int) -> tuple[slice, np.ndarray]:
    """(rows, x) for chunk ``chunk`` of ``n_chunks`` of a round's theta (all n rows): whole blocks only."""
    rows = scatter.chunk_rows(theta.shape[0], settings.simulation_block_size, n_chunks, chunk)
    seed = round_seed(settings.seed, settings.name, observation, round_index)
    x = scatter.simulate_blocks(settings.simulator(), theta[rows], rows.start, settings.simulation_block_size, seed)
    return rows, x


def write_chunk(path: str | Path, rows: slice, x: np.ndarray, simulate_s: float) -> None:
    artifacts.write_npz(path, rows=np.array([rows.start, rows.stop]), x=x, simulate_s=np.array(simulate_s))


def gather_chunks(proposal_path: str | Path, chunk_paths: list[str | Path]) -> Simulations:
    """A round's simulations from its proposal file and its chunk files (in chunk order)."""
    theta = artifacts.read_npz(proposal_path)["theta"]
    chunks = [artifacts.read_npz(path) for path in chunk_paths]
    expected = 0
    for path, chunk in zip(chunk_paths, chunks):
        start, stop = (int(v) for v in chunk["rows"])
        if start != expected or chunk["x"].shape[0] != stop - start:
            raise ValueError(f"chunk file {str(path)!r} holds rows {start}..{stop} with {chunk['x'].shape[0]} "
                             f"simulations; expected rows from {expected}: rerun the round's chunk jobs")
        expected = stop
    if expected != theta.shape[0]:
        raise ValueError(f"chunks cover {expected} of the proposal's {theta.shape[0]} rows; rerun the chunk jobs")
    x = np.concatenate([chunk["x"] for chunk in chunks], axis=0)
    timings = {"simulate_s": float(sum(chunk["simulate_s"] for chunk in chunks)), "simulation_chunks": len(chunks)}
    return Simulations(theta, x, timings)


def propose_and_simulate(settings: RunSettings, observation: Observation, round_index: int,
                         previous: RoundResult | None = None) -> Simulations:
    """A round's simulations in this process: the same numbers chunk jobs would gather."""
    start = time.perf_counter()
    theta = propose(settings, observation.name, round_index, previous)
    proposal_s = time.perf_counter() - start
    logger.info("proposed %d parameter vectors in %.1f s", theta.shape[0], proposal_s)
    start = time.perf_counter()
    _, x = simulate_chunk(settings, observation.name, round_index, theta, 0, 1)
    return Simulations(theta, x, {"proposal_s": proposal_s, "simulate_s": time.perf_counter() - start})


def train_round(
    settings: RunSettings,
    observation: Observation,
    round_index: int,
    previous: RoundResult | None = None,
    simulations: Simulations | None = None,
) -> RoundResult:
    """Run round ``round_index`` of ``settings`` at ``observation``.

    Round 0 simulates from the prior with a new trainer; round k >= 1 continues round k-1's trainer
    (all earlier simulations; the network warm-started, or new with ``training.retrain_from_scratch``, and
    trained without round 0's with ``training.discard_prior_samples``) and simulates from the method's proposal
    built from round k-1's posterior at x_o (see :func:`seqsbi.engines.proposal_for_round`).
    ``simulations`` are the round's simulations when chunk jobs made them; otherwise this call does.
    """
    fail_if_requested(settings.name, observation.name, round_index)
    if (round_index == 0) != (previous is None):
        raise ValueError(f"round {round_index} needs {'no' if round_index == 0 else 'the previous'} round's result")
    if simulations is None:
        simulations = propose_and_simulate(settings, observation, round_index, previous)
    theta, x, timings = simulations.theta, simulations.x, dict(simulations.timings)
    n = theta.shape[0]
    if n != settings.simulations_per_round:
        raise ValueError(f"round {round_index} got {n} simulations; the run asks for {settings.simulations_per_round}")
    invalid = check_invalid_simulations(settings, theta, x, round_index)
    # x_o as a simulation would have it (a band fainter than its floor at the floor, when the network spreads them)
    coverage = observation_coverage(x, replace(observation, x_o=censoring.as_simulated(settings, observation.x_o)))
    features = feature_report(settings, x)

    seed = round_seed(settings.seed, settings.name, observation.name, round_index)
    prior = engines.make_prior(settings.prior, settings.device)
    # A warm-started trainer's summary already holds the earlier rounds' epochs.
    epochs_before = 0 if previous is None else len(previous.inference.summary["training_loss"])
    start = time.perf_counter()
    inference, estimator, restart_losses = _train_network(settings, prior, theta, x, round_index, previous, seed)
    timings["train_s"] = time.perf_counter() - start
    training_log = [
        {"epoch": i + 1, "training_loss": float(t), "validation_loss": float(v)}
        for i, (t, v) in enumerate(
            zip(inference.summary["training_loss"][epochs_before:],
                inference.summary["validation_loss"][epochs_before:])
        )
    ]
    logger.info("trained %d epochs in %.1f s; best validation loss %.4f", len(training_log), timings["train_s"],
                inference.summary["best_validation_loss"][-1])

    box = engines.training_box(inference, settings)
    x_o = censoring.network_x_o(settings, observation.x_o, observation.name)  # where the network is evaluated
    posterior = engines.build_posterior(inference, settings, estimator, x_o, box)
    start = time.perf_counter()
    samples = engines.draw(posterior, settings.posterior_samples, settings)
    timings["sample_s"] = time.perf_counter() - start
    logger.info("drew %d posterior samples in %.1f s", settings.posterior_samples, timings["sample_s"])
    inside = engines.fraction_inside_prior(posterior, settings, samples)
    logger.info("posterior mass inside the prior: %.1f%%", 100 * inside)
    box_report = None
    if box is not None:
        logger.info("posterior sampled inside the box of the parameters the network trained on "
                    "(mcmc.restrict_to_training_box): %s", ", ".join(
                        f"{name} {a:.4g} to {b:.4g}" for name, a, b in zip(settings.prior.names, *box)))
        box_report = engines.training_box_edges(samples, box, settings, round_index)

    summary = {
        "run": settings.name,
        "observation": observation.name,
        "round": round_index,
        "engine": settings.engine,
        "sbi_trainer": engines.ENGINES[settings.engine].trainer,
        "density_estimator": settings.density_estimator,
        "constrain_to_prior": settings.constrain_to_prior,
        "seed": seed,
        "simulations_this_round": n,
        "simulations_total": n * (round_index + 1),
        "non_finite_simulations": invalid["count"],
        "invalid_simulations": invalid,
        "observation_coverage": coverage,
        **({"features": features} if features is not None else {}),
        "epochs": len(training_log),
        "best_validation_loss": float(inference.summary["best_validation_loss"][-1]),
        **({"restart_validation_losses": restart_losses} if len(restart_losses) > 1 else {}),
        "posterior_mass_inside_prior": inside,
        **({"training_box": box_report} if box_report is not None else {}),
        "posterior_mean": samples.mean(axis=0).tolist(),
        "posterior_std": samples.std(axis=0).tolist(),
        "timings": timings,
    }
    return RoundResult(round_index, theta, x, inference, estimator, posterior, samples, training_log, summary)


def check_invalid_simulations(settings: RunSettings, theta: np.ndarray, x: np.ndarray, round_index: int) -> dict:
    """Apply the engine's policy for simulations with a NaN or infinite value, before any training.

    Returns round.json's ``invalid_simulations``: count, share, NaN/inf rows and, when there are any,
    the parameter region they come from (per parameter: min and max of their theta, and the prior's
    range) and ``policy`` "dropped" (the engine trains without them: ``Engine.drops_invalid``).

    Raises:
        SimulationError: their share exceeds ``training.max_invalid_fraction``, or the engine cannot
            leave them out; the message gives the region and the options.
    """
    bad = ~np.isfinite(x).all(axis=1)
    count, n = int(bad.sum()), x.shape[0]
    report: dict[str, Any] = {"count": count, "fraction": count / n, "nan": int(np.isnan(x).any(axis=1).sum()),
                              "inf": int(np.isinf(x).any(axis=1).sum())}
    if not count:
        return report
    prior = settings.prior
    low, high = theta[bad].min(axis=0), theta[bad].max(axis=0)
    report["theta_region"] = {name: [float(a), float(b)] for name, a, b in zip(prior.names, low, high)}
    region = ", ".join(f"{name} {a:.3g} to {b:.3g} (prior {pa:g} to {pb:g})"
                       for name, a, b, pa, pb in zip(prior.names, low, high, prior.low, prior.high))
    what = (f"run {settings.name!r} round {round_index}: {count} of {n} simulations ({100 * count / n:.1f}%) have "
            f"a NaN or infinite value (theta of those: {region})")
    limit = settings.training.get("max_invalid_fraction", MAX_INVALID_FRACTION)
    if count / n > limit:
        raise SimulationError(
            f"{what}; that is more than runs.{settings.name}.training.max_invalid_fraction ({limit:g}) allows for "
            f"any engine: make the simulator return finite values there, narrow the prior to leave that region "
            f"out, or raise training.max_invalid_fraction"
        )
    engine = engines.ENGINES[settings.engine]
    if not engine.drops_invalid:
        dropping = " or ".join(e.name for e in engines.ENGINES.values() if e.drops_invalid)
        raise SimulationError(
            f"{what}; engine {engine.name} cannot train with them (sbi 0.27 refuses invalid simulations for "
            f"{'its atomic loss from round 1 on' if engine.records_proposal else 'its loss'}, so seqsbi refuses "
            f"them before any training): make the simulator return finite values there (for example a value far "
            f"outside the data's range, a label the network can learn), narrow the prior to leave that region out, "
            f"or use engine {dropping}, which leave "
            f"them out of training (unbiased for their maximum-likelihood loss)"
        )
    fraction = settings.training["validation_fraction"]
    n_train = int((1 - fraction) * (n - count))  # sbi's split of what it keeps (base.py get_dataloaders)
    if round_index == 0 and (n_train < 2 or n - count - n_train < 1):
        raise SimulationError(
            f"{what}; the {n - count} left leave {n_train} training and {n - count - n_train} validation row(s) "
            f"(validation_fraction={fraction:g}), too few to train: raise runs.{settings.name}.simulations_per_round "
            f"or make the simulator return finite values there"
        )
    logger.warning("%s; engine %s leaves them out of training: it trains on the other %d", what, engine.name,
                   n - count)
    report["policy"] = "dropped"
    return report


def feature_report(settings: RunSettings, x: np.ndarray, noise_note: str | None = None) -> dict | None:
    """What the simulator says about a round's training set x (n, k), if it can (``feature_warnings`` on the
    simulator function; the galaxy model: feature kind, bands, noise per band and, for AB magnitudes, the
    share on the 1-sigma floor). Logged, with a warning when it has one; round.json's ``features``.
    ``noise_note``: the noise as a sentence, when the simulator settings cannot say it (an amortized estimator
    with depth inputs: a depth per row)."""
    from seqsbi.simulators import BUILTIN_SIMULATORS

    # built-ins only: resolving a custom simulator would import (run) the user's module once more
    hook = getattr(BUILTIN_SIMULATORS.get(settings.simulator_name), "feature_warnings", None)
    if hook is None:
        return None
    report = hook(x, settings.simulator_settings)
    sigma = report.get("sigma_njy")
    origin = "the observation" if report.get("noise") == "observation" else "the configured depth"
    noise = ("no noise" if sigma is None else f"flux noise from {origin}: "
             + ", ".join(f"{band} {s:.4g} nJy" for band, s in zip(report["bands"], sigma)))
    if noise_note is not None:
        report["noise"] = noise = noise_note
    if "ab_floor_share" in report and censoring.width(settings) is not None:
        # the point mass the warning is about is what the network no longer sees
        report["dequantized_mag"] = censoring.width(settings)
        report.pop("warning", None)
    logger.info("features: %s over %d band(s) (%s); %s", report["kind"], len(report["bands"]),
                ", ".join(report["bands"]), noise)
    if "dequantized_mag" in report:
        share = float(np.mean(list(report["ab_floor_share"].values())))
        logger.info("%.1f%% of the features on the 1-sigma floor; the network trains on them spread over %g mag "
                    "fainter (training.dequantize_censored)", 100 * share, report["dequantized_mag"])
    if "warning" in report:
        logger.warning(report["warning"])
    return report


def observation_coverage(x: np.ndarray, observation: Observation) -> dict:
    """Where x_o lies relative to a round's finite simulations x (n, k): round.json's ``observation_coverage``.

    Per feature: the ones where x_o is below the simulations' min or above their max, by how much
    (in the feature's units and in the simulations' standard deviations). Jointly: x_o's Mahalanobis
    distance from the simulations' mean (their covariance) against the simulations' own distances.
    ``outside`` is true when a feature is outside or x_o is farther than every simulation; then a
    warning names the observation: the network extrapolates there and its posterior may be confidently wrong.
    """
    finite = x[np.isfinite(x).all(axis=1)]
    x_o = np.asarray(observation.x_o, dtype=float)
    if finite.shape[0] < 2:
        return {"outside": None, "simulations": int(finite.shape[0])}
    low, high, mean, std = finite.min(axis=0), finite.max(axis=0), finite.mean(axis=0), finite.std(axis=0)
    beyond = np.maximum(low - x_o, 0) + np.maximum(x_o - high, 0)
    sigmas = beyond / np.where(std > 0, std, 1.0)
    features = [{"index": int(j), "x_o": float(x_o[j]), "min": float(low[j]), "max": float(high[j]),
                 "std": float(std[j]), "beyond": float(beyond[j]), "beyond_std": float(sigmas[j])}
                for j in np.flatnonzero(beyond > 0)]
    precision = np.linalg.pinv(np.atleast_2d(np.cov(finite, rowvar=False)), rcond=1e-10, hermitian=True)
    offsets = finite - mean
    distances = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", offsets, precision, offsets), 0))
    distance = float(np.sqrt(max((x_o - mean) @ precision @ (x_o - mean), 0)))
    coverage = {
        "outside": bool(features) or bool(distance > distances.max()),
        "simulations": int(finite.shape[0]),
        "features_outside": features,
        "mahalanobis": distance,
        "mahalanobis_max_simulated": float(distances.max()),
        "share_of_simulations_as_far": float((distances >= distance).mean()),
    }
    if coverage["outside"]:
        parts = [f"x_o[{f['index']}] = {f['x_o']:.4g} is {f['beyond']:.3g} "
                 f"{'below their min' if f['x_o'] < f['min'] else 'above their max'} "
                 f"{f['min'] if f['x_o'] < f['min'] else f['max']:.4g} ({f['beyond_std']:.3g} std)" for f in features]
        parts.append(f"jointly x_o is {distance:.3g} (Mahalanobis) from their mean, the farthest simulation "
                     f"{distances.max():.3g}")
        logger.warning("observation %r lies outside the data of this round's %d simulations: %s; the posterior "
                       "there is the network's extrapolation and may be confidently wrong: check x_o, the "
                       "simulator and the prior", observation.name, finite.shape[0], "; ".join(parts))
    return coverage


def _train_network(settings: RunSettings, prior: Any, theta: np.ndarray, x: np.ndarray, round_index: int,
                   previous: RoundResult | None, seed: int) -> tuple[Any, Any, list[float]]:
    """(trainer, network, each restart's best validation loss) for one round.

    Round k >= 1 continues round k-1's trainer (a warm start, unless ``training.retrain_from_scratch``:
    :func:`seqsbi.engines.train`). Round 0 trains
    ``training.first_round_restarts`` fresh networks on the same training/validation split, differing
    only in initialisation, and keeps the one with the lowest validation loss: now and then a first
    training stalls far above the others' loss, and every warm-started round after it inherits that.
    Restart 0 is exactly the training without restarts.
    """
    proposal = engines.recorded_proposal(settings, None if previous is None else previous.posterior)
    restarts = settings.training.get("first_round_restarts", 1) if previous is None else 1
    candidates = []
    for restart in range(restarts):
        seed_everything(training_seed(seed))
        if previous is None:
            init_seed = None if restart == 0 else training_seed(seed) + restart
            inference = engines.new_inference(settings, prior, init_seed=init_seed)
        else:
            inference = previous.inference
        engines.append_round(inference, settings, theta, censoring.training_x(settings, x, dequantization_seed(seed)),
                             proposal, round_index)
        estimator = engines.train(inference, settings)
        loss = float(inference.summary["best_validation_loss"][-1])
        if restarts > 1:
            logger.info("first-round restart %d of %d: best validation loss %.4f", restart + 1, restarts, loss)
        candidates.append((loss, inference, estimator))
    best = min(range(restarts), key=lambda i: candidates[i][0])
    if restarts > 1:
        logger.info("keeping restart %d (lowest validation loss)", best + 1)
    return candidates[best][1], candidates[best][2], [loss for loss, _, _ in candidates]


def write_round(result: RoundResult, settings: RunSettings, outputs: dict[str, str | Path]) -> None:
    """Write every artifact of ``result`` atomically; ``outputs`` maps ROUND_FILES keys to paths."""
    names = np.array(settings.prior.names)
    units = np.array(settings.prior.units)
    artifacts.write_npz(outputs["simulations"], theta=result.theta, x=result.x, parameter_names=names)
    artifacts.write_torch(outputs["estimator"], result.estimator)
    artifacts.write_torch(outputs["posterior"], result.posterior)
    with warnings.catch_warnings():
        # sbi warns that a pickled trainer cannot retrain_from_scratch (it drops the network builder):
        # engines.train gives it back when a later round reads inference.pt, so the warning is not the user's
        warnings.filterwarnings("ignore", message="When the inference object is pickled")
        artifacts.write_torch(outputs["inference"], result.inference)
    artifacts.write_npz(outputs["samples"], samples=result.samples, parameter_names=names, parameter_units=units)
    lines = ["epoch\ttraining_loss\tvalidation_loss"] + [
        f"{row['epoch']}\t{row['training_loss']:.6g}\t{row['validation_loss']:.6g}" for row in result.training_log
    ]
    artifacts.write_text(outputs["training_log"], "\n".join(lines) + "\n")
    # round.json last: its presence says the round is complete even to tools outside Snakemake.
    artifacts.write_json(outputs["summary"], result.summary)


def read_previous_round(inference_path: str | Path, posterior_path: str | Path, settings: RunSettings,
                        samples_path: str | Path | None = None) -> RoundResult:
    """The parts of round k-1 that round k needs: its trainer (all data so far), its posterior and,
    when ``samples_path`` is given, its posterior samples (round k's proposal may reuse them)."""
    samples = np.empty((0, settings.prior.dim))
    if samples_path is not None:
        samples = artifacts.read_npz(samples_path)["samples"]

    round_index = int(Path(inference_path).parent.name.removeprefix("round_"))
    return RoundResult(
        round_index=round_index,
        theta=np.empty((0, settings.prior.dim)),
        x=np.empty((0, 0)),
        inference=engines.load(inference_path, settings.device),
        estimator=None,
        posterior=engines.load(posterior_path, settings.device),
        samples=samples,
        training_log=[],
    )
