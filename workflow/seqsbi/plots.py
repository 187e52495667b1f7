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
) -> None:
    """Corner plot of every round's samples (each (N, d)), later rounds on top in darker colours.

    Diagonal: per-round marginal histograms; lower triangle: per-round scatter. ``limits`` (d, 2) are
    the prior bounds; axes zoom to where the samples are, never beyond the prior. ``theta_true`` (d,)
    is marked when known. Written atomically as PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = len(labels)
    limits = zoom_limits(round_samples, limits, theta_true)
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
