"""Parameter spaces: names, units, prior bounds and per-parameter distributions, numpy only (engines turn
them into torch priors).

Every prior has a box: its support. Inside it a parameter is uniform (the default), log-uniform, a
Gaussian truncated to the box, or held fixed (then it is not inferred: the space holds the other
parameters, and the simulator gets the fixed value inserted, see :func:`full_theta`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import erf, sqrt

import numpy as np

from seqsbi.errors import ConfigError

DISTRIBUTIONS = ("uniform", "log_uniform", "gaussian", "fixed")


@dataclass(frozen=True)
class ParameterSpace:
    """A prior over named parameters: a box (the support) and a distribution per parameter inside it.

    Attributes:
        names: inferred parameter names, length d.
        units: unit per parameter ("" for dimensionless), length d.
        low, high: bounds, shape (d,), in the parameters' own units.
        kinds: per parameter 'uniform', 'log_uniform' or 'gaussian' (truncated to [low, high]); empty = all uniform.
        mean, std: (d,) the Gaussian entries' mean and standard deviation (NaN elsewhere); None when none.
        fixed: (name, value, unit) of parameters held fixed, not inferred.
        all_names: every parameter, fixed ones included, in the simulator's order; empty = names.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    kinds: tuple[str, ...] = ()
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    fixed: tuple[tuple[str, float, str], ...] = field(default_factory=tuple)
    all_names: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def centre(self) -> np.ndarray:
        return (self.low + self.high) / 2

    @property
    def is_box(self) -> bool:
        """True when every inferred parameter is uniform on its range (a BoxUniform prior)."""
        return all(kind == "uniform" for kind in self.kinds)

    @property
    def fixed_values(self) -> dict[str, float]:
        return {name: value for name, value, _ in self.fixed}

    def labels(self) -> list[str]:
        """Axis labels: ``name [unit]`` or just ``name`` when dimensionless."""
        return [f"{n} [{u}]" if u else n for n, u in zip(self.names, self.units)]

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """Boolean mask of shape (n,) for rows of ``theta`` (n, d) inside the box."""
        theta = np.atleast_2d(theta)
        return np.all((theta >= self.low) & (theta <= self.high), axis=1)

    def describe(self) -> list[str]:
        """One line per parameter for the log: its distribution, range and unit (fixed ones too)."""
        lines = []
        kinds = self.kinds or ("uniform",) * self.dim
        for j, (name, unit, kind) in enumerate(zip(self.names, self.units, kinds)):
            unit = f" {unit}" if unit else ""
            if kind == "gaussian":
                lines.append(f"prior {name}: Gaussian mean {self.mean[j]:g} std {self.std[j]:g}{unit}, truncated to "
                             f"{self.low[j]:g} to {self.high[j]:g}{unit}")
            else:
                what = "log-uniform" if kind == "log_uniform" else "uniform"
                lines.append(f"prior {name}: {what} {self.low[j]:g} to {self.high[j]:g}{unit}")
        lines += [f"prior {name}: fixed at {value:g}{f' {unit}' if unit else ''} (not inferred)"
                  for name, value, unit in self.fixed]
        return lines

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n independent draws (n, d) from the prior (numpy; the same distribution engines sample in torch)."""
        return self.from_unit_cube(rng.uniform(size=(n, self.dim)))

    def from_unit_cube(self, u: np.ndarray) -> np.ndarray:
        """The prior's inverse CDF per parameter: points u (n, d) of the unit cube -> theta (n, d). Uniform u
        gives prior draws; a nested sampler's prior transform (seqsbi.reference)."""
        kinds = self.kinds or ("uniform",) * self.dim
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = self.low + u * (self.high - self.low)
        for j, kind in enumerate(kinds):
            if kind == "log_uniform":
                out[:, j] = np.exp(np.log(self.low[j]) + u[:, j] * np.log(self.high[j] / self.low[j]))
            elif kind == "gaussian":
                from scipy.special import ndtr, ndtri

                mu, sd = self.mean[j], self.std[j]
                a, b = ndtr((self.low[j] - mu) / sd), ndtr((self.high[j] - mu) / sd)
                out[:, j] = np.clip(mu + sd * ndtri(a + u[:, j] * (b - a)), self.low[j], self.high[j])
        return out

    @classmethod
    def from_config(cls, prior: dict, key: str = "prior") -> ParameterSpace:
        """Build from a validated ``prior`` config block; reject reversed or repeated entries, a fixed value
        outside its range, a log-uniform range that is not positive and a Gaussian without a positive std.

        Entries: ``{name, low, high, unit, distribution, mean, std, value}``; distribution uniform (default),
        log_uniform, gaussian (mean, std; truncated to [low, high]) or fixed (value in [low, high]).
        """
        params = prior["parameters"]
        names = [p["name"] for p in params]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{key}.parameters: names {repeated} appear more than once; names must be unique")
        for i, p in enumerate(params):
            where = f"{key}.parameters[{i}] ({p['name']})"
            if not (np.isfinite(p["low"]) and np.isfinite(p["high"]) and np.isfinite(p["high"] - p["low"])):
                raise ConfigError(
                    f"{where}: low={p['low']} and high={p['high']} must be finite numbers "
                    f"with a finite width (a uniform prior needs a bounded box)"
                )
            if not p["low"] < p["high"]:
                raise ConfigError(f"{where}: low={p['low']} must be below high={p['high']}")
            _check_distribution(p, where)
        free = [p for p in params if p.get("distribution", "uniform") != "fixed"]
        if not free:
            raise ConfigError(f"{key}.parameters: every parameter is fixed; leave at least one to infer")
        kinds = tuple(p.get("distribution", "uniform") for p in free)
        gaussian = any(kind == "gaussian" for kind in kinds)
        return cls(
            names=tuple(p["name"] for p in free),
            units=tuple(p.get("unit", "") for p in free),
            low=np.array([p["low"] for p in free], dtype=float),
            high=np.array([p["high"] for p in free], dtype=float),
            kinds=kinds,
            mean=np.array([p.get("mean", np.nan) for p in free], dtype=float) if gaussian else None,
            std=np.array([p.get("std", np.nan) for p in free], dtype=float) if gaussian else None,
            fixed=tuple((p["name"], float(p["value"]), p.get("unit", "")) for p in params
                        if p.get("distribution") == "fixed"),
            all_names=tuple(names),
        )


