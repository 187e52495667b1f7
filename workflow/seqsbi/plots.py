"""Figures and tables from arrays (numpy + matplotlib; no torch, so plot jobs start fast)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqsbi import artifacts

QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)


def posterior_summary(samples: np.ndarray, names: Sequence[str], units: Sequence[str],
                      theta_true: np.ndarray | None = None, coverage: dict | None = None) -> str:
    """TSV table, one row per parameter: mean, std, quantiles of ``samples`` (N, d), and the truth if known.

    ``coverage``: the final round's ``observation_coverage`` (round.json); when x_o lies outside that
    round's simulations, ``#`` lines after the table say where and how far (the posterior is extrapolated).
    """
    header = ["parameter", "unit", "mean", "std"] + [f"q{100 * q:g}" for q in QUANTILES] + ["true_value"]
    lines = ["\t".join(header)]
    quantiles = np.quantile(samples, QUANTILES, axis=0)
    for j, (name, unit) in enumerate(zip(names, units)):
        truth = "" if theta_true is None else f"{theta_true[j]:.6g}"
        row = [name, unit, f"{samples[:, j].mean():.6g}", f"{samples[:, j].std():.6g}"]
        row += [f"{v:.6g}" for v in quantiles[:, j]] + [truth]
        lines.append("\t".join(row))
    if coverage and coverage.get("outside"):
        lines.append(f"# warning: x_o lies outside the final round's {coverage['simulations']} simulations; this "
                     f"posterior is the network's extrapolation and may be confidently wrong")
        for f in coverage["features_outside"]:
            side, edge = ("below their min", f["min"]) if f["x_o"] < f["min"] else ("above their max", f["max"])
            lines.append(f"# x_o[{f['index']}] = {f['x_o']:.6g} is {f['beyond']:.3g} {side} {edge:.6g} "
                         f"({f['beyond_std']:.3g} std)")
        lines.append(f"# jointly: Mahalanobis distance {coverage['mahalanobis']:.3g} from their mean; the farthest "
                     f"simulation {coverage['mahalanobis_max_simulated']:.3g}")
    return "\n".join(lines) + "\n"


def zoom_limits(round_samples: Sequence[np.ndarray], prior_limits: np.ndarray,
                theta_true: np.ndarray | None = None, pad: float = 0.15) -> np.ndarray:
    """Axis limits (d, 2) spanning all rounds' central 99.8% (and the truth), padded, inside the prior."""
    stacked = np.concatenate(list(round_samples), axis=0)
    low, high = np.quantile(stacked, [0.001, 0.999], axis=0)
    if theta_true is not None:
        low, high = np.minimum(low, theta_true), np.maximum(high, theta_true)
    span = np.maximum(high - low, 1e-12)
    zoomed = np.stack([low - pad * span, high + pad * span], axis=1)
    low, high = np.maximum(zoomed[:, 0], prior_limits[:, 0]), np.minimum(zoomed[:, 1], prior_limits[:, 1])
    return np.stack([low, high], axis=1)


