"""Non-box priors as torch distributions sbi can use (imported only when a run has one; torch at import).

sbi 0.27 takes any ``torch.distributions.Distribution`` with ``sample``, ``log_prob`` and ``support``
(``process_prior``); seqsbi's bounded flows, MCMC transforms and rejection steps read the support,
which stays the prior's box, so everything that bounds a BoxUniform prior bounds these too.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

from seqsbi.priors import ParameterSpace


class IndependentPrior(Distribution):
    """Independent priors per parameter on the box [low, high]: uniform, log-uniform (density 1 / (theta
    ln(high/low))) or a Gaussian truncated to the box (density phi((theta - mean)/std) / (std (Phi(b) - Phi(a)))).
    Event shape (d,), batch shape (); float32 on ``device``; log_prob is -inf outside the box.

    Sampling is by inverse CDF from one uniform draw per parameter (torch's random state).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, low, high, kinds: tuple[str, ...], mean=None, std=None, device: str = "cpu"):
        self.low = torch.as_tensor(low, dtype=torch.float32, device=device)
        self.high = torch.as_tensor(high, dtype=torch.float32, device=device)
        self.kinds = tuple(kinds)
        d = self.low.numel()
        self._mean = torch.as_tensor(mean if mean is not None else [math.nan] * d, dtype=torch.float64, device=device)
        self._std = torch.as_tensor(std if std is not None else [math.nan] * d, dtype=torch.float64, device=device)
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([d]), validate_args=False)

    @classmethod
    def from_space(cls, space: ParameterSpace, device: str = "cpu") -> IndependentPrior:
        return cls(space.low, space.high, space.kinds, space.mean, space.std, device)

    @property
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def _normal_cdf(self, z):
        return 0.5 * (1 + torch.erf(z / math.sqrt(2)))

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.event_shape
        low, high = self.low.double(), self.high.double()
        u = torch.rand(shape, dtype=torch.float64, device=self.low.device)
        out = low + u * (high - low)
        for j, kind in enumerate(self.kinds):
            if kind == "log_uniform":
                out[..., j] = torch.exp(torch.log(low[j]) + u[..., j] * torch.log(high[j] / low[j]))
            elif kind == "gaussian":
                a = self._normal_cdf((low[j] - self._mean[j]) / self._std[j])
                b = self._normal_cdf((high[j] - self._mean[j]) / self._std[j])
                out[..., j] = self._mean[j] + self._std[j] * torch.special.ndtri(a + u[..., j] * (b - a))
        return torch.minimum(torch.maximum(out, low), high).to(torch.float32)

    def log_prob_terms(self, x):
        """Per-parameter log densities (..., d) in float64, ignoring the box."""
        low, high = self.low.double(), self.high.double()
        terms = torch.empty_like(x)
        for j, kind in enumerate(self.kinds):
            if kind == "log_uniform":
                terms[..., j] = -torch.log(x[..., j].clamp_min(1e-300)) - torch.log(torch.log(high[j] / low[j]))
            elif kind == "gaussian":
                z = (x[..., j] - self._mean[j]) / self._std[j]
                mass = self._normal_cdf((high[j] - self._mean[j]) / self._std[j]) - self._normal_cdf(
                    (low[j] - self._mean[j]) / self._std[j])
                terms[..., j] = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(self._std[j] * mass)
            else:
                terms[..., j] = -torch.log(high[j] - low[j])
        return terms

    def log_prob(self, value):
        value = torch.as_tensor(value, device=self.low.device)
        x = value.double()
        low, high = self.low.double(), self.high.double()
        terms = self.log_prob_terms(x)
        inside = ((x >= low) & (x <= high)).all(dim=-1)
        total = terms.sum(dim=-1)
        return torch.where(inside, total, torch.full_like(total, -math.inf)).to(value.dtype if value.is_floating_point()
                                                                                else torch.float32)

    def _moments(self):
        """(mean, variance), each (d,), by quadrature on 4001 points per parameter (deterministic: no draws
        from torch's random state)."""
        t = torch.linspace(0, 1, 4001, dtype=torch.float64, device=self.low.device)[:, None]
        grid = self.low.double() + t * (self.high.double() - self.low.double())
        density = torch.stack([self._log_density_1d(grid[:, j], j) for j in range(grid.shape[1])], dim=1).exp()
        weights = density / density.sum(0)
        mean = (weights * grid).sum(0)
        return mean.float(), (weights * (grid - mean) ** 2).sum(0).float()

    def _log_density_1d(self, x, j):
        return self.log_prob_terms(x[:, None].expand(-1, self.low.numel()))[:, j]

    @property
    def mean(self):
        return self._moments()[0]

    @property
    def variance(self):
        return self._moments()[1]
