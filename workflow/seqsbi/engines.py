"""The sbi boundary: priors, trainers, training and posteriors for SNPE (NPE_C), SNLE (NLE_A), SNRE (NRE_B).

Config names are mapped to sbi 0.27 class names in :mod:`seqsbi.config`; here they are already
canonical. numpy arrays come in, torch stays inside.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
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


def new_inference(settings: RunSettings, prior: BoxUniform) -> NeuralInference:
    """A fresh sbi trainer for ``settings.engine`` with the configured network."""
    trainer = getattr(sbi_inference, settings.engine)
    network = "classifier" if settings.engine == "NRE_B" else "density_estimator"
    return trainer(
        prior=prior,
        device=settings.device,
        tracker=LoggingTracker(),
        show_progress_bars=True,
        **{network: settings.density_estimator},
    )


def append_round(
    inference: NeuralInference, settings: RunSettings, theta: np.ndarray, x: np.ndarray, proposal: Any, round_index: int
) -> None:
    """Add one round's simulations; SNPE records the proposal they came from (None = prior)."""
    theta_t = torch.as_tensor(theta, dtype=torch.float32)
    x_t = torch.as_tensor(x, dtype=torch.float32)
    if settings.engine == "NPE_C":
        inference.append_simulations(theta_t, x_t, proposal=proposal)
    else:
        inference.append_simulations(theta_t, x_t, from_round=round_index)


def train(inference: NeuralInference, settings: RunSettings) -> torch.nn.Module:
    """Train (warm-starting from the network already in ``inference``) and return the network."""
    keys = _TRAIN_KEYS[settings.engine]
    return inference.train(**{k: v for k, v in settings.training.items() if k in keys})


def build_posterior(inference: NeuralInference, settings: RunSettings, estimator: torch.nn.Module, x_o: np.ndarray):
    """Posterior with default x = x_o: direct sampling for SNPE, MCMC (config 'mcmc') otherwise."""
    if settings.engine == "NPE_C":
        posterior = inference.build_posterior(estimator)
    else:
        from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters

        posterior = inference.build_posterior(
            estimator, sample_with="mcmc", posterior_parameters=MCMCPosteriorParameters(**settings.mcmc)
        )
    return posterior.set_default_x(torch.as_tensor(x_o, dtype=torch.float32)[None, :])


def sample(posterior, n: int) -> np.ndarray:
    """n posterior samples at the posterior's default x, shape (n, d)."""
    return posterior.sample((n,), show_progress_bars=False).detach().cpu().numpy().astype(float)


def fraction_inside_prior(posterior, settings: RunSettings, n: int = 2000) -> float | None:
    """Share of the SNPE network's mass inside the prior box (None for MCMC engines, which stay inside).

    Multi-round SNPE can leak mass outside the prior; rejection sampling then slows down by 1/fraction.
    """
    if settings.engine != "NPE_C":
        return None
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
