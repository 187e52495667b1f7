"""Can this posterior be trusted? Posterior predictive checks, round-to-round convergence, C2ST against a
reference posterior, and training curves, per (run, observation).

Arrays in, tables (text) and numbers out; the figures live in :mod:`seqsbi.plots`. Only
:func:`c2st` imports torch and sbi (its classifier two-sample test), so the other checks start fast.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqsbi import censoring
from seqsbi.errors import ArtifactError

logger = logging.getLogger("seqsbi.diagnostics")

#: runs.<run>.diagnostics defaults (config/README.md); no schema defaults, so rounds on disk stay up to date.
DEFAULTS = {
    "predictive_samples": 500,  # posterior draws simulated for the predictive check
    "c2st_samples": 2000,  # samples per side in each C2ST (subsampled, seeded)
    "moved_c2st": 0.55,  # C2ST between the last two rounds above this: the last round still moved
}
#: Quantiles drawn as the predictive bands: 95% and 68% central intervals and the median.
BAND_QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)


def settings_of(run: dict) -> dict[str, Any]:
    """runs.<run>.diagnostics with :data:`DEFAULTS` filled in."""
    return {**DEFAULTS, **(run.get("diagnostics") or {})}


def subsample(samples: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` rows of ``samples`` (N, d), drawn without replacement (all of them, shuffled, if N <= n)."""
    return samples[rng.permutation(len(samples))[:n]]


def c2st(first: np.ndarray, second: np.ndarray, n: int = 2000, seed: int = 0) -> float:
    """Classifier two-sample test accuracy between samples (N1, d) and (N2, d): 0.5 when a classifier cannot
    tell them apart, 1 when it always can.

    sbi's ``sbi.utils.metrics.c2st`` (random forest, 5-fold cross-validation, z-scored by the first set;
    Lopez-Paz & Oquab 2017), on ``n`` seeded draws without replacement from each side (equal sizes, so
    chance is 0.5). About 8 s for 2000 + 2000 six-dimensional samples on one core.
    """
    import torch
    from sbi.utils.metrics import c2st as sbi_c2st

    rng = np.random.default_rng(seed)
    size = min(n, len(first), len(second))
    a, b = subsample(first, size, rng), subsample(second, size, rng)
    return float(sbi_c2st(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
                          seed=seed))


# ----------------------------------------------------------------------------------------- predictive check


@dataclass
class ObservationErrors:
    """What is known about x_o's (k,) errors: 1-sigma errors (nan where unknown) and which features are
    censored (at the 1-sigma floor: the flux there is an upper limit)."""

    sigma: np.ndarray
    censored: np.ndarray
    note: str = ""


def observation_errors(simulator_name: str, simulator_settings: dict, x_o: np.ndarray) -> ObservationErrors:
    """x_o's errors and censored features where the simulator's noise model defines them, else none.

    Galaxy runs with noise: the observation's flux noise (:func:`seqsbi.simulators.galaxy.features.
    noise_for_observation`: its own errors ``sigma_njy`` when it has them, else the configured depth; only
    the bands it has, ``bands``) evaluated at the observed flux f. ab_magnitude features: sigma_m =
    (2.5 / ln 10) sigma(f) / f, and a feature at (or within censoring.TOLERANCE of) the band's 1-sigma floor is
    censored (the features clip fluxes below 1 sigma to it: an upper limit). flux features: sigma(f)
    divided by the flux scale. asinh magnitudes: sigma_m = (2.5 / ln 10) sigma / sqrt(f^2 + 4 b^2) with the
    band's softening b (Lupton et al. 1999, eq. 3), f found by inverting the magnitude.
    """
    k = len(x_o)
    none = ObservationErrors(np.full(k, np.nan), np.zeros(k, bool))
    noise = simulator_settings.get("noise") if simulator_name == "galaxy" else None
    if noise is None:
        return none
    from seqsbi.simulators.galaxy.features import noise_for_observation
    from seqsbi.units import AB_ZERO_POINT_NJY, POGSON, ab_to_njy

    kind = simulator_settings.get("features", "ab_magnitude")
    n_filters = len(simulator_settings.get("filters") or []) or k
    own = simulator_settings.get("sigma_njy")
    errors = None if own is None else np.array([np.nan if s is None else s for s in own], dtype=float)
    model = noise_for_observation(noise, n_filters, errors).select(simulator_settings.get("bands"))
    pogson_ln = POGSON / math.log(10)
    if kind == "ab_magnitude":
        flux = ab_to_njy(x_o)
        sigma_f = model.sigma(flux[None, :])[0]
        censored = censoring.censored(x_o, njy_to_ab_floor(model.sigma_njy))
        return ObservationErrors(pogson_ln * sigma_f / flux, censored,
                                 "AB magnitudes: fluxes below 1 sigma are set to the 1-sigma floor (upper limits)")
    if kind in ("flux", "flux_njy"):
        scale = simulator_settings.get("flux_scale_njy")
        scale = np.ones(n_filters) if scale is None else np.broadcast_to(np.asarray(scale, float), (n_filters,))
        bands = simulator_settings.get("bands")
        scale = scale if bands is None else scale[np.asarray(bands, dtype=int)]
        flux = np.asarray(x_o, dtype=float) * scale
        return ObservationErrors(model.sigma(flux[None, :])[0] / scale, np.zeros(k, bool))
    if kind == "asinh_magnitude":
        b = model.softening_njy / AB_ZERO_POINT_NJY
        flux = AB_ZERO_POINT_NJY * 2 * b * np.sinh(-(x_o / pogson_ln) - np.log(b))
        sigma_f = model.sigma(flux[None, :])[0]
        return ObservationErrors(pogson_ln * sigma_f / np.sqrt(flux ** 2 + 4 * model.softening_njy ** 2),
                                 np.zeros(k, bool))
    return none


