"""The sbi boundary: the engine table, priors, proposals, trainers, training and posteriors.

Every per-method fact lives in :data:`ENGINES` (one :class:`Engine` per method); the functions
below read it instead of branching on names. numpy arrays come in, torch stays inside: torch and
sbi are imported by the functions that use them, so the table is cheap to import at Snakefile
parse time (seqsbi.config validates engine settings against it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqsbi.priors import ParameterSpace

if TYPE_CHECKING:
    import torch
    from sbi.inference.trainers.base import NeuralInference
    from sbi.utils import BoxUniform

    from seqsbi.config import RunSettings

logger = logging.getLogger("seqsbi.engines")

#: sbi's train() keywords every engine accepts (config 'training' holds the union of all engines').
_COMMON_TRAIN_KEYS = frozenset({"training_batch_size", "learning_rate", "validation_fraction", "stop_after_epochs",
                                "max_num_epochs", "clip_max_norm"})
DENSITY_ESTIMATORS = ("maf", "nsf", "mdn", "made")
CLASSIFIERS = ("resnet", "mlp", "linear")
#: Estimators with a zuko version that sbi can put behind a logit map of the prior (constrain_to_prior).
BOUNDED_ESTIMATORS = ("maf", "nsf")


@dataclass(frozen=True)
class Engine:
    """What seqsbi needs to know of one inference method.

    Attributes:
        name: seqsbi's name, the value of ``RunSettings.engine`` (SNPE, TSNPE, NPE, SNLE, SNRE).
        aliases: other names config accepts for it (sbi's class names; synference uses them).
        trainer: the sbi 0.27 trainer class that implements it (``sbi.inference.<trainer>``).
        network: what the network estimates: "posterior" (a flow over theta given x),
            "likelihood" (a flow over x given theta) or "classifier" (a likelihood-to-evidence ratio).
        estimators: the ``density_estimator`` values it takes; the first is the default.
        train_keys: the keys of config ``training`` passed to sbi's ``train()``.
        proposal: what round k >= 1 draws theta from: "prior", "truncated_prior" (the prior
            restricted to round k-1's highest-density region) or "posterior" (round k-1's posterior).
        records_proposal: append round k's simulations with round k-1's posterior as their
            proposal (the atomic loss corrects for it); otherwise they are recorded as prior draws.
        first_round_loss: train every round with maximum likelihood (sbi's ``force_first_round_loss``).
        mcmc: the posterior is sampled by MCMC (config ``mcmc``) rather than drawn from the network.
    """

    name: str
    aliases: tuple[str, ...]
    trainer: str
    network: str
    estimators: tuple[str, ...]
    train_keys: frozenset[str]
    proposal: str
    records_proposal: bool
    first_round_loss: bool
    mcmc: bool


#: Methods by name. TSNPE: Deistler et al. 2022 (truncated proposals; the first-round loss needs no
#: correction, so its truncated prior is recorded as the prior). SNPE: Greenberg et al. 2019 (atomic loss).
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    Engine("SNPE", ("NPE_C",), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="posterior", records_proposal=True, first_round_loss=False, mcmc=False),
    Engine("TSNPE", (), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="truncated_prior", records_proposal=False, first_round_loss=True, mcmc=False),
    Engine("NPE", (), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="prior", records_proposal=False, first_round_loss=True, mcmc=False),
    Engine("SNLE", ("NLE_A",), "NLE_A", "likelihood", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS,
           proposal="posterior", records_proposal=False, first_round_loss=False, mcmc=True),
    Engine("SNRE", ("NRE_B",), "NRE_B", "classifier", CLASSIFIERS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="posterior", records_proposal=False, first_round_loss=False, mcmc=True),
)}


def engine_named(name: str) -> Engine:
    """The :class:`Engine` called ``name`` or one of its aliases (``NLE_A`` -> SNLE).

    Raises:
        KeyError: ``name`` is neither (the config schema lists the accepted names).
    """
    for engine in ENGINES.values():
        if name == engine.name or name in engine.aliases:
            return engine
    known = [known_name for engine in ENGINES.values() for known_name in (engine.name, *engine.aliases)]
    raise KeyError(f"engine {name!r} unknown; known: {', '.join(known)}")


class LoggingTracker:
    """sbi Tracker that sends training metrics to Python logging instead of ./sbi-logs (TensorBoard)."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        logger.debug("%s=%s (step %s)", name, value, step)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_params(self, params: dict[str, Any]) -> None:
        logger.debug("params %s", params)

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


def make_prior(space: ParameterSpace, device: str = "cpu") -> BoxUniform:
    """torch BoxUniform over ``space`` (float32, on ``device``)."""
    import torch
    from sbi.utils import BoxUniform

    return BoxUniform(
        low=torch.as_tensor(space.low, dtype=torch.float32),
        high=torch.as_tensor(space.high, dtype=torch.float32),
        device=device,
    )


def network_builder(settings: RunSettings, prior: BoxUniform):
    """sbi's builder for the configured network: classifier (SNRE), likelihood flow (SNLE) or
    posterior flow (NPE methods; with ``constrain_to_prior`` zuko's flow behind a logit map of the box)."""
    from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_nn

    size = settings.network
    network = ENGINES[settings.engine].network
    if network == "classifier":
        return classifier_nn(model=settings.density_estimator, hidden_features=size["hidden_features"])
    if network == "likelihood":
        return likelihood_nn(model=settings.density_estimator, **size)
    if settings.constrain_to_prior:
        return posterior_nn(model=f"zuko_{settings.density_estimator}", z_score_theta="transform_to_unconstrained",
                            x_dist=prior, **size)
    return posterior_nn(model=settings.density_estimator, **size)


def new_inference(settings: RunSettings, prior: BoxUniform, show_progress_bars: bool = True,
                  init_seed: int | None = None) -> NeuralInference:
    """A fresh sbi trainer for ``settings.engine`` with the configured network.

    ``init_seed``: reseed torch just before sbi builds the network (in the first ``train()``, after it
    has drawn the training/validation split), so trainers differing only in ``init_seed`` share the
    split and differ in the network's initialisation and batch order.
    """
    from sbi import inference as sbi_inference

    engine = ENGINES[settings.engine]
    trainer = getattr(sbi_inference, engine.trainer)
    builder_keyword = "classifier" if engine.network == "classifier" else "density_estimator"
    builder = network_builder(settings, prior)
    if init_seed is not None:
        builder = _seeded(builder, init_seed)
    return trainer(
        prior=prior,
        device=settings.device,
        tracker=LoggingTracker(),
        show_progress_bars=show_progress_bars,
        **{builder_keyword: builder},
    )


def _seeded(builder: Callable, seed: int) -> Callable:
    import torch

    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        torch.manual_seed(seed)
        return builder(*args, **kwargs)

    return build


def proposal_for_round(settings: RunSettings, prior: BoxUniform, previous_posterior: Any | None) -> Any:
    """The distribution round k draws theta from (the engine's ``proposal``): the prior in round 0
    and for NPE, the prior truncated to round k-1's highest-density region for TSNPE, round k-1's
    posterior otherwise."""
    proposal = ENGINES[settings.engine].proposal
    if previous_posterior is None or proposal == "prior":
        return prior
    if proposal == "truncated_prior":
        from sbi.utils import RestrictedPrior, get_density_thresholder

        truncation = settings.truncation
        threshold = get_density_thresholder(previous_posterior, quantile=truncation["quantile"],
                                            num_samples_to_estimate_support=truncation["support_samples"])
        return RestrictedPrior(prior, threshold, posterior=previous_posterior,
                               sample_with=truncation["sample_with"], device=settings.device)
    return previous_posterior


def recorded_proposal(settings: RunSettings, previous_posterior: Any | None) -> Any | None:
    """The proposal recorded with a round's simulations (None = prior).

    Only SNPE records a non-prior proposal: its loss corrects for it. TSNPE's truncated prior is
    recorded as the prior on purpose: its first-round loss needs no correction (Deistler et al. 2022).
    """
    return previous_posterior if ENGINES[settings.engine].records_proposal else None


def draw(distribution: Any, n: int) -> np.ndarray:
    """n draws, shape (n, d), from a prior, a truncated prior or a posterior (at its default x)."""
    import torch
    from sbi.utils import RestrictedPrior

    if isinstance(distribution, RestrictedPrior):
        theta = distribution.sample((n,), save_acceptance_rate=True)
        if distribution.acceptance_rate is not None:
            logger.info("truncated prior: %.2f%% of prior draws accepted", 100 * float(distribution.acceptance_rate))
    elif isinstance(distribution, torch.distributions.Distribution):
        theta = distribution.sample((n,))
    else:
        theta = distribution.sample((n,), show_progress_bars=False)
    return theta.detach().cpu().numpy().astype(float)


def append_round(
    inference: NeuralInference, settings: RunSettings, theta: np.ndarray, x: np.ndarray, proposal: Any, round_index: int
) -> None:
    """Add one round's simulations; NPE methods record the proposal they came from (None = prior)."""
    import torch

    theta_t = torch.as_tensor(theta, dtype=torch.float32)
    x_t = torch.as_tensor(x, dtype=torch.float32)
    if ENGINES[settings.engine].network == "posterior":
        inference.append_simulations(theta_t, x_t, proposal=proposal)
    else:
        inference.append_simulations(theta_t, x_t, from_round=round_index)


def train(inference: NeuralInference, settings: RunSettings) -> torch.nn.Module:
    """Train (warm-starting from the network already in ``inference``) and return the network."""
    engine = ENGINES[settings.engine]
    options = {key: value for key, value in settings.training.items() if key in engine.train_keys}
    if engine.first_round_loss:
        # Rounds drawn from the (truncated) prior: maximum likelihood is the right loss; sbi asks to
        # be told so explicitly after round 0.
        options["force_first_round_loss"] = True
    return inference.train(**options)


def build_posterior(inference: NeuralInference, settings: RunSettings, estimator: torch.nn.Module, x_o: np.ndarray):
    """Posterior with default x = x_o: direct sampling for NPE methods, MCMC (config 'mcmc') otherwise."""
    import torch

    if not ENGINES[settings.engine].mcmc:
        posterior = inference.build_posterior(estimator)
    else:
        from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters

        posterior = inference.build_posterior(
            estimator, sample_with="mcmc", posterior_parameters=MCMCPosteriorParameters(**settings.mcmc)
        )
    return posterior.set_default_x(torch.as_tensor(x_o, dtype=torch.float32)[None, :])


def fraction_inside_prior(posterior, settings: RunSettings, samples: np.ndarray, n: int = 2000) -> float:
    """Share of the posterior's mass inside the prior box.

    NPE methods: of ``n`` draws from the network without rejection (multi-round SNPE can leak mass
    outside the prior; rejection sampling then slows down by 1/fraction). MCMC engines sample prior x
    likelihood (or ratio), which is zero outside the prior: the share of ``samples`` (N, d) inside.
    """
    if ENGINES[settings.engine].mcmc:
        return float(settings.prior.contains(samples).mean())
    draws = posterior.sample((n,), reject_outside_prior=False, show_progress_bars=False).detach().cpu().numpy()
    return float(settings.prior.contains(draws).mean())


@contextmanager
def _quiet_unpickling() -> Iterator[None]:
    """sbi 0.27's ``NeuralInference.__setstate__`` gives every unpickled trainer a new tracker from
    ``_default_tracker()``, a TensorBoard writer that creates ./sbi-logs; sbi offers no argument for
    it, so while loading, the method returns our :class:`LoggingTracker` (the job's log) instead."""
    from sbi.inference.trainers.base import NeuralInference

    original = NeuralInference.__dict__["_default_tracker"]
    NeuralInference._default_tracker = lambda self: LoggingTracker()
    try:
        yield
    finally:
        NeuralInference._default_tracker = original


def load(path: str | Path, device: str = "cpu") -> Any:
    """Reload a saved trainer, posterior or network (full pickles: weights_only=False)."""
    import torch

    with _quiet_unpickling():
        return torch.load(path, map_location=device, weights_only=False)
