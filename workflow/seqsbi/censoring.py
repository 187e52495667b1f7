"""Censored features for likelihood networks: uniform dequantization of a censoring floor's point mass.

The galaxy model's AB magnitudes censor fluxes below their 1-sigma error to that error's magnitude (the floor), so
each band's likelihood has a point mass at the floor beside a continuous density brighter than it: a normalising
flow (SNLE's network) can only approximate the point mass by a spike, and fits it badly where most simulations are
censored (a faint galaxy's later rounds). With ``training.dequantize_censored: w`` a likelihood network trains on
censored values replaced by floor + w u, u ~ U(0, 1) independently per value, and its likelihood is evaluated at x_o
with each censored value at floor + w / 2. Because detected values lie below the floor, the dequantized density
on a censoring pattern with k censored bands is P(pattern, detected values | theta) / w^k there: the same
likelihood up to a constant in theta, so the posterior is unchanged - the standard uniform dequantization of
discrete data for density models (Uria, Murray & Larochelle 2013, "RNADE", NeurIPS; Theis, van den Oord & Bethge
2016, ICLR, section 3.1), here applied to one value per band.

Only the network's inputs change: simulations.npz keeps the simulated features and observations keep x_o.
With ``max_snr`` (an error floor |f| / max_snr) a bright galaxy's flux could be censored at its own, brighter
error; that takes a (max_snr - 1)-sigma downward fluctuation, negligible for the usual max_snr of 10-20, and such
values are left as they are (they lie below the floor).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from seqsbi.config import RunSettings

logger = logging.getLogger("seqsbi.censoring")

#: Key in a run's ``training`` block (seqsbi's, not passed to sbi): the width w of the dequantization interval, in
#: the features' units (AB mag for the galaxy model).
KEY = "dequantize_censored"
#: x_o values less than this (mag) brighter than their floor are detections the log warns about (see network_x_o).
NEAR_FLOOR = 0.01
#: A value within this of its floor counts as censored (float32 round trips move an AB magnitude near 30 by up to
#: 2e-6 mag).
TOLERANCE = 1e-5


def censoring_floor(settings: RunSettings) -> np.ndarray | None:
    """(k,) the value each feature takes when censored, from the simulator's ``censoring_floor`` hook (the galaxy
    model: AB magnitudes with noise), or None when it has none."""
    from seqsbi.simulators import BUILTIN_SIMULATORS

    # built-ins only: resolving a custom simulator would import (run) the user's module once more
    hook = getattr(BUILTIN_SIMULATORS.get(settings.simulator_name), "censoring_floor", None)
    return None if hook is None else hook(settings.simulator_settings)


def censored(x: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Boolean mask, shape of x (n, k) or (k,): values on (or above) their feature's floor (k,)."""
    return np.asarray(x, dtype=float) >= np.asarray(floor, dtype=float) - TOLERANCE