def njy_to_ab_floor(sigma_njy: np.ndarray) -> np.ndarray:
    from seqsbi.units import njy_to_ab

    return njy_to_ab(sigma_njy)


@dataclass
class PredictiveCheck:
    """A posterior predictive check of one observation.

    Attributes:
        x_o: (k,) observed features. predictive: (n, k) simulations from n posterior draws.
        quantiles: (5, k) predictive quantiles at :data:`BAND_QUANTILES`.
        z: (k,) (x_o - predictive mean) / predictive std. quantile_of_observed: (k,) share of predictive
            values below x_o (ties count half), 0.5 = central, near 0 or 1 = x_o in a tail.
        discrepancy: chi^2 discrepancy T(x_o) = sum_j z_j^2. p_value: share of predictive simulations x_rep
            with T(x_rep) >= T(x_o) (the posterior predictive p-value, Gelman, Meng & Stern 1996; small = x_o
            unusual under the fit).
    """

    x_o: np.ndarray
    predictive: np.ndarray
    quantiles: np.ndarray
    z: np.ndarray
    quantile_of_observed: np.ndarray
    discrepancy: float
    p_value: float
    errors: ObservationErrors
    feature_names: list[str] = field(default_factory=list)
    invalid: int = 0


def chi2_discrepancy(predictive: np.ndarray, x_o: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chi^2 discrepancy of observations and of their own predictive simulations, many observations at once.

    For observation i with predictive simulations x_rep (m, k) (all finite), mean mu_i and std s_i per
    feature over its m simulations (a std of 0 becomes the smallest float: any deviation is then huge),
    T(x) = sum_j ((x_j - mu_ij) / s_ij)^2, a statistic that does not depend on theta, so the posterior
    predictive p-value is the share of simulations with T(x_rep) >= T(x_o) (Gelman, Meng & Stern 1996).

    Args:
        predictive: (n, m, k) simulations per observation. x_o: (n, k) observed features.

    Returns:
        z (n, k) = (x_o - mu) / s; T(x_o) (n,); T(x_rep) (n, m).
    """
    mean, std = predictive.mean(axis=-2), predictive.std(axis=-2)
    std = np.where(std > 0, std, np.finfo(float).tiny)
    z = (x_o - mean) / std
    replicated = (((predictive - mean[:, None, :]) / std[:, None, :]) ** 2).sum(axis=-1)
    return z, np.sum(z ** 2, axis=-1), replicated


def predictive_check(simulate, samples: np.ndarray, x_o: np.ndarray, n: int, seed: int,
                     errors: ObservationErrors | None = None, feature_names: Sequence[str] | None = None
                     ) -> PredictiveCheck:
    """Simulate from ``n`` of the posterior ``samples`` (N, d) and compare with ``x_o`` (k,).

    ``simulate(theta (n, d), rng) -> x (n, k)``: the run's simulator with its noise. The discrepancy
    T(x) = sum_j ((x_j - mu_j) / s_j)^2 uses the predictive mean mu and std s per feature (a chi^2
    statistic that does not depend on theta), so its p-value is the share of the n predictive
    simulations at least as discrepant as x_o. Non-finite simulations are left out (counted in ``invalid``).

    Raises:
        ArtifactError: fewer than 2 finite predictive simulations (nothing to compare with).
    """
    rng = np.random.default_rng(seed)
    theta = subsample(samples, n, rng)
    x = np.asarray(simulate(theta, rng), dtype=float)
    finite = np.isfinite(x).all(axis=1)
    x = x[finite]
    if len(x) < 2:
        raise ArtifactError(f"only {len(x)} of {len(theta)} predictive simulations are finite; the simulator "
                            f"returns NaN or inf where the posterior lies: check it there")
    x_o = np.asarray(x_o, dtype=float)
    z, observed, replicated = chi2_discrepancy(x[None], x_o[None])
    z, discrepancy = z[0], float(observed[0])
    p_value = float(np.mean(replicated[0] >= discrepancy))
    below, tied = (x < x_o).mean(axis=0), (x == x_o).mean(axis=0)
    k = len(x_o)
    return PredictiveCheck(
        x_o=x_o, predictive=x, quantiles=np.quantile(x, BAND_QUANTILES, axis=0), z=z,
        quantile_of_observed=below + 0.5 * tied, discrepancy=discrepancy, p_value=p_value,
        errors=errors or ObservationErrors(np.full(k, np.nan), np.zeros(k, bool)),
        feature_names=list(feature_names) if feature_names else [f"x_{j}" for j in range(k)],
        invalid=int((~finite).sum()),
    )


def predictive_table(check: PredictiveCheck, unit: str = "") -> str:
    """TSV, one row per feature (observed, its error, censored, predictive quantiles, z, quantile of x_o),
    then ``#`` lines with the chi^2 discrepancy and its p-value."""
    header = ["feature", "unit", "observed", "observed_error", "censored", "predictive_q2.5", "predictive_q16",
              "predictive_median", "predictive_q84", "predictive_q97.5", "z", "predictive_quantile_of_observed"]
    lines = ["\t".join(header)]
    for j, name in enumerate(check.feature_names):
        error = check.errors.sigma[j]
        row = [name, unit, f"{check.x_o[j]:.6g}", "" if not np.isfinite(error) else f"{error:.4g}",
               str(bool(check.errors.censored[j])).lower()]
        row += [f"{v:.6g}" for v in check.quantiles[:, j]]
        row += [f"{check.z[j]:.3g}", f"{check.quantile_of_observed[j]:.3f}"]
        lines.append("\t".join(row))
    n = len(check.predictive)
    lines.append(f"# posterior predictive p-value {check.p_value:.3f} of the chi^2 discrepancy T = sum_j z_j^2 = "
                 f"{check.discrepancy:.3g} over {len(check.x_o)} features ({n} predictive simulations; Gelman, Meng "
                 f"& Stern 1996): the share of simulations at least as discrepant as x_o; below 0.05 the fit does "
                 f"not reproduce x_o")
    if check.invalid:
        lines.append(f"# {check.invalid} predictive simulation(s) were not finite and are left out")
    if check.errors.note and check.errors.censored.any():
        lines.append(f"# censored: {check.errors.note}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ convergence


def convergence_table(rounds: Sequence[np.ndarray], names: Sequence[str], n: int = 2000, seed: int = 0,
                      reference: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per round: per parameter mean and 68% width (q84 - q16), C2ST against the previous round
    (none for round 0) and, given ``reference`` samples (M, d), C2ST against them. Samples: (N, d) each."""
    rows = []
    for k, samples in enumerate(rounds):
        row: dict[str, Any] = {"round": k, "samples": len(samples)}
        low, high = np.quantile(samples, [0.16, 0.84], axis=0)
        for j, name in enumerate(names):
            row[f"{name}_mean"] = float(samples[:, j].mean())
            row[f"{name}_width68"] = float(high[j] - low[j])
        row["c2st_previous_round"] = c2st(rounds[k - 1], samples, n, seed + k) if k else float("nan")
        if reference is not None:
            row["c2st_reference"] = c2st(reference, samples, n, seed + 1000 + k)
        rows.append(row)
    return rows


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """Comma-separated text with a header from the first row's keys; floats to 6 significant digits, nan empty."""
    header = list(rows[0])

    def text(value):
        if isinstance(value, float):
            return "" if not np.isfinite(value) else f"{value:.6g}"
        return str(value)

    return "\n".join([",".join(header)] + [",".join(text(row[key]) for key in header) for row in rows]) + "\n"


def last_round_moved(rows: list[dict[str, Any]], threshold: float) -> str | None:
    """A warning when the last round's C2ST against the one before exceeds ``threshold``, else None."""
    if len(rows) < 2 or not rows[-1]["c2st_previous_round"] > threshold:
        return None
    last = rows[-1]
    return (f"the last round (round {last['round']}) still moved: C2ST {last['c2st_previous_round']:.3f} against "
            f"round {last['round'] - 1} exceeds diagnostics.moved_c2st = {threshold:g}; the posterior has not "
            f"settled: consider more rounds or simulations per round")


def check_reference(reference: dict[str, np.ndarray], names: Sequence[str], path: str) -> np.ndarray:
    """The reference run's samples (M, d) when its parameter names match ``names`` (order too).

    Raises:
        ArtifactError: other parameters, or another order (a reference of another model)."""
    ref_names = [str(v) for v in reference.get("parameter_names", [])]
    if ref_names != list(names):
        raise ArtifactError(f"reference samples {path!r} have parameters {ref_names}, this run {list(names)}: name "
                            f"a reference run with the same prior parameters in the same order (runs.<run>.reference)")
    return reference["samples"]


# ---------------------------------------------------------------------------------------------- training logs


def read_training_log(path: str) -> dict[str, np.ndarray]:
    """A round's training_log.tsv as arrays epoch, training_loss, validation_loss (one entry per epoch)."""
    data = np.genfromtxt(path, delimiter="\t", names=True, ndmin=1)
    return {name: np.atleast_1d(data[name]).astype(float) for name in ("epoch", "training_loss", "validation_loss")}


def training_verdict(validation_loss: np.ndarray, max_num_epochs: int) -> dict[str, Any]:
    """Did a round's training stop at the cap with the validation loss still falling?

    sbi trains epochs 0..max_num_epochs and stops early once the validation loss has not improved for
    stop_after_epochs epochs. ``at_max_epochs``: it ran >= max_num_epochs epochs (the cap stopped it).
    ``still_falling``: the lowest validation loss lies in the last max(3, 10%) epochs, i.e. it was still
    improving when training stopped. Both true: more epochs would likely have helped (a warning).
    """
    n = len(validation_loss)
    window = max(3, n // 10)
    best = int(np.argmin(validation_loss)) if n else -1
    at_cap = n >= max_num_epochs
    falling = n > window and best >= n - window
    return {"epochs": n, "best_epoch": best + 1,
            "best_validation_loss": float(validation_loss[best]) if n else math.nan,
            "final_validation_loss": float(validation_loss[-1]) if n else math.nan, "at_max_epochs": at_cap,
            "still_falling": bool(falling), "warning": bool(at_cap and falling)}


def training_table(verdicts: Sequence[dict[str, Any]], max_num_epochs: int) -> str:
    """TSV, one row per round: epochs, best epoch and losses, and the warning flags."""
    keys = ["epochs", "best_epoch", "best_validation_loss", "final_validation_loss", "at_max_epochs",
            "still_falling", "warning"]
    lines = ["\t".join(["round"] + keys)]
    for k, verdict in enumerate(verdicts):
        values = [f"{verdict[key]:.6g}" if isinstance(verdict[key], float) else str(verdict[key]).lower()
                  for key in keys]
        lines.append("\t".join([str(k)] + values))
    flagged = [k for k, v in enumerate(verdicts) if v["warning"]]
    if flagged:
        lines.append(f"# warning: round(s) {', '.join(map(str, flagged))} stopped at max_num_epochs = {max_num_epochs} "
                     f"with the validation loss still falling: raise training.max_num_epochs")
    return "\n".join(lines) + "\n"
