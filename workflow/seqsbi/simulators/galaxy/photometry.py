"""Observed photometry -> x_o, and a galaxy run specialised for one observation.

An observation with its own fluxes and 1-sigma errors (nJy, one per configured filter; a catalogue
row or a sheet row with ``x_err``) is checked here and turned into features exactly as simulations
are (seqsbi.simulators.galaxy.features), and its run gets:

- its own noise: ``simulator_settings.sigma_njy`` (errors, None for missing bands; the config's
  ``max_snr`` stays the error floor), so online simulations share x_o's noise;
- its bands: a band whose flux is NaN or ``galaxy.missing_value`` is missing, and is dropped from x
  for this observation (``simulator_settings.bands``: the indices of the filters it has).

Per-observation priors (any run) are in seqsbi.config.observation_prior.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from seqsbi.errors import ConfigError
from seqsbi.observations import Observation
from seqsbi.simulators.galaxy.features import noise_for_observation, observation_features


def missing_mask(values: np.ndarray, sentinel: float | None) -> np.ndarray:
    """True where a flux is missing: NaN, or equal to the configured sentinel (galaxy.missing_value)."""
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    if sentinel is not None:
        missing |= values == sentinel
    return missing


def flux_scale(galaxy: dict[str, Any]) -> np.ndarray | None:
    """galaxy.features.flux_scale_njy per filter (None when not set)."""
    scale = galaxy["features"].get("flux_scale_njy")
    return None if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), (len(galaxy["filters"]),))


def observed_features(name: str, flux: np.ndarray, error: np.ndarray, galaxy: dict[str, Any], where: str
                      ) -> tuple[np.ndarray, tuple[int, ...] | None, np.ndarray]:
    """(x_o over the bands present, their indices or None when all are, errors with NaN where missing).

    Raises:
        ConfigError: naming ``where`` and the filter: a flux that is not finite and not missing; an
            error that is zero, negative, NaN or infinite where the flux is present; every band missing.
    """
    codes = list(galaxy["filters"])
    if flux.size != len(codes):
        raise ConfigError(f"{where}: {flux.size} fluxes for {len(codes)} filters ({', '.join(codes)}); give one flux "
                          f"and one error (nJy) per filter, nan for a missing band")
    sentinel = galaxy.get("missing_value")
    missing = missing_mask(flux, sentinel)
    for j, code in enumerate(codes):
        if missing[j]:
            continue
        if not np.isfinite(flux[j]):
            raise ConfigError(f"{where} {code}: flux {flux[j]} is not finite; give a number, or nan"
                              f"{f' or {sentinel:g}' if sentinel is not None else ''} for a missing band")
        if not (np.isfinite(error[j]) and error[j] > 0) or (sentinel is not None and error[j] == sentinel):
            raise ConfigError(f"{where} {code}: flux error {error[j]} must be a positive number (nJy) where the flux "
                              f"({flux[j]:g}) is given; fix the error, or mark the band missing (flux nan"
                              f"{f' or {sentinel:g}' if sentinel is not None else ''})")
    if missing.all():
        raise ConfigError(f"{where}: every band is missing; give at least one flux")
    present = np.flatnonzero(~missing)
    errors = np.where(missing, np.nan, error)
    noise = noise_for_observation(galaxy["features"].get("noise"), len(codes), errors).select(list(present))
    scale = flux_scale(galaxy)
    x_o = observation_features(flux[present], galaxy["features"]["kind"], noise,
                               None if scale is None else scale[present])
    return x_o, (None if present.size == len(codes) else tuple(int(j) for j in present)), errors


def photometry_observations(observations: dict[str, Observation], galaxy: dict[str, Any], sheet: str,
                            check_every_row: bool = True) -> dict[str, Observation]:
    """Observations with fluxes (catalogue rows, sheet rows with x_err) given x_o, bands and checked errors.

    Raises:
        ConfigError: a bad flux or error (see :func:`observed_features`); with ``check_every_row``, a band
            missing in every one of two or more such rows (one galaxy may lack a band; a sheet whose rows
            all lack it has a filter list that does not fit it). The catalogue checks its whole file instead.
    """
    resolved = {}
    for name, obs in observations.items():
        if obs.flux_njy is None:
            continue
        where = (f"galaxy.catalogue: id {obs.catalogue_id!r}" if obs.catalogue_id is not None
                 else f"{sheet} row {name!r} (x_o, x_err)")
        x_o, bands, errors = observed_features(name, obs.flux_njy, obs.flux_err_njy, galaxy, where)
        resolved[name] = replace(obs, x_o=x_o, bands=bands, flux_err_njy=errors)
    if check_every_row and len(resolved) >= 2:
        present = np.zeros(len(galaxy["filters"]), dtype=bool)
        for obs in resolved.values():
            present[list(obs.bands) if obs.bands is not None else slice(None)] = True
        if not present.all():
            absent = [code for code, p in zip(galaxy["filters"], present) if not p]
            raise ConfigError(f"galaxy.filters: {absent} missing (nan or galaxy.missing_value) in every one of the "
                              f"{len(resolved)} observation(s) with photometry ({', '.join(resolved)}); drop "
                              f"{'them' if len(absent) > 1 else 'it'} from galaxy.filters (and the library), or give "
                              f"the fluxes")
    return resolved


def feature_observations(observations: dict[str, Observation], galaxy: dict[str, Any], sheet: str
                         ) -> dict[str, Observation]:
    """Sheet rows whose x_o is given as features with a band missing (nan, or ``galaxy.missing_value``, e.g.
    synference's 99 magnitudes), with x_o over the bands present and ``bands`` their indices: fitted without the
    missing bands, their noise the configured depth (no errors given). Rows without a missing value are left out.

    Raises:
        ConfigError: naming the sheet row: x_o not one value per filter, or every band missing.
    """
    codes, sentinel = list(galaxy["filters"]), galaxy.get("missing_value")
    resolved = {}
    for name, obs in observations.items():
        if obs.x_o is None or obs.flux_njy is not None or obs.library_index is not None:
            continue
        missing = missing_mask(obs.x_o, sentinel)
        if not missing.any():
            continue
        where = f"{sheet} row {name!r} column x_o"
        if obs.x_o.size != len(codes):
            raise ConfigError(f"{where}: {obs.x_o.size} features for {len(codes)} filters ({', '.join(codes)}); give "
                              f"one per filter, nan for a missing band")
        if missing.all():
            raise ConfigError(f"{where}: every band is missing; give at least one feature")
        present = np.flatnonzero(~missing)
        resolved[name] = replace(obs, x_o=obs.x_o[present], bands=tuple(int(j) for j in present))
    return resolved


def observation_simulator_settings(settings: dict[str, Any], obs: Observation) -> dict[str, Any]:
    """A galaxy run's simulator settings for ``obs``: its own errors (sigma_njy, None where missing) and
    bands; for x_o given as features, its bands only when one is missing (:func:`feature_observations`);
    unchanged otherwise (library rows, complete feature rows)."""
    if obs.flux_err_njy is None:
        if obs.bands is None:
            return settings
        return {**settings, "bands": list(obs.bands)}
    specialised = dict(settings)
    specialised["sigma_njy"] = [None if not np.isfinite(e) else float(e) for e in obs.flux_err_njy]
    if obs.bands is not None:
        specialised["bands"] = list(obs.bands)
    return specialised