def pairplot(
    round_samples: Sequence[np.ndarray],
    labels: Sequence[str],
    limits: np.ndarray,
    path: str | Path,
    theta_true: np.ndarray | None = None,
    title: str = "",
    max_points: int = 1500,
    reference: np.ndarray | None = None,
    reference_label: str = "reference",
) -> None:
    """Corner plot of every round's samples (each (N, d)), later rounds on top in darker colours.

    Diagonal: per-round marginal histograms; lower triangle: per-round scatter. ``limits`` (d, 2) are
    the prior bounds; axes zoom to where the samples are, never beyond the prior. ``theta_true`` (d,)
    is marked when known. ``reference`` (M, d): a reference posterior's samples (an exact-likelihood
    run), drawn in black on top: dashed histograms and its 68% and 95% highest-density contours.
    Written atomically as PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = len(labels)
    limits = zoom_limits(list(round_samples) + ([] if reference is None else [reference]), limits, theta_true)
    n_rounds = len(round_samples)
    colours = plt.cm.viridis(np.linspace(0.85, 0.05, n_rounds)) if n_rounds > 1 else [plt.cm.viridis(0.3)]
    fig, axes = plt.subplots(d, d, figsize=(2.4 * d + 1, 2.4 * d + 0.6), squeeze=False)
    rng = np.random.default_rng(0)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            for k, (samples, colour) in enumerate(zip(round_samples, colours)):
                label = f"round {k}" + (" (final)" if k == n_rounds - 1 else "")
                if i == j:
                    bins = np.linspace(limits[i, 0], limits[i, 1], 60)
                    ax.hist(samples[:, i], bins=bins, density=True, histtype="step", color=colour, lw=1.4, label=label)
                else:
                    shown = samples[rng.permutation(len(samples))[:max_points]]
                    ax.scatter(shown[:, j], shown[:, i], s=2, color=colour, alpha=0.35, rasterized=True)
            if reference is not None:
                if i == j:
                    bins = np.linspace(limits[i, 0], limits[i, 1], 60)
                    ax.hist(reference[:, i], bins=bins, density=True, histtype="step", color="black", lw=1.2,
                            ls="--", label=reference_label)
                else:
                    _mass_contours(ax, reference[:, j], reference[:, i], limits[j], limits[i])
            if theta_true is not None:
                if i == j:
                    ax.axvline(theta_true[i], color="crimson", lw=1.2, ls="--", label="truth")
                else:
                    ax.plot(theta_true[j], theta_true[i], marker="*", color="crimson", ms=12, mec="white")
            ax.set_xlim(limits[j])
            if i != j:
                ax.set_ylim(limits[i])
            else:
                ax.set_yticks([])
            if i == d - 1:
                ax.set_xlabel(labels[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
            elif j > 0:
                ax.set_yticklabels([])
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", frameon=False)
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110)
    plt.close(fig)


def _mass_contours(ax, x: np.ndarray, y: np.ndarray, xlim, ylim, masses=(0.68, 0.95), bins: int = 40) -> None:
    """Black contours enclosing ``masses`` of the points (x, y) (highest-density regions of a 2-D histogram)."""
    counts, xe, ye = np.histogram2d(x, y, bins=bins, range=[xlim, ylim])
    ordered = np.sort(counts.ravel())[::-1]
    cumulative = np.cumsum(ordered) / max(ordered.sum(), 1)
    levels = sorted({float(ordered[min(np.searchsorted(cumulative, m), len(ordered) - 1)]) for m in masses})
    levels = [level for level in levels if level > 0]
    if len(levels) and counts.max() > levels[0]:
        centres = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
        ax.contour(*centres, counts.T, levels=levels + [counts.max() + 1], colors="black", linewidths=0.9, zorder=5)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110)
    plt.close(fig)


def predictive_plot(check, path: str | Path, unit: str = "", title: str = "") -> None:
    """Observed features against the posterior predictive 68% and 95% bands per feature.

    ``check``: a :class:`seqsbi.diagnostics.PredictiveCheck`. Bands: grey (95%) and blue (68%) boxes with
    the predictive median; x_o as red points with its error bars where known; censored features (upper
    limits at the 1-sigma floor) as open triangles. Magnitude features get an inverted y axis (brighter up).
    """
    plt = _pyplot()
    k = len(check.x_o)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * k + 2), 4.2))
    positions = np.arange(k)
    q = check.quantiles
    ax.bar(positions, q[4] - q[0], bottom=q[0], width=0.6, color="0.82", label="predictive 95%")
    ax.bar(positions, q[3] - q[1], bottom=q[1], width=0.6, color="tab:blue", alpha=0.55, label="predictive 68%")
    ax.hlines(q[2], positions - 0.3, positions + 0.3, color="navy", lw=1.5, label="predictive median")
    censored = check.errors.censored
    sigma = np.where(np.isfinite(check.errors.sigma), check.errors.sigma, 0.0)
    detected = ~censored
    ax.errorbar(positions[detected], check.x_o[detected], yerr=sigma[detected], fmt="o", color="crimson", ms=5,
                capsize=3, label="observed" + (" (1-sigma error)" if sigma.any() else ""))
    if censored.any():
        ax.plot(positions[censored], check.x_o[censored], marker="v", ls="none", mfc="none", mec="crimson", ms=9,
                label="observed, censored (1-sigma upper limit)")
    ax.set_xticks(positions, check.feature_names, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylabel(f"feature [{unit}]" if unit else "feature")
    ax.use_sticky_edges = False  # bars would pin the y range to their ends: keep a margin around them
    ax.margins(y=0.05)
    if "mag" in unit:
        ax.invert_yaxis()
    ax.set_title(f"{title}\npredictive p-value {check.p_value:.3f}\n(chi^2 discrepancy, "
                 f"{len(check.predictive)} simulations)", loc="left", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="best")
    _save(fig, path)


def convergence_plot(rows: Sequence[dict], names: Sequence[str], path: str | Path, threshold: float,
                     title: str = "") -> None:
    """Per parameter: mean with its 68% width as error bar per round; last panel: C2ST against the previous
    round (and against the reference when the rows have it), 0.5 = indistinguishable, threshold dashed."""
    plt = _pyplot()
    d = len(names)
    fig, axes = plt.subplots(1, d + 1, figsize=(2.6 * (d + 1), 3.2), squeeze=False)
    rounds = np.array([row["round"] for row in rows])
    for j, name in enumerate(names):
        ax = axes[0, j]
        means = np.array([row[f"{name}_mean"] for row in rows])
        widths = np.array([row[f"{name}_width68"] for row in rows])
        ax.errorbar(rounds, means, yerr=widths / 2, fmt="o-", capsize=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
    ax = axes[0, d]
    previous = np.array([row["c2st_previous_round"] for row in rows], dtype=float)
    ax.plot(rounds, previous, "o-", label="vs previous round")
    if "c2st_reference" in rows[0]:
        ax.plot(rounds, [row["c2st_reference"] for row in rows], "s-", color="black", label="vs reference")
    ax.axhline(0.5, color="0.6", lw=0.8)
    ax.axhline(threshold, color="crimson", ls="--", lw=0.8, label=f"moved_c2st {threshold:g}")
    ax.set_ylim(0.45, 1.02)
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_title("C2ST", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, x=0.02, ha="left", fontsize=10)
    _save(fig, path)


def training_curves_plot(logs: Sequence[dict], verdicts: Sequence[dict], path: str | Path, title: str = "") -> None:
    """Training (thin) and validation (thick) loss per epoch, every round on one plot (epochs counted on
    from the previous round's last), later rounds darker; a round flagged by the training verdict is marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = plt.cm.viridis(np.linspace(0.85, 0.05, max(len(logs), 2)))
    offset = 0
    for k, (log, verdict) in enumerate(zip(logs, verdicts)):
        epochs = log["epoch"] + offset
        flag = " - stopped at max_num_epochs, still falling" if verdict["warning"] else ""
        ax.plot(epochs, log["training_loss"], color=colours[k], lw=0.8, alpha=0.7)
        ax.plot(epochs, log["validation_loss"], color=colours[k], lw=1.8, label=f"round {k}{flag}")
        if len(epochs):
            offset = epochs[-1]
            ax.axvline(offset + 0.5, color="0.85", lw=0.6)
    ax.set_xlabel("epoch (all rounds in order)")
    ax.set_ylabel("loss (thin: training, thick: validation)")
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, loc="left", fontsize=9)
    _save(fig, path)