def dequantize(x: np.ndarray, floor: np.ndarray, width: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of x (n, k) with each censored value replaced by floor + width u, u ~ U(0, 1) from ``rng``."""
    out = np.array(x, dtype=float)
    mask = censored(out, floor)
    out[mask] = np.broadcast_to(floor, out.shape)[mask] + width * rng.random(int(mask.sum()))
    return out


def at_midpoint(x_o: np.ndarray, floor: np.ndarray, width: float) -> np.ndarray:
    """A copy of x_o (k,) with each censored value at floor + width / 2, where the likelihood network is evaluated."""
    out = np.array(x_o, dtype=float)
    mask = censored(out, floor)
    out[mask] = np.asarray(floor, dtype=float)[mask] + width / 2
    return out


def width(settings: RunSettings) -> float | None:
    """The run's dequantization width, or None when it does not dequantize."""
    return settings.training.get(KEY)


def training_x(settings: RunSettings, x: np.ndarray, seed: int) -> np.ndarray:
    """Round simulations x (n, k) as the run's network trains on them: dequantized (a generator seeded with ``seed``)
    when the run sets ``training.dequantize_censored`` and its features have a floor, else x itself (logged: without
    noise, no value is censored)."""
    w, floor = _width_and_floor(settings)
    return x if floor is None else dequantize(x, floor, w, np.random.default_rng(seed))


def network_x_o(settings: RunSettings, x_o: np.ndarray, observation: str = "x_o") -> np.ndarray:
    """x_o (k,) where the run's likelihood network is evaluated: censored values at the dequantization interval's
    midpoint when the run dequantizes (:func:`training_x`), else x_o itself. A value fainter than its floor, which
    the simulator never makes (an x_o given as magnitudes without errors), is taken as censored, with a warning;
    a value less than :data:`NEAR_FLOOR` brighter than it is a detection, with a warning (magnitudes rounded when
    typed read as S/N just above 1). ``observation`` names it in the warnings."""
    w, floor = _width_and_floor(settings)
    if floor is None:
        return x_o
    values = np.asarray(x_o, dtype=float)
    names = _feature_names(settings, len(values))
    fainter = values > floor + TOLERANCE
    if fainter.any():
        logger.warning("%s: %s fainter than the 1-sigma floor, which a simulation never is (fluxes below 1 sigma are "
                       "set to it): taken as censored", observation, _listed(values, floor, names, fainter))
    near = (values < floor - TOLERANCE) & (values > floor - NEAR_FLOOR)
    if near.any():
        logger.warning("%s: %s less than %g mag brighter than the 1-sigma floor: read as detections at S/N just "
                       "above 1; if they are upper limits (rounded magnitudes), give them at the floor or fainter",
                       observation, _listed(values, floor, names, near), NEAR_FLOOR)
    return at_midpoint(x_o, floor, w)


def as_simulated(settings: RunSettings, x_o: np.ndarray) -> np.ndarray:
    """x_o (k,) with values fainter than their floor at the floor, as a simulation would have them, when the run
    dequantizes (what :func:`network_x_o` takes them for); else x_o itself. For comparing x_o with simulations."""
    w, floor = _width_and_floor(settings, quiet=True)
    return x_o if floor is None else np.minimum(np.asarray(x_o, dtype=float), floor)


def _feature_names(settings: RunSettings, k: int) -> list[str]:
    filters, bands = settings.simulator_settings.get("filters"), settings.simulator_settings.get("bands")
    names = list(filters or []) if bands is None else [filters[j] for j in bands]
    return names if len(names) == k else [f"feature {j}" for j in range(k)]


def _listed(values: np.ndarray, floor: np.ndarray, names: list[str], mask: np.ndarray) -> str:
    return ", ".join(f"{names[j]} {values[j]:.4f} (floor {floor[j]:.4f})" for j in np.flatnonzero(mask))


def _width_and_floor(settings: RunSettings, quiet: bool = False) -> tuple[float | None, np.ndarray | None]:
    """(width, floor), floor None when the run does not dequantize or nothing is censored."""
    w = width(settings)
    if w is None:
        return None, None
    floor = censoring_floor(settings)
    if floor is None and not quiet:
        logger.info("run %r: training.%s set, but this observation's features have no noise, so none is censored: "
                    "nothing to spread", settings.name, KEY)
    return w, floor


def check_settings(key: str, engine: str, run: dict[str, Any]) -> str | None:
    """Why ``<key>.training.dequantize_censored`` cannot apply (None when it can or is unset), for a run or an
    amortized estimator's block ``run`` (``key``: ``runs.<name>`` or ``amortized.<name>``): only a likelihood
    network (SNLE) models the density of x, and only features with a censoring floor (the galaxy model's AB
    magnitudes) have a point mass to spread."""
    if run.get("training", {}).get(KEY) is None:
        return None
    where = f"{key}.training.{KEY}"
    if key.startswith("amortized."):
        return (f"{where} is set, but an amortized estimator is a posterior network (NPE), which takes x as an "
                f"input, where a point mass is no difficulty; only SNLE's likelihood network learns the density of x: "
                f"drop the key")
    if engine != "SNLE":
        return (f"{where} is set, but engine {engine} does not learn the density of the features (only SNLE's "
                f"likelihood network does; a posterior or ratio network takes x as an input, where a point mass is "
                f"no difficulty): drop the key or use engine SNLE")
    settings = run.get("simulator_settings", {})
    if run.get("simulator") != "galaxy" or settings.get("features", "ab_magnitude") != "ab_magnitude":
        return (f"{where} is set, but {key}'s features have no censoring floor (only the galaxy simulator's "
                f"galaxy.features.kind ab_magnitude censors faint fluxes): drop the key")
    return None
