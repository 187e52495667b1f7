"""The sbi boundary: the engine table, priors, proposals, trainers, training and posteriors.

Every per-method fact lives in :data:`ENGINES` (one :class:`Engine` per method); the functions
below read it instead of branching on names. numpy arrays come in, torch stays inside: torch and
sbi are imported by the functions that use them, so the table is cheap to import at Snakefile
parse time (seqsbi.config validates engine settings against it).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqsbi.errors import SamplingError
from seqsbi.logs import progress_bars
from seqsbi.priors import ParameterSpace

if TYPE_CHECKING:
    import torch
    from sbi.inference.trainers.base import NeuralInference
    from sbi.utils import BoxUniform

    from seqsbi.config import RunSettings

logger = logging.getLogger("seqsbi.engines")

#: sbi's train() keywords every engine accepts (config 'training' holds the union of all engines').
_COMMON_TRAIN_KEYS = frozenset({"training_batch_size", "learning_rate", "validation_fraction", "stop_after_epochs",
                                "max_num_epochs", "clip_max_norm", "discard_prior_samples", "retrain_from_scratch"})
#: seqsbi's key in config ``mcmc`` (not sbi's: left out of what MCMCPosterior gets, see :func:`mcmc_parameters`).
RESTRICT_KEY = "restrict_to_training_box"
DENSITY_ESTIMATORS = ("maf", "nsf", "mdn", "made")
CLASSIFIERS = ("resnet", "mlp", "linear")
#: Config ``rejection`` defaults (no schema default, so rounds made before the key existed stay up to date):
#: a rejection sampler first draws ``pilot_draws`` proposals to measure its acceptance, and below
#: ``min_acceptance`` (sbi's own warning level, rejection.py warn_acceptance) uses its alternative.
REJECTION_DEFAULTS = {"min_acceptance": 0.01, "pilot_draws": 4000}
#: A rejection sampler may draw this many times the proposals the minimum acceptance needs.
REJECTION_BUDGET_FACTOR = 10
#: sbi 0.27's max_sampling_batch_size default (DirectPosterior.sample, RestrictedPrior.sample).
_SBI_REJECTION_BATCH = 10_000
#: Estimators with a zuko version that sbi can put behind a map of the prior box (constrain_to_prior).
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
        samples_by_mcmc: the posterior is sampled by MCMC (config ``mcmc``) rather than drawn from the network.
        drops_invalid: simulations with non-finite x may be left out of training. sbi 0.27 drops them
            without bias only where every row's loss is independent of the others: maximum-likelihood
            rounds from the (truncated) prior (TSNPE, NPE; npe_base.py append_simulations). It refuses
            them ("... does not allow invalid simulations", sbiutils.py nle_nre_apt_msg_on_invalid_x)
            for NLE and NRE (any round) and for SNPE's atomic loss from round 1 on; SNPE refuses them
            from round 0 here, so a run fails before training rather than one round late.
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
    samples_by_mcmc: bool
    drops_invalid: bool


#: Methods by name. TSNPE: Deistler et al. 2022 (truncated proposals; the first-round loss needs no
#: correction, so its truncated prior is recorded as the prior). SNPE: Greenberg et al. 2019 (atomic loss).
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    Engine("SNPE", ("NPE_C",), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="posterior", records_proposal=True, first_round_loss=False,
           samples_by_mcmc=False, drops_invalid=False),
    Engine("TSNPE", (), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="truncated_prior", records_proposal=False, first_round_loss=True,
           samples_by_mcmc=False, drops_invalid=True),
    Engine("NPE", (), "NPE_C", "posterior", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="prior", records_proposal=False, first_round_loss=True,
           samples_by_mcmc=False, drops_invalid=True),
    Engine("SNLE", ("NLE_A",), "NLE_A", "likelihood", DENSITY_ESTIMATORS, _COMMON_TRAIN_KEYS,
           proposal="posterior", records_proposal=False, first_round_loss=False,
           samples_by_mcmc=True, drops_invalid=False),
    Engine("SNRE", ("NRE_B",), "NRE_B", "classifier", CLASSIFIERS, _COMMON_TRAIN_KEYS | {"num_atoms"},
           proposal="posterior", records_proposal=False, first_round_loss=False,
           samples_by_mcmc=True, drops_invalid=False),
)}


#: Engines that are not sbi methods: ``likelihood`` samples the exact-likelihood posterior with nautilus
#: (seqsbi.reference): no rounds, no network, no simulations. Config accepts these names beside ENGINES'.
REFERENCE_ENGINES = ("likelihood",)


def is_reference_engine(name: str) -> bool:
    """Whether config engine ``name`` is a reference (exact-likelihood) engine rather than an sbi method."""
    return name in REFERENCE_ENGINES


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
    """torch BoxUniform over ``space`` (float32, on ``device``); a prior with a log-uniform or Gaussian
    parameter is a :class:`seqsbi.torch_priors.IndependentPrior` on the same box (its support)."""
    import torch
    from sbi.utils import BoxUniform

    if not space.is_box:
        from seqsbi.torch_priors import IndependentPrior

        return IndependentPrior.from_space(space, device)

    return BoxUniform(
        low=torch.as_tensor(space.low, dtype=torch.float32),
        high=torch.as_tensor(space.high, dtype=torch.float32),
        device=device,
    )


def network_builder(settings: RunSettings, prior: BoxUniform):
    """sbi's builder for the configured network: classifier (SNRE), likelihood flow (SNLE) or
    posterior flow (NPE methods; with ``constrain_to_prior`` zuko's flow behind a map of the box: sbi's logit
    map, or the probit map of :mod:`seqsbi.bounding` where ``settings.bounding`` is "probit")."""
    from sbi.neural_nets import classifier_nn, likelihood_nn, posterior_nn

    size = settings.network
    network = ENGINES[settings.engine].network
    if network == "classifier":
        return classifier_nn(model=settings.density_estimator, hidden_features=size["hidden_features"])
    if network == "likelihood":
        return likelihood_nn(model=settings.density_estimator, **size)
    if settings.constrain_to_prior:
        builder = posterior_nn(model=f"zuko_{settings.density_estimator}", z_score_theta="transform_to_unconstrained",
                               x_dist=prior, **size)
        if settings.bounding == "probit":
            from seqsbi.bounding import probit_bounded

            return probit_bounded(builder, prior)
        return builder
    return posterior_nn(model=settings.density_estimator, **size)


def new_inference(settings: RunSettings, prior: BoxUniform, show_progress_bars: bool | None = None,
                  init_seed: int | None = None) -> NeuralInference:
    """A fresh sbi trainer for ``settings.engine`` with the configured network.

    ``show_progress_bars``: sbi's epoch counter while training; default on a terminal only
    (:func:`seqsbi.logs.progress_bars`).

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
        show_progress_bars=progress_bars() if show_progress_bars is None else show_progress_bars,
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
        truncation = settings.truncation
        threshold = density_thresholder(previous_posterior, settings, quantile=truncation["quantile"],
                                        num_samples=truncation["support_samples"])
        return TruncatedPrior.build(prior, threshold, previous_posterior, truncation["sample_with"], settings.device,
                                    settings)
    return previous_posterior


