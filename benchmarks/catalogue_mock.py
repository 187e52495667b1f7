"""A mock catalogue with known truth and injected impossible rows, and its evaluation (issue 16, item 6).

Two sub-commands, run from the repository root with the project's venv, after the demo's model library exists
(``snakemake --cores 2 results/galaxy/libraries/synference_seed.features.npz``):

``make``: draws ``--galaxies`` parameter vectors from the library prior (``prior.from_library``, the demo's
``config/config.yaml`` galaxy block), simulates their noise-free NIRCam fluxes with the galaxy model, adds
Gaussian noise with each galaxy's own 1-sigma errors (5-sigma depth drawn uniformly in ``--depth`` AB per
galaxy and band; the default 29 29 is the demo's, so the amortized estimator's training noise matches),
optionally leaves 1-2 bands out of ``--missing-share`` of the rows (NaN flux and error) and, with
``--faint-share``, keeps that share of rows with S/N < 2 in at least half their bands (chosen by their photometry
from a pool 4x the size: a selection on x, which keeps exact posteriors calibrated), and appends ``--injected``
rows meant to be unlike any model in the prior, in four kinds taking turns (``producible`` checks that no galaxy
in the prior fits them):

- ``stellar``: a Rayleigh-Jeans-like power law f_nu ~ nu^2 (a cool star's near-IR slope), scaled to 25 AB at
  F200W;
- ``power_law``: f_nu ~ nu^-3, 26 AB at F200W;
- ``bright``: a model galaxy's fluxes x 10 above the brightest model flux in each band;
- ``band_off``: a model galaxy with one band (F277W) 3 mag fainter.

It writes a CSV readable as a catalogue (``id``, per filter ``<band>`` and ``<band>_err`` in nJy) with the
truth (``true_<parameter>``) and ``injected`` (the kind, empty for normal rows) beside.

``calibration``: SBC and TARP (sbi.diagnostics) on the estimator's held-out split, with sbi's plots.

``throughput``: galaxies/s of the batched sampling and of a one-galaxy-at-a-time loop, same estimator.

``producible``: for each injected row (and ``--normal`` normal rows, as a check of the method), the best
chi^2 any galaxy in the prior reaches against it with the row's own errors, and its p-value for n_bands - d
degrees of freedom: the best of ``--draws`` prior draws (the mass fitted as a free amplitude within its prior
range: flux scales as 10^log_mass), then Nelder-Mead (scipy) from the best ``--starts`` of them. A row with
p > 0.001 is one the model can produce within the noise, so no flag should be expected to catch it. Normal rows'
p-values should spread over (0, 1); p-values piling near 0 for them would mean the search misses the optimum.

``realized``: on a finished catalogue of the mock, a posterior predictive p-value with a discrepancy that depends
on theta (Gelman, Meng & Stern 1996's realized chi^2: x_o against each of ``--draws`` posterior draws' noise-free
fluxes, with the row's own errors, beside the chi^2 of a replicate with the same noise), per injected kind and per
S/N bin of normal rows: what a theta-dependent check would flag, which the catalogue's ``ppc`` does not do.

``fit``: the model-fit flag (``seqsbi.amortized.ModelFitScore``, the code a catalogue runs) on the mock with the
estimator's training set and held-out split, for several ``--floors`` (``flags.fit_error_floor``): per injected kind
its chi^2 and its ratio to the held-out 99.9th percentile, and per ``--thresholds`` p-value the injected rows
flagged and the share of normal rows flagged (overall and by median S/N): how the default floor was chosen.

``evaluate``: reads a finished catalogue's summary table and samples (``results/catalogues/<name>``) with the
mock's truth, and prints per parameter the 68%/95% coverage of normal rows, R^2, bias, outlier fraction
(|median - truth| > 3 x the 16-84 half width), the flag recall on injected rows, the false-flag rate on normal
rows and, when a merged (refined) table exists, the same for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

INJECTED_KINDS = ("stellar", "power_law", "bright", "band_off")


def _galaxy_settings(config_path: Path):
    import yaml

    from seqsbi.amortized import settings_for
    from seqsbi.config import validate_config

    config = yaml.safe_load(config_path.read_text())
    config["amortized"] = {"mock": {"prior": {"from_library": True}}}
    filled = validate_config(config)
    return settings_for("mock", filled["amortized"]["mock"], filled["galaxy"]), filled["galaxy"]


def _estimator_settings(config_path: Path, estimator_dir: Path):
    """The mock's galaxy settings with the depth inputs and band masks the estimator in ``estimator_dir`` was
    trained with (``training_depth_range_ab``, ``training_missing_bands`` in its amortized.json)."""
    import dataclasses
    import json

    settings, galaxy = _galaxy_settings(config_path)
    summary = json.loads((estimator_dir / "amortized.json").read_text())
    depths, masks = summary.get("training_depth_range_ab"), summary.get("training_missing_bands")
    return dataclasses.replace(settings, depth_inputs=None if depths is None else tuple(depths),
                               missing_bands=None if masks is None else (masks["share"], masks["max_bands"])), galaxy


def make_mock(settings, galaxies: int, injected: int, depth: tuple[float, float], seed: int,
              missing_share: float = 0.0):
    """(astropy Table of the catalogue with truth, (n,) kinds) for the galaxy model in ``settings``; a share
    ``missing_share`` of the normal rows has one or two bands (equally often, bands at random) missing: NaN flux
    and error, drawn after everything else so the other rows match a mock without them."""
    from astropy.table import Table

    from seqsbi.amortized import galaxy_flux_simulator
    from seqsbi.simulators.galaxy.catalogue import band_name
    from seqsbi.units import ab_to_njy, sigma_from_depth

    rng = np.random.default_rng(seed)
    filters = list(settings.simulator_settings["filters"])
    n = galaxies + injected
    theta = settings.prior.draw(n, rng)
    flux = galaxy_flux_simulator(settings)(theta, rng)
    kinds = np.array([""] * galaxies + [INJECTED_KINDS[i % len(INJECTED_KINDS)] for i in range(injected)])
    # Relative frequency per band from the NIRCam band name (F200W: 2.00 micron), enough for a slope.
    nu = 1.0 / np.array([float(band_name(code)[1:4]) / 100 for code in filters])
    reference = filters.index(next(code for code in filters if code.endswith("F200W")))
    brightest = flux[:galaxies].max(axis=0)
    for i in np.flatnonzero(kinds != ""):
        if kinds[i] == "stellar":
            flux[i] = ab_to_njy(25.0) * (nu / nu[reference]) ** 2
        elif kinds[i] == "power_law":
            flux[i] = ab_to_njy(26.0) * (nu / nu[reference]) ** -3
        elif kinds[i] == "bright":
            flux[i] = 10 * brightest
        else:
            flux[i, filters.index(next(code for code in filters if code.endswith("F277W")))] *= 10 ** (-0.4 * 3)
    sigma = sigma_from_depth(rng.uniform(depth[0], depth[1], size=flux.shape), 5)
    observed = flux + sigma * rng.standard_normal(flux.shape)
    if missing_share > 0:
        for i in np.flatnonzero(rng.uniform(size=galaxies) < missing_share):
            bands = rng.choice(len(filters), size=rng.integers(1, 3), replace=False)
            observed[i, bands] = sigma[i, bands] = np.nan
    table = Table()
    table["id"] = [f"mock{i:05d}" for i in range(n)]
    for j, code in enumerate(filters):
        table[band_name(code)] = observed[:, j]
        table[f"{band_name(code)}_err"] = sigma[:, j]
    for j, name in enumerate(settings.prior.names):
        table[f"true_{name}"] = np.where(kinds == "", theta[:, j], np.nan)
    table["injected"] = kinds
    return table, kinds


def select_faint(table, kinds: np.ndarray, galaxies: int, faint_share: float, filters: list[str]):
    """(table, kinds) with ``galaxies`` normal rows, ``faint_share`` of them with S/N < 2 in at least half their
    bands (:func:`_faint_half`), the first such rows and the first others of ``table`` in its order, then the
    injected rows; ids renumbered. A selection on the observed photometry only, so exact posteriors stay
    calibrated on it (coverage conditional on x-defined subsets holds as it does over the prior predictive).

    Raises:
        ValueError: too few rows of either kind in ``table``.
    """
    from seqsbi.simulators.galaxy.catalogue import band_name

    data = np.stack([np.asarray(table[band_name(c)], dtype=float) for c in filters], axis=1)
    error = np.stack([np.asarray(table[f"{band_name(c)}_err"], dtype=float) for c in filters], axis=1)
    faint, normal = _faint_half(data, error), kinds == ""
    n_faint = int(round(faint_share * galaxies))
    chosen_faint, chosen_other = np.flatnonzero(normal & faint)[:n_faint], np.flatnonzero(normal & ~faint)[
        :galaxies - n_faint]
    if len(chosen_faint) < n_faint or len(chosen_other) < galaxies - n_faint:
        raise ValueError(f"{n_faint} faint and {galaxies - n_faint} other rows asked, the pool has "
                         f"{int((normal & faint).sum())} and {int((normal & ~faint).sum())}: draw a larger pool")
    rows = np.concatenate([np.sort(np.concatenate([chosen_faint, chosen_other])), np.flatnonzero(~normal)])
    out = table[rows]
    out["id"] = [f"mock{i:05d}" for i in range(len(out))]
    return out, kinds[rows]


def _read_mock(mock_path: Path, config_path: Path):
    """(galaxy settings, (n,) injected kinds, fluxes (n, n_bands) nJy, their 1-sigma errors) of a mock CSV."""
    from astropy.table import Table

    from seqsbi.simulators.galaxy.catalogue import band_name

    settings, _ = _galaxy_settings(config_path)
    mock = Table.read(mock_path, format="ascii.csv")
    kinds = np.asarray(mock["injected"].filled("") if hasattr(mock["injected"], "filled") else mock["injected"])
    bands = [band_name(code) for code in settings.simulator_settings["filters"]]
    data = np.stack([np.asarray(mock[b], dtype=float) for b in bands], axis=1)
    error = np.stack([np.asarray(mock[f"{b}_err"], dtype=float) for b in bands], axis=1)
    return settings, kinds.astype(str), data, error


def producible(mock_path: Path, config_path: Path, draws: int, starts: int, normal_rows: int, seed: int) -> None:
    from scipy.optimize import minimize
    from scipy.stats import chi2

    from seqsbi.amortized import galaxy_flux_simulator

    settings, kinds, data, error = _read_mock(mock_path, config_path)
    prior, names = settings.prior, list(settings.prior.names)
    mass = names.index("log_mass")
    rng = np.random.default_rng(seed)
    simulate = galaxy_flux_simulator(settings)
    theta = prior.draw(draws, rng)
    theta[:, mass] = 10.0  # the amplitude is fitted below
    model = simulate(theta, rng)  # (draws, n_bands) nJy at log_mass 10
    dof = data.shape[1] - prior.dim

    def best_amplitude_chi2(shapes, row):
        """chi^2 (m,) of shapes (m, n_bands) at log_mass 10, each scaled by its best amplitude within the prior."""
        w = 1 / error[row] ** 2
        amplitude = (shapes * data[row] * w).sum(axis=1) / np.maximum((shapes ** 2 * w).sum(axis=1), 1e-300)
        amplitude = np.clip(amplitude, 10 ** (prior.low[mass] - 10), 10 ** (prior.high[mass] - 10))
        return (((amplitude[:, None] * shapes - data[row]) ** 2) * w).sum(axis=1)

    others = [j for j in range(prior.dim) if j != mass]

    def objective(free, row):
        if np.any(free < prior.low[others]) or np.any(free > prior.high[others]):
            return np.inf
        point = np.full((1, prior.dim), 10.0)
        point[0, others] = free
        return float(best_amplitude_chi2(simulate(point, rng), row)[0])

    rows = np.concatenate([np.flatnonzero(kinds != ""), np.flatnonzero(kinds == "")[:normal_rows]])
    print(f"best chi^2 of {draws} prior draws (mass fitted), then Nelder-Mead from the best {starts}; "
          f"p-value for {dof} degrees of freedom")
    print("row | kind | best chi^2 (draws) | best chi^2 (optimised) | p | producible (p > 0.001)")
    for row in rows.tolist():
        chi = best_amplitude_chi2(model, row)
        best = float(chi.min())
        for start in np.argsort(chi)[:starts]:
            result = minimize(objective, theta[start, others], args=(row,), method="Nelder-Mead",
                              options={"maxfev": 400, "xatol": 1e-4, "fatol": 1e-3})
            best = min(best, float(result.fun))
        p = float(chi2.sf(best, dof))
        print(f"{row} | {kinds[row] or 'normal'} | {chi.min():.4g} | {best:.4g} | {p:.3g} | {p > 1e-3}", flush=True)


def realized(mock_path: Path, samples_path: Path, config_path: Path, draws: int, threshold: float) -> None:
    import h5py

    from seqsbi.amortized import galaxy_flux_simulator

    settings, kinds, data, error = _read_mock(mock_path, config_path)
    with h5py.File(samples_path) as hf:
        samples = hf["samples"][:, :draws]
    rng = np.random.default_rng(0)
    flux = galaxy_flux_simulator(settings)(samples.reshape(-1, samples.shape[-1]), rng).reshape(
        len(samples), draws, -1)
    observed = (((data[:, None] - flux) / error[:, None]) ** 2).sum(axis=-1)  # (n, draws)
    replicated = (rng.standard_normal(flux.shape) ** 2).sum(axis=-1)  # the same draws' noise: chi^2, n_bands dof
    p = (1 + (replicated >= observed).sum(axis=1)) / (1 + draws)
    normal, snr = kinds == "", np.median(data / error, axis=1)
    print(f"realized chi^2 posterior predictive p-value, {draws} draws a galaxy; flagged: p <= {threshold}")
    print(f"normal rows flagged: {np.mean(p[normal] <= threshold):.3f} of {int(normal.sum())}")
    for kind in INJECTED_KINDS:
        if (kinds == kind).any():
            print(f"{kind}: flagged {int(np.sum(p[kinds == kind] <= threshold))}/{int((kinds == kind).sum())}")
    print("median S/N bin | normal rows | flagged | median of each galaxy's best chi^2 per band")
    for low, high in ((0, 20), (20, 100), (100, 1000), (1000, np.inf)):
        rows = normal & (snr >= low) & (snr < high)
        if rows.any():
            print(f"{low}-{high} | {int(rows.sum())} | {np.mean(p[rows] <= threshold):.3f} | "
                  f"{np.median(observed[rows].min(axis=1) / data.shape[1]):.3g}")


def fit_floors(mock_path: Path, estimator_dir: Path, config_path: Path, floors: list[float],
               thresholds: list[float]) -> None:
    from seqsbi import artifacts
    from seqsbi.amortized import galaxy_model_fit

    _, kinds, data, error = _read_mock(mock_path, config_path)
    settings, _ = _estimator_settings(config_path, estimator_dir)
    training = artifacts.read_npz(estimator_dir / "training_set.npz", required=("theta", "flux"))
    held_out_theta = artifacts.read_npz(estimator_dir / "held_out.npz", required=("theta",))["theta"]
    normal, snr = kinds == "", np.median(data / error, axis=1)
    print(f"model-fit flag on {mock_path.name}: {int(normal.sum())} normal rows, {int((~normal).sum())} injected; "
          f"{len(training['theta'])} training models, {len(held_out_theta)} held-out rows calibrate")
    for floor in floors:
        score, flux, sigma = galaxy_model_fit(settings, training, held_out_theta, floor, 0, data, error)
        chi2, p = score.p_value(flux, sigma)
        calibration = score.held_out_chi2()
        top = calibration[int(0.999 * (len(calibration) - 1))]
        print(f"error floor {floor:g}: held-out chi^2 median {np.median(calibration):.3g}, "
              f"99.9th percentile {top:.3g}")
        for kind in INJECTED_KINDS:
            if (kinds == kind).any():
                ratio = chi2[kinds == kind] / top
                print(f"  {kind}: chi^2 {np.array2string(chi2[kinds == kind], precision=0, floatmode='fixed')}, "
                      f"/ 99.9th percentile {ratio.min():.2f}-{ratio.max():.2f}")
        for threshold in thresholds:
            print(f"  p < {threshold:g}: injected {int(np.sum(p[~normal] < threshold))}/{int((~normal).sum())}, normal "
                  f"{np.mean(p[normal] < threshold):.4f} (S/N < 20: {np.mean(p[normal & (snr < 20)] < threshold):.4f}; "
                  f"20-1000: {np.mean(p[normal & (snr >= 20) & (snr < 1000)] < threshold):.4f}; "
                  f">= 1000: {np.mean(p[normal & (snr >= 1000)] < threshold):.4f})")


def _faint_half(data: np.ndarray, error: np.ndarray) -> np.ndarray:
    """(n,) rows with S/N < 2 in at least half of their bands (missing bands left out)."""
    present = np.isfinite(data) & np.isfinite(error)
    faint = present & (np.where(present, data, 0.0) < 2 * np.where(present, error, 1.0))
    return faint.sum(axis=1) >= 0.5 * present.sum(axis=1)


def _coverage(samples: np.ndarray, truth: np.ndarray, level: float) -> np.ndarray:
    low, high = np.nanpercentile(samples, [50 - 50 * level, 50 + 50 * level], axis=1)
    return np.mean((truth >= low) & (truth <= high), axis=0)


def evaluate(mock_path: Path, results: Path) -> None:
    import h5py
    from astropy.table import Table

    from seqsbi.units import njy_to_ab

    mock = Table.read(mock_path, format="ascii.csv")
    kinds = np.asarray(mock["injected"].filled("") if hasattr(mock["injected"], "filled") else mock["injected"])
    kinds = kinds.astype(str)
    normal = kinds == ""
    for name in ("summary", "merged_summary"):
        path = results / f"{name}.fits"
        if not path.exists():
            continue
        table = Table.read(path)
        samples_path = results / ("samples.hdf5" if name == "summary" else "merged_samples.hdf5")
        with h5py.File(samples_path) as hf:
            samples = hf["samples"][...]
            names = list(hf.attrs["parameter_names"])
        truth = np.stack([np.asarray(mock[f"true_{p}"], dtype=float) for p in names], axis=1)
        flagged = np.asarray(table["flags"]).astype(str) != ""
        sampled = np.isfinite(samples).all(axis=(1, 2))
        print(f"== {name}: {len(table)} rows ({int(normal.sum())} normal, {int((~normal).sum())} injected); normal "
              f"rows without samples (bands missing the estimator cannot take): {int((normal & ~sampled).sum())}, "
              f"left out of what follows")
        scored = normal & sampled
        c68, c95 = _coverage(samples[scored], truth[scored], 0.68), _coverage(samples[scored], truth[scored], 0.95)
        median = np.nanmedian(samples[scored], axis=1)
        p16, p84 = np.nanpercentile(samples[scored], [16, 84], axis=1)
        print("parameter | 68% coverage | 95% coverage | R^2 | bias | outlier fraction")
        for j, p in enumerate(names):
            t, m = truth[scored, j], median[:, j]
            ok = np.isfinite(m)
            r2 = 1 - np.sum((m[ok] - t[ok]) ** 2) / np.sum((t[ok] - t[ok].mean()) ** 2)
            outlier = np.mean(np.abs(m[ok] - t[ok]) > 3 * np.maximum((p84 - p16)[ok, j] / 2, 1e-12))
            print(f"{p} | {c68[j]:.3f} | {c95[j]:.3f} | {r2:.3f} | {np.mean(m[ok] - t[ok]):+.4f} | {outlier:.3f}")
        print(f"flag recall on injected rows: {flagged[~normal].mean():.3f} "
              f"({int(flagged[~normal].sum())}/{int((~normal).sum())}); per kind: "
              + ", ".join(f"{k} {flagged[kinds == k].mean():.2f}" for k in INJECTED_KINDS if (kinds == k).any()))
        print(f"false-flag rate on normal rows: {flagged[normal].mean():.4f}; per flag: "
              + ", ".join(f"{c[5:]} {np.mean(np.asarray(table[c])[normal]):.4f}" for c in table.colnames
                          if c.startswith("flag_")))
        if "refined" in table.colnames:
            print(f"refined rows: {int(np.sum(table['refined']))}")
        _, _, data, error = _read_mock(mock_path, ROOT / "config/config.yaml")
        depth = np.nanmedian(njy_to_ab(5 * error), axis=1)
        faint = _faint_half(data, error)
        print("rows (normal, sampled) | n | 68% coverage per parameter | 95% coverage per parameter")
        for label, rows in [(f"median depth {lo:g}-{hi:g} AB", (depth >= lo) & (depth < hi))
                            for lo, hi in ((27, 28), (28, 29), (29, 30))] + [
                ("S/N < 2 in half the bands or more", faint), ("brighter", ~faint),
                ("bands missing", np.isnan(data).any(axis=1)), ("every band", ~np.isnan(data).any(axis=1))]:
            rows = rows & scored
            if rows.any():
                print(f"{label} | {int(rows.sum())} | "
                      f"{' '.join(f'{c:.3f}' for c in _coverage(samples[rows], truth[rows], 0.68))} | "
                      f"{' '.join(f'{c:.3f}' for c in _coverage(samples[rows], truth[rows], 0.95))}")


def throughput(mock_path: Path, estimator_dir: Path, config_path: Path, galaxies: int, loop_galaxies: int) -> None:
    """Galaxies/s at 1,000 samples each on one torch thread: seqsbi's batched sampling of ``galaxies`` catalogue
    rows against a one-galaxy-at-a-time loop (``posterior.sample`` per row) over ``loop_galaxies`` of them, with
    the same trained estimator, in this process."""
    import time

    import torch

    from seqsbi import engines
    from seqsbi.amortized import estimator_x, sample_batched, sample_loop
    from seqsbi.catalogue_table import catalogue_features, read_catalogue

    torch.set_num_threads(1)
    settings, galaxy = _estimator_settings(config_path, estimator_dir)
    catalogue = read_catalogue(mock_path, galaxy["filters"])
    x = estimator_x(settings, catalogue_features(catalogue, galaxy), catalogue.error_njy)[:galaxies]
    estimator = engines.load(estimator_dir / "estimator.pt")
    posterior = engines.load(estimator_dir / "posterior.pt")
    start = time.perf_counter()
    sample_batched(estimator, x, 1000, seed=1)
    batched = len(x) / (time.perf_counter() - start)
    start = time.perf_counter()
    sample_loop(posterior, x[:loop_galaxies], 1000)
    loop = loop_galaxies / (time.perf_counter() - start)
    print(f"batched: {len(x)} galaxies, {batched:.1f} galaxies/s; loop: {loop_galaxies} galaxies, {loop:.1f} "
          f"galaxies/s; ratio {batched / loop:.2f}")


def calibration(estimator_dir: Path, out: Path, rows: int, samples: int) -> None:
    """SBC and TARP (sbi.diagnostics.run_sbc / run_tarp, with sbi's checks and plots) of an amortized estimator
    on the first ``rows`` of its held-out split, ``samples`` posterior samples each; plots to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from sbi.analysis import plot_tarp, sbc_rank_plot
    from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

    from seqsbi import artifacts, engines

    torch.set_num_threads(1)
    torch.manual_seed(0)
    held_out = artifacts.read_npz(estimator_dir / "held_out.npz", required=("theta", "x", "parameter_names"))
    names = [str(n) for n in held_out["parameter_names"]]
    theta = torch.as_tensor(held_out["theta"][:rows], dtype=torch.float32)
    x = torch.as_tensor(held_out["x"][:rows], dtype=torch.float32)
    posterior = engines.load(estimator_dir / "posterior.pt")
    out.mkdir(parents=True, exist_ok=True)
    ranks, dap = run_sbc(theta, x, posterior, num_posterior_samples=samples, show_progress_bar=False)
    checks = check_sbc(ranks, theta, dap, num_posterior_samples=samples)
    print("SBC per parameter: KS p-value of uniform ranks, C2ST of data-averaged posterior vs prior (0.5 ideal)")
    for j, name in enumerate(names):
        print(f"  {name}: KS p {float(checks['ks_pvals'][j]):.3f}, C2ST {float(checks['c2st_dap'][j]):.3f}")
    fig, _ = sbc_rank_plot(ranks, samples, plot_type="cdf", parameter_labels=names)
    fig.savefig(out / "sbc_ranks.png", dpi=120)
    ecp, alpha = run_tarp(theta, x, posterior, num_posterior_samples=samples, show_progress_bar=False)
    atc, ks_p = check_tarp(ecp, alpha)
    print(f"TARP: area to curve {atc:.4f} (0 ideal), KS p {ks_p:.3f}")
    fig, _ = plot_tarp(ecp, alpha, title=f"TARP, {rows} held-out simulations")
    fig.savefig(out / "tarp.png", dpi=120)
    print(f"plots: {out / 'sbc_ranks.png'}, {out / 'tarp.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write a mock catalogue CSV")
    make.add_argument("output", type=Path)
    make.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    make.add_argument("--galaxies", type=int, default=10_000)
    make.add_argument("--injected", type=int, default=24)
    make.add_argument("--depth", type=float, nargs=2, default=(29.0, 29.0), metavar=("BRIGHT", "FAINT"))
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--missing-share", type=float, default=0.0, help="share of normal rows missing 1-2 bands")
    make.add_argument("--faint-share", type=float, default=None,
                      help="share of normal rows with S/N < 2 in at least half their bands (chosen from a pool 4x "
                           "the size by their photometry)")
    ev = sub.add_parser("evaluate", help="score a finished catalogue against the mock's truth")
    ev.add_argument("mock", type=Path)
    ev.add_argument("results", type=Path, help="results/catalogues/<name>")
    tp = sub.add_parser("throughput", help="batched vs per-galaxy loop sampling, galaxies/s on one thread")
    tp.add_argument("mock", type=Path)
    tp.add_argument("estimator", type=Path, help="results/amortized/<name>")
    tp.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    tp.add_argument("--galaxies", type=int, default=2000)
    tp.add_argument("--loop-galaxies", type=int, default=100)
    pr = sub.add_parser("producible", help="best chi^2 any model in the prior reaches on the injected rows")
    pr.add_argument("mock", type=Path)
    pr.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    pr.add_argument("--draws", type=int, default=200_000)
    pr.add_argument("--starts", type=int, default=5)
    pr.add_argument("--normal", type=int, default=10, help="normal rows scored too (a check of the search)")
    pr.add_argument("--seed", type=int, default=0)
    real = sub.add_parser("realized", help="a theta-dependent predictive check on a finished catalogue")
    real.add_argument("mock", type=Path)
    real.add_argument("samples", type=Path, help="results/catalogues/<name>/samples.hdf5")
    real.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    real.add_argument("--draws", type=int, default=50)
    real.add_argument("--threshold", type=float, default=0.02)
    fit = sub.add_parser("fit", help="the model-fit flag's recall and false flags for several error floors")
    fit.add_argument("mock", type=Path)
    fit.add_argument("estimator", type=Path, help="results/amortized/<name>")
    fit.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    fit.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.02, 0.05, 0.1])
    fit.add_argument("--thresholds", type=float, nargs="+", default=[0.001, 0.01, 0.02])
    cal = sub.add_parser("calibration", help="SBC and TARP on the estimator's held-out split, with plots")
    cal.add_argument("estimator", type=Path, help="results/amortized/<name>")
    cal.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/catalogue_calibration")
    cal.add_argument("--rows", type=int, default=1000)
    cal.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    if args.command == "fit":
        fit_floors(args.mock, args.estimator, args.config, args.floors, args.thresholds)
    elif args.command == "calibration":
        calibration(args.estimator, args.out, args.rows, args.samples)
    elif args.command == "realized":
        realized(args.mock, args.samples, args.config, args.draws, args.threshold)
    elif args.command == "producible":
        producible(args.mock, args.config, args.draws, args.starts, args.normal, args.seed)
    elif args.command == "throughput":
        throughput(args.mock, args.estimator, args.config, args.galaxies, args.loop_galaxies)
    elif args.command == "make":
        settings, _ = _galaxy_settings(args.config)
        pool = args.galaxies if args.faint_share is None else 4 * args.galaxies
        table, kinds = make_mock(settings, pool, args.injected, tuple(args.depth), args.seed, args.missing_share)
        if args.faint_share is not None:
            table, kinds = select_faint(table, kinds, args.galaxies, args.faint_share,
                                        list(settings.simulator_settings["filters"]))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        table.write(args.output, format="ascii.csv", overwrite=True)
        _, _, data, error = _read_mock(args.output, args.config)
        normal = kinds == ""
        print(f"wrote {args.output}: {args.galaxies} galaxies + {args.injected} injected rows "
              f"({', '.join(f'{k} {int((kinds == k).sum())}' for k in INJECTED_KINDS)}); normal rows with bands "
              f"missing: {np.mean(~np.isfinite(data[normal]).all(axis=1)):.3f}; with S/N < 2 in at least half "
              f"their bands: {np.mean(_faint_half(data, error)[normal]):.3f}")
    else:
        evaluate(args.mock, args.results)


if __name__ == "__main__":
    main()
