"""Parameter spaces: names, units and prior bounds, numpy only (engines turn them into torch priors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqsbi.errors import ConfigError


@dataclass(frozen=True)
class ParameterSpace:
    """A box-uniform prior over named parameters.

    Attributes:
        names: parameter names, length d.
        units: unit per parameter ("" for dimensionless), length d.
        low, high: bounds, shape (d,), in the parameters' own units.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def centre(self) -> np.ndarray:
        return (self.low + self.high) / 2

    def labels(self) -> list[str]:
        """Axis labels: ``name [unit]`` or just ``name`` when dimensionless."""
        return [f"{n} [{u}]" if u else n for n, u in zip(self.names, self.units)]

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """Boolean mask of shape (n,) for rows of ``theta`` (n, d) inside the box."""
        theta = np.atleast_2d(theta)
        return np.all((theta >= self.low) & (theta <= self.high), axis=1)

    @classmethod
    def from_config(cls, prior: dict, key: str = "prior") -> ParameterSpace:
        """Build from a validated ``prior`` config block; reject reversed or repeated entries."""
        params = prior["parameters"]
        names = [p["name"] for p in params]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{key}.parameters: names {repeated} appear more than once; names must be unique")
        for i, p in enumerate(params):
            if not (np.isfinite(p["low"]) and np.isfinite(p["high"]) and np.isfinite(p["high"] - p["low"])):
                raise ConfigError(
                    f"{key}.parameters[{i}] ({p['name']}): low={p['low']} and high={p['high']} must be finite numbers "
                    f"with a finite width (a uniform prior needs a bounded box)"
                )
            if not p["low"] < p["high"]:
                raise ConfigError(
                    f"{key}.parameters[{i}] ({p['name']}): low={p['low']} must be below high={p['high']}"
                )
        return cls(
            names=tuple(names),
            units=tuple(p.get("unit", "") for p in params),
            low=np.array([p["low"] for p in params], dtype=float),
            high=np.array([p["high"] for p in params], dtype=float),
        )
