"""Observations from a user catalogue: fluxes and errors per filter (nJy) -> x_o as features.

The catalogue is a CSV with an ``id`` column and, for every configured filter, a flux column named
by the filter code (``JWST/NIRCam.F070W``) or its band (``F070W``) plus ``<column>_err``; where two
configured filters share a band (``SLOAN/SDSS.g`` and ``CFHT/MegaCam.g``) only the full code names
their columns (a column ``g`` would be ambiguous and is refused). Its
fluxes become features the way simulations do, with the catalogue's own errors as the noise level
(seqsbi.simulators.galaxy.photometry). An empty or NaN flux, or ``galaxy.missing_value``, marks a band
missing for that galaxy. Other columns (``redshift``, ``redshift_err``, ...) are per-observation priors.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from seqsbi.errors import ConfigError
from seqsbi.observations import read_table
from seqsbi.simulators.galaxy.photometry import missing_mask, photometry_observations


def band_name(code: str) -> str:
    """The band of ``Facility/Instrument.Band``: the text after the last '.' (``F070W``, ``g``)."""
    return code.rsplit(".", 1)[-1]


def flux_column(code: str, columns: list[str], filter_codes: list[str], path: str) -> str | None:
    """The catalogue column holding ``code``'s flux (its ``_err`` column alongside): the full code,
    else the band name; None if neither pair is there. Raises ConfigError if the band-name column is
    the one found but another configured filter has the same band (it could be either's flux)."""
    if code in columns and f"{code}_err" in columns:
        return code
    band = band_name(code)
    if band in columns and f"{band}_err" in columns:
        sharing = [other for other in filter_codes if band_name(other) == band]
        if len(sharing) > 1:
            raise ConfigError(
                f"galaxy.catalogue: {path!r} column {band!r} is ambiguous: the configured filters {sharing} all have "
                f"band {band!r}; name these columns by the full filter code ({', '.join(sharing)} and their _err "
                f"columns)")
        return band
    return None


def _number(row, column: str, path: str, galaxy_id: str) -> float:
    """The catalogue value in ``column`` of ``row`` as a float; ConfigError naming file, id and column."""
    text = row[column]
    if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
        return float("nan")  # an empty cell: a missing value
    try:
        return float(str(text).strip())
    except ValueError:
        raise ConfigError(f"galaxy.catalogue: {path!r} id {galaxy_id!r} column {column!r}: {text!r} is not a number; "
                          f"give fluxes and errors in nJy") from None


def catalogue_observations(observations: dict, galaxy: dict) -> dict:
    """Observations with catalogue_id filled in with x_o; ConfigError names any bad value."""
    path = galaxy.get("catalogue")
    if path is None:
        raise ConfigError("galaxy.catalogue: observations name a catalogue_id but no catalogue is configured; "
                          "set galaxy.catalogue to a CSV of fluxes and errors")
    if not Path(path).is_file():
        raise ConfigError(f"galaxy.catalogue: {path!r} does not exist")
    table = read_table(Path(path), "galaxy.catalogue", dtype=str)
    columns = list(table.columns)
    if "id" not in columns:
        raise ConfigError(f"galaxy.catalogue: {path!r} has no 'id' column; found {columns}")
    flux_columns = {code: flux_column(code, columns, list(galaxy["filters"]), path) for code in galaxy["filters"]}
    missing = [code for code, column in flux_columns.items() if column is None]
    if missing:
        raise ConfigError(f"galaxy.catalogue: {path!r} has no flux and _err columns for {missing} "
                          f"({len(galaxy['filters']) - len(missing)} of the {len(galaxy['filters'])} configured "
                          f"filters found); columns: {columns}")
    ids = table["id"].fillna("").str.strip()
    if (ids == "").any():
        raise ConfigError(f"galaxy.catalogue: {path!r} data row {int((ids == '').to_numpy().argmax()) + 1} has an "
                          f"empty id; give every galaxy an id")
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise ConfigError(f"galaxy.catalogue: {path!r} has id(s) {repeated} on more than one row; ids must be unique")
    rows = table.assign(id=ids).set_index("id")
    sentinel = galaxy.get("missing_value")
    for code, column in flux_columns.items():
        text = rows[column].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        blank = (text == "") | (text.str.lower() == "nan")
        if len(values) >= 2 and (blank.to_numpy() | (missing_mask(values, sentinel) & ~np.isnan(values))).all():
            raise ConfigError(f"galaxy.catalogue: {path!r} column {column!r} ({code}) is missing (empty, nan"
                              f"{f' or {sentinel:g}' if sentinel is not None else ''}) in every row; drop {code} from "
                              f"galaxy.filters (and the library), or give its fluxes")
    used = set(flux_columns.values()) | {f"{c}_err" for c in flux_columns.values()} | {"id"}
    with_flux = {}
    for name, obs in observations.items():
        if obs.catalogue_id is None:
            continue
        if obs.catalogue_id not in rows.index:
            raise ConfigError(f"observation {name!r}: catalogue_id {obs.catalogue_id!r} is not in {path!r}")
        row = rows.loc[obs.catalogue_id]
        flux = np.array([_number(row, flux_columns[code], path, obs.catalogue_id) for code in galaxy["filters"]])
        error = np.array([_number(row, f"{flux_columns[code]}_err", path, obs.catalogue_id)
                          for code in galaxy["filters"]])
        extra = {c: str(row[c]).strip() for c in rows.columns
                 if c not in used and isinstance(row[c], str) and row[c].strip()}
        with_flux[name] = replace(obs, flux_njy=flux, flux_err_njy=error, columns={**extra, **obs.columns})
    return photometry_observations(with_flux, galaxy, path, check_every_row=False)
