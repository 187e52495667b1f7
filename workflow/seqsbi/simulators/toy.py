"""Toy simulators with known answers, for checks and tutorials (numpy only)."""

from __future__ import annotations

import numpy as np


def linear_gaussian(
    theta: np.ndarray, rng: np.random.Generator, shift: float = 1.0, noise_std: float = 0.1
) -> np.ndarray:
    """x = theta + shift + noise_std * N(0, 1), elementwise; theta (n, d) -> x (n, d).

    With a box prior wide enough, the posterior at x_o is N(x_o - shift, noise_std^2) per dimension
    (sbi's multi-round tutorial uses shift 1, noise 0.1, x_o = 0).
    """
    return theta + shift + noise_std * rng.standard_normal(theta.shape)


def two_moons(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """sbibm's two-moons task: theta (n, 2) -> x (n, 2), crescent-shaped bimodal posterior."""
    if theta.shape[1] != 2:
        raise ValueError(f"two_moons needs 2 parameters, got {theta.shape[1]}")
    n = theta.shape[0]
    angle = rng.uniform(-np.pi / 2, np.pi / 2, size=n)
    radius = rng.normal(0.1, 0.01, size=n)
    moon = np.stack([radius * np.cos(angle) + 0.25, radius * np.sin(angle)], axis=1)
    shift = np.stack(
        [-np.abs(theta[:, 0] + theta[:, 1]) / np.sqrt(2), (-theta[:, 0] + theta[:, 1]) / np.sqrt(2)], axis=1
    )
    return moon + shift


BUILTIN_SIMULATORS = {"linear_gaussian": linear_gaussian, "two_moons": two_moons}