def _check_distribution(p: dict, where: str) -> None:
    kind = p.get("distribution", "uniform")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: distribution {kind!r} unknown; allowed: {', '.join(DISTRIBUTIONS)}")
    allowed = {"gaussian": {"mean", "std"}, "fixed": {"value"}}.get(kind, set())
    extra = sorted({"mean", "std", "value"} & set(p) - allowed)
    if extra:
        raise ConfigError(f"{where}: {extra} do not apply to distribution {kind!r}; remove them")
    if kind == "log_uniform" and not p["low"] > 0:
        raise ConfigError(f"{where}: a log_uniform prior needs low > 0 (got low={p['low']}); use uniform, or a "
                          f"positive range")
    if kind == "gaussian":
        if "mean" not in p or "std" not in p or not (np.isfinite(p["std"]) and p["std"] > 0):
            raise ConfigError(f"{where}: a gaussian prior needs mean and a positive std (got mean={p.get('mean')}, "
                              f"std={p.get('std')})")
        z_low, z_high = (p["low"] - p["mean"]) / p["std"], (p["high"] - p["mean"]) / p["std"]
        mass = 0.5 * (erf(z_high / sqrt(2)) - erf(z_low / sqrt(2)))
        if mass < 1e-6:
            raise ConfigError(f"{where}: Gaussian mean {p['mean']:g} std {p['std']:g} puts {mass:.2g} of its mass in "
                              f"[{p['low']:g}, {p['high']:g}]; move the mean inside the range or widen it")
    if kind == "fixed":
        if "value" not in p or not np.isfinite(p["value"]):
            raise ConfigError(f"{where}: a fixed parameter needs a finite value")
        if not p["low"] <= p["value"] <= p["high"]:
            raise ConfigError(f"{where}: fixed value {p['value']:g} lies outside the range [{p['low']:g}, "
                              f"{p['high']:g}] the simulator covers; give a value inside it")


def full_theta(theta: np.ndarray, space: ParameterSpace) -> np.ndarray:
    """theta (n, d) of the inferred parameters with the fixed ones inserted: (n, len(all_names)), in the
    simulator's order. theta unchanged when nothing is fixed."""
    if not space.fixed:
        return theta
    fixed = space.fixed_values
    full = np.empty((theta.shape[0], len(space.all_names)))
    free = iter(range(theta.shape[1]))
    for j, name in enumerate(space.all_names):
        full[:, j] = fixed[name] if name in fixed else theta[:, next(free)]
    return full
