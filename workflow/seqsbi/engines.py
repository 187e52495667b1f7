"""The sbi boundary: priors, proposals, trainers, training and posteriors.

Methods (``RunSettings.engine``) and the sbi 0.27 trainer behind each:
  SNPE  NPE_C; round k >= 1 draws from round k-1's posterior, trained with the atomic loss.
  TSNPE NPE_C; round k >= 1 draws from the prior truncated to round k-1's highest-density region
        (Deistler et al. 2022), trained with the first-round (maximum-likelihood) loss.
  NPE   NPE_C; every round draws from the prior (amortized posterior).
  SNLE  NLE_A, SNRE NRE_B; round k >= 1 draws from round k-1's posterior; posteriors sampled by MCMC.
numpy arrays come in, torch stays inside.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import torch
from sbi import inference as sbi_inference
from sbi.inference.trainers.base import NeuralInference
from sbi.utils import BoxUniform

from seqsbi.config import RunSettings
from seqsbi.priors import ParameterSpace

logger = logging.getLogger("seqsbi.engines")

#: train() keywords each engine accepts (config 'training' holds their union).
_TRAIN_KEYS = {
    "NPE_C": {"training_batch_size", "learning_rate", "validation_fraction", "stop_after_epochs",
              "max_num_epochs", "clip_max_norm", "num_atoms"},
    "NLE_A": {"training_batch_size", "learning_rate", "validation_fraction", "stop_after_epochs",
              "max_num_epochs", "clip_max_norm"},
    "NRE_B": {"training_batch_size", "learning_rate", "validation_fraction", "stop_after_epochs",
              "max_num_epochs", "clip_max_norm", "num_atoms"},
}


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
    if settings.sbi_trainer == "NRE_B":
        return classifier_nn(model=settings.density_estimator, hidden_features=size["hidden_features"])
    if settings.sbi_trainer == "NLE_A":
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
    trainer = getattr(sbi_inference, settings.sbi_trainer)
    network = "classifier" if settings.engine == "SNRE" else "density_estimator"
    builder = network_builder(settings, prior)
    if init_seed is not None:
        builder = _seeded(builder, init_seed)
    return trainer(
        prior=prior,
        device=settings.device,
        tracker=LoggingTracker(),
        show_progress_bars=show_progress_bars,
        **{network: builder},
    )


def _seeded(builder: Callable, seed: int) -> Callable:
    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        torch.manual_seed(seed)
        return builder(*args, **kwargs)

    return build


def proposal_for_round(settings: RunSettings, prior: BoxUniform, previous_posterior: Any | None) -> Any:
    """The distribution round k draws theta from: the prior in round 0 and for NPE, the prior
    truncated to round k-1's highest-density region for TSNPE, round k-1's posterior otherwise."""
    if previous_posterior is None or settings.engine == "NPE":
        return prior
    if settings.engine == "TSNPE":
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
    return previous_posterior if settings.engine == "SNPE" else None


def draw(distribution: Any, n: int) -> np.ndarray:
    """n draws, shape (n, d), from a prior, a truncated prior or a posterior (at its default x)."""
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
    theta_t = torch.as_tensor(theta, dtype=torch.float32)
    x_t = torch.as_tensor(x, dtype=torch.float32)
    if settings.sbi_trainer == "NPE_C":
        inference.append_simulations(theta_t, x_t, proposal=proposal)
    else:
        inference.append_simulations(theta_t, x_t, from_round=round_index)


def train(inference: NeuralInference, settings: RunSettings) -> torch.nn.Module:
    """Train (warm-starting from the network already in ``inference``) and return the network."""
    keys = _TRAIN_KEYS[settings.sbi_trainer]
    options = {k: v for k, v in settings.training.items() if k in keys}
    if settings.engine in ("TSNPE", "NPE"):
        # Their rounds draw from the (truncated) prior, so maximum likelihood is the right loss; sbi
        # asks to be told so explicitly after round 0.
        options["force_first_round_loss"] = True
    return inference.train(**options)


def build_posterior(inference: NeuralInference, settings: RunSettings, estimator: torch.nn.Module, x_o: np.ndarray):
    """Posterior with default x = x_o: direct sampling for NPE methods, MCMC (config 'mcmc') otherwise."""
    if settings.sbi_trainer == "NPE_C":
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
    if settings.sbi_trainer != "NPE_C":
        return float(settings.prior.contains(samples).mean())
    draws = posterior.sample((n,), reject_outside_prior=False, show_progress_bars=False).detach().cpu().numpy()
    return float(settings.prior.contains(draws).mean())


@contextmanager
def _quiet_unpickling() -> Iterator[None]:
    # sbi's __setstate__ gives an unpickled trainer a TensorBoard tracker writing to ./sbi-logs;
    # ours goes to the job's log instead.
    with mock.patch.object(NeuralInference, "_default_tracker", lambda self: LoggingTracker()):
        yield


def load(path: str | Path, device: str = "cpu") -> Any:
    """Reload a saved trainer, posterior or network (full pickles: weights_only=False)."""
    with _quiet_unpickling():
        return torch.load(path, map_location=device, weights_only=False)
