"""The probit map of a prior box, for flows bounded to the prior (torch at import; imported only to build one).

sbi bounds a flow to a box prior with a logit map (``z_score_theta="transform_to_unconstrained"``): the flow
models logit((theta - low) / (high - low)), where the prior itself is a logistic distribution. A flow whose base is
a standard normal approximates that by something close to a Gaussian, which maps back to a U-shaped density in the
box; for a parameter the data hardly constrain (posterior close to the prior) the central 68% interval then spans
about 0.72 of the range instead of 0.68, so it over-covers. The probit map z = Phi^-1((theta - low) / (high - low))
(Phi: the standard normal CDF) sends the uniform prior to the flow's own base distribution, so a posterior equal to
the prior is the identity flow. Measured in benchmarks/README.md ("The probit map").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import constraints
from torch.distributions.transforms import IndependentTransform, Transform


class ProbitBoxTransform(Transform):
    """theta in [low, high] (per parameter) -> z = Phi^-1((theta - low) / (high - low)), elementwise; its inverse
    z -> low + (high - low) Phi(z), clipped to [low, high) (Phi rounds to 1 for large z), stays in the box for any
    real z.

    The forward map clips (theta - low) / (high - low) to [eps, 1 - eps] (eps: the dtype's machine epsilon) so a
    value on a bound maps to a finite z (|z| <= 5.2 in float32). log |d z / d theta| = -log(high - low) + z^2 / 2
    + log(2 pi) / 2 (the inverse of the normal density).
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__(cache_size=0)
        self.low, self.span = low, high - low
        self.below_high = torch.nextafter(high, low)  # the largest value inside [low, high)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ProbitBoxTransform) and bool(torch.equal(self.low, other.low)) and bool(
            torch.equal(self.span, other.span))

    def _call(self, theta: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(theta.dtype).eps
        return torch.special.ndtri(((theta - self.low) / self.span).clamp(eps, 1 - eps))

    def _inverse(self, z: torch.Tensor) -> torch.Tensor:
        # Phi(z) rounds to 1 for z > ~5.4 in float32: keep theta below high, where the prior's density is > 0.
        return torch.minimum(torch.maximum(self.low + self.span * torch.special.ndtr(z), self.low), self.below_high)

    def log_abs_det_jacobian(self, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -torch.log(self.span) + 0.5 * z**2 + 0.5 * math.log(2 * math.pi)


def probit_bounded(builder: Callable, prior: Any) -> Callable:
    """A density-estimator builder like sbi's zuko ``builder`` built with ``z_score_theta=
    "transform_to_unconstrained"`` (its first transform the logit map of ``prior``'s box), with that first
    transform replaced by :class:`ProbitBoxTransform` of the same box. ``prior``: a distribution whose
    ``support`` is an independent interval (BoxUniform, seqsbi.torch_priors.IndependentPrior)."""
    import zuko
    from sbi.utils.sbiutils import biject_transform_zuko

    box = prior.support.base_constraint if hasattr(prior.support, "base_constraint") else prior.support

    def build(batch_theta: torch.Tensor, batch_x: torch.Tensor) -> Any:
        flow = builder(batch_theta, batch_x)
        if not isinstance(flow.net.transform.transforms[0], zuko.flows.UnconditionalTransform):
            raise TypeError(f"sbi's bounded flow no longer starts with the map of the box: "
                            f"{flow.net.transform.transforms[0]!r}")
        low = torch.as_tensor(box.lower_bound, dtype=batch_theta.dtype, device=batch_theta.device)
        high = torch.as_tensor(box.upper_bound, dtype=batch_theta.dtype, device=batch_theta.device)
        flow.net.transform.transforms[0] = biject_transform_zuko(
            IndependentTransform(ProbitBoxTransform(low, high), reinterpreted_batch_ndims=1))
        return flow

    return build