@dataclass(frozen=True)
class TruncatedPrior:
    """TSNPE's proposal: ``prior`` restricted to where ``inside(theta)`` is true (round k-1's
    highest-density region). sbi's ``RestrictedPrior`` (``restricted``) draws its SIR samples; the
    parts are kept here as well because :func:`draw` samples by rejection itself, with a bound on the
    proposals (sbi's ``RestrictedPrior.sample`` has none and keeps its parts private).
    """

    prior: Any
    inside: Callable
    restricted: Any
    sample_with: str

    @classmethod
    def build(cls, prior: Any, inside: Callable, posterior: Any, sample_with: str, device: str,
              settings: RunSettings | None = None) -> TruncatedPrior:
        """With ``settings``, SIR's proposal is ``posterior`` sampled with a bound (:class:`_BoundedPosterior`)."""
        from sbi.utils import RestrictedPrior

        proposal = posterior if settings is None else _BoundedPosterior(posterior, settings)
        restricted = RestrictedPrior(prior, inside, posterior=proposal, sample_with=sample_with, device=device)
        return cls(prior, inside, restricted, sample_with)


class _BoundedPosterior:
    """An NPE posterior as SIR's proposal, with every draw bounded: samples inside the prior by rejection
    with at most :func:`_proposal_budget` proposals (raising ``_OutOfProposals``), and unnormalised log
    densities (SIR's weights are normalised among the candidates, so the constant does not matter, and
    sbi's normalisation would need unbounded rejection sampling)."""

    def __init__(self, posterior: Any, settings: RunSettings):
        self.posterior, self.settings = posterior, settings

    def sample(self, sample_shape: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        return _bounded_direct_sample(self.posterior, torch.Size(sample_shape).numel(), self.settings)

    def log_prob(self, theta: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.posterior.log_prob(theta, norm_posterior=False)


def density_thresholder(posterior: Any, settings: RunSettings, quantile: float, num_samples: int) -> Callable:
    """sbi's ``get_density_thresholder`` (restriction_estimator.py) with bounded sampling: True for theta
    inside the ``1 - quantile`` highest-density region of ``posterior``. Draws exactly what sbi's would;
    compares unnormalised log densities (the normalisation, a constant, would need unbounded rejection
    sampling and does not change which theta lie above the threshold).

    Raises:
        SamplingError: the posterior has too little mass inside the prior to sample it by rejection.
    """
    import torch

    inside = _pilot_inside_prior(posterior, settings)
    min_acceptance = rejection_setting(settings, "min_acceptance")
    if inside < min_acceptance:
        raise SamplingError(
            f"run {settings.name!r}: TSNPE cannot truncate the prior to round k-1's posterior: only "
            f"{100 * inside:.3g}% of its mass lies inside the prior (rejection.min_acceptance "
            f"{min_acceptance:g}), so neither its samples nor its normalised density can be drawn in bounded "
            f"time; set constrain_to_prior: true (a flow without mass outside the prior), or use engine SNPE"
        )
    try:
        samples = _bounded_direct_sample(posterior, num_samples, settings)
    except _OutOfProposals as stop:
        raise SamplingError(
            f"run {settings.name!r}: TSNPE's truncation drew round k-1's posterior inside the prior by rejection and "
            f"ran out of proposals ({stop}); set constrain_to_prior: true, or lower truncation.support_samples"
        ) from None
    log_probs = posterior.log_prob(samples, norm_posterior=False)
    sorted_log_probs, _ = torch.sort(log_probs)
    log_prob_threshold = sorted_log_probs[int(quantile * num_samples)]

    def thresholder(theta: torch.Tensor) -> torch.Tensor:
        return (posterior.log_prob(theta, norm_posterior=False) > log_prob_threshold).bool()

    return thresholder


def recorded_proposal(settings: RunSettings, previous_posterior: Any | None) -> Any | None:
    """The proposal recorded with a round's simulations (None = prior).

    Only SNPE records a non-prior proposal: its loss corrects for it. TSNPE's truncated prior is
    recorded as the prior on purpose: its first-round loss needs no correction (Deistler et al. 2022).
    """
    return previous_posterior if ENGINES[settings.engine].records_proposal else None


def rejection_setting(settings: RunSettings, key: str) -> Any:
    """Config ``rejection.<key>`` or its default (:data:`REJECTION_DEFAULTS`)."""
    return settings.rejection.get(key, REJECTION_DEFAULTS[key])


def draw(distribution: Any, n: int, settings: RunSettings) -> np.ndarray:
    """n draws, shape (n, d), from a prior, a truncated prior or a posterior (at its default x).

    Every rejection sampler is bounded: a pilot of ``rejection.pilot_draws`` proposals, drawn from a
    copy of torch's random state (so the draws after it are those an unpiloted run makes), measures
    the acceptance first; below ``rejection.min_acceptance`` the draw switches to a sampler that needs
    no acceptance (TSNPE: sbi's SIR from the posterior; NPE posteriors: MCMC inside the prior), and
    so it does when the rejection sampler runs out of its budget of proposals. Both are logged.
    """
    import torch
    from sbi.inference.posteriors.direct_posterior import DirectPosterior

    if isinstance(distribution, TruncatedPrior):
        theta = _sample_truncated(distribution, n, settings)
    elif isinstance(distribution, DirectPosterior):
        theta = _sample_direct(distribution, n, settings)
    elif isinstance(distribution, torch.distributions.Distribution):
        theta = distribution.sample((n,))
    else:
        theta = distribution.sample((n,), show_progress_bars=progress_bars())
    return theta.detach().cpu().numpy().astype(float)


class _OutOfProposals(Exception):
    """A bounded rejection sampler used up its proposals."""


class _CountedProposal:
    """A proposal callable that stops the rejection loop once it has handed out ``limit`` candidates."""

    def __init__(self, sample: Callable, limit: int):
        self.sample, self.limit, self.drawn = sample, limit, 0

    def __call__(self, sample_shape: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        count = torch.Size(sample_shape).numel()
        if self.drawn + count > self.limit:
            raise _OutOfProposals(f"{self.drawn} proposals drawn; the next {count} would exceed {self.limit}")
        self.drawn += count
        return self.sample(sample_shape, **kwargs)


def _proposal_budget(n: int, settings: RunSettings) -> int:
    """Proposals a rejection sampler may draw for n samples: REJECTION_BUDGET_FACTOR times what the
    minimum acceptance needs, and at least one full batch."""
    return max(int(np.ceil(REJECTION_BUDGET_FACTOR * n / rejection_setting(settings, "min_acceptance"))),
               _SBI_REJECTION_BATCH)


@contextmanager
def _forked_rng() -> Iterator[None]:
    """Run the body on a copy of torch's random state (the CPU's and every device's of the current
    accelerator: CUDA or MPS): the caller's stream is left as it was."""
    import torch

    accelerator = torch.accelerator.current_accelerator()
    devices = range(torch.accelerator.device_count()) if accelerator is not None else []
    with torch.random.fork_rng(devices=devices, device_type=None if accelerator is None else accelerator.type):
        yield


def _pilot_inside_prior(posterior: Any, settings: RunSettings) -> float:
    """Share of ``rejection.pilot_draws`` draws of an NPE posterior's network (no rejection) inside the prior."""
    import torch
    from sbi.utils import within_support

    with _forked_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sbi warns about draws outside the prior: that is what is measured
        draws = posterior.sample((rejection_setting(settings, "pilot_draws"),), reject_outside_prior=False,
                                 show_progress_bars=False)
        return float(within_support(posterior.prior, draws).to(torch.float32).mean())


def _bounded_direct_sample(posterior: Any, n: int, settings: RunSettings) -> torch.Tensor:
    """What ``DirectPosterior.sample((n,), show_progress_bars=False)`` draws (sbi 0.27's rejection
    inside the prior, direct_posterior.py), with at most :func:`_proposal_budget` proposals.

    Raises:
        _OutOfProposals: the budget ran out.
    """
    from sbi.neural_nets.estimators.shape_handling import reshape_to_batch_event
    from sbi.samplers.rejection.rejection import accept_reject_sample
    from sbi.utils import within_support

    x = reshape_to_batch_event(posterior.default_x, event_shape=posterior.posterior_estimator.condition_shape)
    samples, _ = accept_reject_sample(
        proposal=_CountedProposal(posterior.posterior_estimator.sample, _proposal_budget(n, settings)),
        accept_reject_fn=lambda theta: within_support(posterior.prior, theta),
        num_samples=n,
        show_progress_bars=progress_bars(),
        max_sampling_batch_size=_SBI_REJECTION_BATCH,
        proposal_sampling_kwargs={"condition": x},
        alternative_method="build_posterior(..., sample_with='mcmc')",
    )
    return samples[:, 0]


def _sample_direct(posterior: Any, n: int, settings: RunSettings) -> torch.Tensor:
    """n draws of an NPE posterior inside the prior: rejection when enough of its mass is inside, else MCMC."""
    inside = _pilot_inside_prior(posterior, settings)
    min_acceptance = rejection_setting(settings, "min_acceptance")
    if inside >= min_acceptance:
        try:
            return _bounded_direct_sample(posterior, n, settings)
        except _OutOfProposals as stop:
            reason = f"rejection inside the prior ran out of proposals ({stop})"
    else:
        reason = (f"only {100 * inside:.3g}% of {rejection_setting(settings, 'pilot_draws')} pilot draws lie "
                  f"inside the prior (rejection.min_acceptance {min_acceptance:g})")
    logger.warning("posterior sampling: %s; switching from rejection to MCMC inside the prior (config mcmc: %s)",
                   reason, mcmc_parameters(settings))
    return _mcmc_inside_prior(posterior, n, settings)


def _mcmc_inside_prior(posterior: Any, n: int, settings: RunSettings) -> torch.Tensor:
    """n MCMC draws of an NPE posterior's network density restricted to the prior (sbi's suggested
    alternative, ``build_posterior(..., sample_with='mcmc')``), with the run's ``mcmc`` settings."""
    from sbi.inference import MCMCPosterior
    from sbi.inference.potentials import posterior_estimator_based_potential

    potential, transform = posterior_estimator_based_potential(posterior.posterior_estimator, posterior.prior,
                                                               x_o=posterior.default_x)
    mcmc = MCMCPosterior(potential, proposal=posterior.prior, theta_transform=transform, device=settings.device,
                         **mcmc_parameters(settings))
    return mcmc.sample((n,), show_progress_bars=progress_bars())


def _sample_truncated(truncated: TruncatedPrior, n: int, settings: RunSettings) -> torch.Tensor:
    """n draws of TSNPE's truncated prior: rejection from the prior when its pilot accepts enough, else
    (or when rejection runs out of proposals) sbi's SIR from round k-1's posterior."""
    import torch
    from sbi.samplers.rejection.rejection import accept_reject_sample

    if truncated.sample_with == "rejection":
        pilot = rejection_setting(settings, "pilot_draws")
        with _forked_rng():
            accepted = float(truncated.inside(truncated.prior.sample((pilot,))).to(torch.float32).mean())
        min_acceptance = rejection_setting(settings, "min_acceptance")
        if accepted >= min_acceptance:
            try:
                # What RestrictedPrior.sample(sample_with="rejection") draws (restriction_estimator.py).
                samples, rate = accept_reject_sample(
                    proposal=_CountedProposal(lambda shape, **kwargs: truncated.prior.sample(shape),
                                              _proposal_budget(n, settings)),
                    accept_reject_fn=truncated.inside,
                    num_samples=n,
                    show_progress_bars=progress_bars(),
                    max_sampling_batch_size=_SBI_REJECTION_BATCH,
                    alternative_method="sample_with='sir'",
                )
                logger.info("truncated prior: %.2f%% of prior draws accepted", 100 * float(rate.min().item()))
                return samples.reshape((n, -1))
            except _OutOfProposals as stop:
                reason = f"rejection from the prior ran out of proposals ({stop})"
        else:
            reason = (f"{100 * accepted:.3g}% of {pilot} pilot prior draws fall inside the truncated region "
                      f"(rejection.min_acceptance {min_acceptance:g})")
        logger.warning("truncated prior: %s; switching to truncation.sample_with: sir (importance resampling "
                       "of round k-1's posterior)", reason)
    try:
        return truncated.restricted.sample((n,), sample_with="sir")
    except _OutOfProposals as stop:
        raise SamplingError(
            f"run {settings.name!r}: TSNPE's SIR draws round k-1's posterior inside the prior by rejection and ran "
            f"out of proposals ({stop}); set constrain_to_prior: true (no mass outside the prior), or use engine SNPE"
        ) from None


def append_round(
    inference: NeuralInference, settings: RunSettings, theta: np.ndarray, x: np.ndarray, proposal: Any, round_index: int
) -> None:
    """Add one round's simulations; NPE methods record the proposal they came from (None = prior)."""
    import torch

    theta_t = torch.as_tensor(theta, dtype=torch.float32)
    x_t = torch.as_tensor(x, dtype=torch.float32)
    engine = ENGINES[settings.engine]
    # The engine's policy, said explicitly (rounds.check_invalid_simulations stops the others first).
    if engine.network == "posterior":
        inference.append_simulations(theta_t, x_t, proposal=proposal, exclude_invalid_x=engine.drops_invalid)
    else:
        inference.append_simulations(theta_t, x_t, from_round=round_index, exclude_invalid_x=engine.drops_invalid)


def train(inference: NeuralInference, settings: RunSettings) -> torch.nn.Module:
    """Train and return the network: warm-starting from the one already in ``inference``, or a new one
    with ``training.retrain_from_scratch`` (z-scored on the data it trains on, which with
    ``training.discard_prior_samples`` leaves out round 0's prior draws)."""
    engine = ENGINES[settings.engine]
    options = {key: value for key, value in settings.training.items() if key in engine.train_keys}
    if options.get("retrain_from_scratch") and getattr(inference, "_build_neural_net", None) is None:
        # sbi drops the network builder when a trainer is pickled (NeuralInference.__getstate__: "retrain_from_scratch
        # is not supported" after loading); round k's trainer comes from round k-1's inference.pt, so give it back.
        inference._build_neural_net = network_builder(settings, inference._prior)
    if engine.first_round_loss:
        # Rounds drawn from the (truncated) prior: maximum likelihood is the right loss; sbi asks to
        # be told so explicitly after round 0.
        options["force_first_round_loss"] = True
    return inference.train(**options)


def mcmc_parameters(settings: RunSettings) -> dict[str, Any]:
    """Config ``mcmc`` as sbi's MCMCPosterior takes it (without seqsbi's ``restrict_to_training_box``)."""
    return {key: value for key, value in settings.mcmc.items() if key != RESTRICT_KEY}


def training_box(inference: NeuralInference, settings: RunSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high), each (d,): the box spanned by the parameters of the simulations the network of the
    trainer's latest round trained on (without round 0's with ``training.discard_prior_samples``), inside
    the prior's box; None unless ``mcmc.restrict_to_training_box`` applies (an MCMC engine, round >= 1).

    A likelihood (or ratio) network learned only from simulations inside this box extrapolates outside it,
    so MCMC that may leave it can find spurious modes there; the posterior sampled inside it is the
    posterior restricted to the region the proposals covered (the assumption TSNPE makes of its truncated
    prior, Deistler et al. 2022).
    """
    if not (ENGINES[settings.engine].samples_by_mcmc and settings.mcmc.get(RESTRICT_KEY)):
        return None
    rounds = np.asarray(inference._data_round_index)
    latest = int(rounds.max())
    if latest == 0:
        return None
    first = 1 if settings.training.get("discard_prior_samples") else 0
    theta, _, _ = inference.get_simulations(starting_round=first)
    theta = theta.detach().cpu().numpy().astype(float)
    prior_low, prior_high = settings.prior.low, settings.prior.high
    low = np.maximum(theta.min(axis=0), prior_low)
    high = np.minimum(theta.max(axis=0), prior_high)
    # A face closer to the prior's own than 1% of the box's width (the slab training_box_edges checks) is taken
    # to be the prior's: a posterior piled against a prior bound (tau_v -> 0, the lowest metallicity) has
    # proposals that stop just short of it, and proposals at an upper bound are moved one float32 step below.
    snap = 0.01 * (high - low)
    return np.where(low - prior_low <= snap, prior_low, low), np.where(prior_high - high <= snap, prior_high, high)


#: Share of posterior samples in the outer 1% of a training-box face inside the prior above which
#: :func:`training_box_edges` warns.
BOX_EDGE_WARNING = 0.01


def training_box_edges(samples: np.ndarray, box: tuple[np.ndarray, np.ndarray], settings: RunSettings,
                       round_index: int) -> dict[str, Any]:
    """round.json's ``training_box``: the box (per parameter [low, high]) and, for each face of it inside the
    prior, the share of ``samples`` (n, d) within 1% of the box's width of that face; a warning (logged, and
    kept under ``warning``) when a share exceeds :data:`BOX_EDGE_WARNING`: the posterior presses against the
    edge of what the network trained on, so it may extend beyond it."""
    low, high = box
    names = settings.prior.names
    width = np.where(high > low, high - low, 1.0)
    edges = {}
    for side, face, prior_face, near in (("low", low, settings.prior.low, samples <= low + 0.01 * width),
                                         ("high", high, settings.prior.high, samples >= high - 0.01 * width)):
        for i, name in enumerate(names):
            if face[i] != prior_face[i]:
                edges[f"{name} {side}"] = float(near[:, i].mean())
    report: dict[str, Any] = {"box": {name: [float(a), float(b)] for name, a, b in zip(names, low, high)},
                              "edge_shares": edges}
    worst = max(edges, key=edges.get, default=None)
    if worst is not None and edges[worst] > BOX_EDGE_WARNING:
        name, side = worst.rsplit(" ", 1)
        i = list(names).index(name)
        report["warning"] = (
            f"round {round_index}: {100 * edges[worst]:.1f}% of the posterior samples lie within 1% of the training "
            f"box's {side} edge on {name} ({(low if side == 'low' else high)[i]:.4g}, inside the prior): the posterior "
            f"may extend beyond the parameters this round's network trained on (mcmc.restrict_to_training_box); "
            f"run another round (its proposal is this posterior) or set mcmc.restrict_to_training_box: false")
        logger.warning(report["warning"])
    return report


def build_posterior(inference: NeuralInference, settings: RunSettings, estimator: torch.nn.Module, x_o: np.ndarray,
                    box: tuple[np.ndarray, np.ndarray] | None = None):
    """Posterior with default x = x_o: direct sampling for NPE methods, MCMC (config 'mcmc') otherwise,
    inside ``box`` (:func:`training_box`) when given (its prior is then the run's truncated to the box)."""
    import torch

    if not ENGINES[settings.engine].samples_by_mcmc:
        posterior = inference.build_posterior(estimator)
    else:
        from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters

        # The run's prior truncated to the box (each parameter's own distribution, on the box's range): uniform
        # on it for a uniform prior; an observation's Gaussian redshift stays Gaussian inside it.
        prior = None if box is None else make_prior(replace(settings.prior, low=box[0], high=box[1]), settings.device)
        posterior = inference.build_posterior(
            estimator, prior=prior, sample_with="mcmc",
            posterior_parameters=MCMCPosteriorParameters(**mcmc_parameters(settings))
        )
    return posterior.set_default_x(torch.as_tensor(x_o, dtype=torch.float32)[None, :])


def fraction_inside_prior(posterior, settings: RunSettings, samples: np.ndarray, n: int = 2000) -> float:
    """Share of the posterior's mass inside the prior box.

    NPE methods: of ``n`` draws from the network without rejection (multi-round SNPE can leak mass
    outside the prior; rejection sampling then slows down by 1/fraction). MCMC engines sample prior x
    likelihood (or ratio), which is zero outside the prior: the share of ``samples`` (N, d) inside.
    """
    if ENGINES[settings.engine].samples_by_mcmc:
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
