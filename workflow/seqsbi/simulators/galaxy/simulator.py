"""The built-in ``galaxy`` simulator: rebuilt from a model library's metadata, with the configured
features and noise, so online simulations look exactly like the library's feature array.

A galaxy observation may specialise it (seqsbi.simulators.galaxy.observations): its own per-band
flux errors (``sigma_njy``) and only the bands it has (``bands``); fixed parameters are inserted into
theta before the call (seqsbi.simulators.Simulator).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

_BUILT: dict[tuple[str, float], Any] = {}


def rebuilt_spec(library, path: str, grid_dir: str | None = None):
    """A read library's model spec (LibraryError without one), its grid in ``grid_dir`` when given (config
    ``galaxy.library.grid_dir``) instead of the directory the library records."""
    import dataclasses

    from seqsbi.simulators.galaxy.library import require_model

    spec = require_model(library, path)
    return spec if grid_dir is None else dataclasses.replace(spec, grid_dir=str(grid_dir))


def _rebuilt_simulator(library: str, svo_filter_cache: str, backend: str, grid_dir: str | None = None):
    """The simulator described by ``library``'s Model group (built once per process and backend), with
    the filter curves the library stores, or those in ``svo_filter_cache`` for a library without them."""
    from seqsbi.simulators.galaxy.library import read_library
    from seqsbi.simulators.galaxy.model import build_simulator

    key = (str(Path(library).resolve()), Path(library).stat().st_mtime, backend, grid_dir)
    if key not in _BUILT:
        read = read_library(library, arrays=False)  # the model and curves only: a large library's rows stay on disk
        _BUILT[key] = build_simulator(rebuilt_spec(read, library, grid_dir), svo_filter_cache, backend,
                                      read.filter_curves)
    return _BUILT[key]


def galaxy(theta: np.ndarray, rng: np.random.Generator, library: str, svo_filter_cache: str, filters: list[str],
           features: str = "ab_magnitude", noise: dict | None = None, backend: str = "batched",
           sigma_njy: list[float | None] | None = None, bands: list[int] | None = None,
           flux_scale_njy: float | list[float] | None = None, grid_dir: str | None = None) -> np.ndarray:
    """Features (n, k) for galaxy parameters theta (n, d) in the library's parameter order.

    ``sigma_njy``: the observation's own 1-sigma flux errors, one per configured filter (None: the
    depth in ``noise``); ``bands``: indices of the filters simulated (None: all; k = len(bands));
    ``flux_scale_njy``: divisor of flux features (all filters or per filter); ``grid_dir``: the SPS
    grid's directory when it is not the one the library records (``galaxy.library.grid_dir``).
    """
    flux = _rebuilt_simulator(library, svo_filter_cache, backend, grid_dir)(theta)
    return features_from_flux(flux, rng, len(filters), features, noise, sigma_njy, bands, flux_scale_njy)


def features_from_flux(flux: np.ndarray, rng: np.random.Generator, n_filters: int, features: str = "ab_magnitude",
                       noise: dict | None = None, sigma_njy: list[float | None] | None = None,
                       bands: list[int] | None = None, flux_scale_njy: float | list[float] | None = None
                       ) -> np.ndarray:
    """Features (n, k) of noise-free model fluxes (n, n_filters) in nJy: what :func:`galaxy` does after the SPS
    model (the observation's noise from ``sigma_njy`` or ``noise``, the ``bands`` kept, then the features).
    A refinement re-noises an amortized training set's stored fluxes with it for one galaxy."""
    from seqsbi.simulators.galaxy.features import noise_for_observation, simulate_features

    errors = None if sigma_njy is None else np.array([np.nan if s is None else s for s in sigma_njy], dtype=float)
    model = noise_for_observation(noise, n_filters, errors)
    scale = None if flux_scale_njy is None else np.broadcast_to(np.asarray(flux_scale_njy, float), (n_filters,))
    if bands is not None:
        keep = np.asarray(bands, dtype=int)
        flux = flux[:, keep]
        model = None if model is None else model.select(bands)
        scale = None if scale is None else scale[keep]
    return simulate_features(flux, features, model, rng, scale)


def declared_output_dim(settings: dict[str, Any]) -> int:
    """One feature per simulated filter: known from config, without building the simulator at parse time."""
    bands = settings.get("bands")
    return len(settings["filters"]) if bands is None else len(bands)


#: Standard deviation over interquartile range of a flux feature above which a training set warns (a Gaussian's is
#: 0.74; the demo prior's fluxes reach 2,900-44,000, its asinh and AB magnitudes 0.65-0.70).
FLUX_TAIL_WARN_RATIO = 10.0


def flux_tail_ratio(x: np.ndarray) -> np.ndarray:
    """(k,) standard deviation / interquartile range of each column of x (n, k) (finite values; inf for a zero
    interquartile range with spread)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(x, [25, 75], axis=0)
        return np.nanstd(x, axis=0) / (high - low)


def feature_warnings(x: np.ndarray, settings: dict[str, Any]) -> dict[str, Any]:
    """A round's training set x (n, k) seen from the features (round.json ``features``): for AB magnitudes, the
    share of values on the 1-sigma floor per band and a warning when it exceeds a few percent; for fluxes, each
    band's standard deviation over its interquartile range and a warning when the tails dominate
    (FLUX_TAIL_WARN_RATIO)."""
    from seqsbi.simulators.galaxy.features import AB_FLOOR_WARN_SHARE, ab_floor_share

    noise, names = _feature_noise(settings)
    report: dict[str, Any] = {"kind": settings.get("features", "ab_magnitude"), "bands": names,
                              "noise": None if noise is None else noise.source}
    if noise is not None:
        report["sigma_njy"] = [float(s) for s in noise.sigma_njy]
    if report["kind"] in ("flux", "flux_njy") and len(x) > 1:
        tail = flux_tail_ratio(x)
        report["flux_std_over_iqr"] = {name: float(t) for name, t in zip(names, tail)}
        if np.any(tail > FLUX_TAIL_WARN_RATIO):
            report["warning"] = (
                "flux features are heavy-tailed (standard deviation / interquartile range per band: "
                + ", ".join(f"{name} {t:.3g}" for name, t in zip(names, tail))
                + "; 0.74 for a Gaussian): sbi z-scores x by its standard deviation, which squeezes most simulations "
                "into a sliver the network barely resolves (measured on the demo's prior: an amortized estimator "
                "on fluxes learnt almost nothing, R^2 below 0 for every parameter; benchmarks/README.md, \"Feature "
                "kinds and per-galaxy noise\"); set galaxy.features.kind to asinh_magnitude")
    if report["kind"] != "ab_magnitude" or noise is None:
        return report
    share = ab_floor_share(x, noise)
    report["ab_floor_share"] = {name: float(s) for name, s in zip(names, share)}
    overall = float(share.mean()) if share.size else 0.0
    if overall > AB_FLOOR_WARN_SHARE:
        report["warning"] = (
            f"{100 * overall:.1f}% of this round's AB-magnitude features sit on the 1-sigma floor (per band: "
            + ", ".join(f"{name} {100 * s:.0f}%" for name, s in zip(names, share))
            + "): a point mass a continuous density estimator cannot represent; set galaxy.features.kind to "
            "asinh_magnitude, which stays continuous for faint and negative fluxes, or (SNLE) "
            "training.dequantize_censored, which spreads them where the likelihood network trains")
    return report


def _feature_noise(settings: dict[str, Any]) -> tuple[Any, list[str]]:
    """(the noise model of the simulated bands or None, their filter names) for one observation's settings."""
    from seqsbi.simulators.galaxy.features import noise_for_observation

    filters, bands = list(settings["filters"]), settings.get("bands")
    errors = settings.get("sigma_njy")
    if errors is not None:
        errors = np.array([np.nan if s is None else s for s in errors], dtype=float)
    noise = noise_for_observation(settings.get("noise"), len(filters), errors)
    names = filters if bands is None else [filters[j] for j in bands]
    return (None if noise is None else noise.select(bands)), names


def censoring_floor(settings: dict[str, Any]) -> np.ndarray | None:
    """(k,) the value each feature takes when censored - AB magnitudes of fluxes below the 1-sigma error are set
    to the magnitude of that error (:func:`seqsbi.simulators.galaxy.features.to_features`), so censored values
    are >= it and detected ones below it - or None when no feature is censored (other kinds, no noise)."""
    from seqsbi.units import njy_to_ab

    if settings.get("features", "ab_magnitude") != "ab_magnitude":
        return None
    noise, _ = _feature_noise(settings)
    return None if noise is None else np.asarray(njy_to_ab(noise.sigma_njy), dtype=float)


galaxy.declared_output_dim = declared_output_dim
galaxy.feature_warnings = feature_warnings
galaxy.censoring_floor = censoring_floor
