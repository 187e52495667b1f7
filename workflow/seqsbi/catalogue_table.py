"""Catalogues of observed galaxies in, posterior samples and summary tables out.

A catalogue is any table astropy.table reads (FITS, ECSV, CSV; the format from the file name): an id
column and, per filter, a flux column named by the filter code (``JWST/NIRCam.F070W``) or its band
(``F070W``) with its error in ``<column>_err``. Fluxes and errors are in each column's unit when the
table gives one (FITS TUNIT, ECSV unit), else nJy; anything that converts to nJy (Jy, uJy, erg/s/cm^2/Hz,
AB mag for fluxes) is converted with astropy.units. Every check runs on whole columns before any work, and
each failure names the file, the column, the first bad row and the fix.

Outputs: an HDF5 file of samples (n_galaxies, n_samples, n_parameters) with ids, parameter names and units,
and a summary table (FITS and CSV) with per-galaxy, per-parameter median, 16/84 and 2.5/97.5 percentiles,
flags and the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqsbi import artifacts
from seqsbi.errors import ConfigError
from seqsbi.simulators.galaxy.catalogue import flux_column

#: Percentiles in the summary table: column suffix -> percentile.
PERCENTILES = {"p2_5": 2.5, "p16": 16.0, "median": 50.0, "p84": 84.0, "p97_5": 97.5}
ERROR_SUFFIX = "_err"
#: The summary table's ``method`` for a galaxy with bands missing that the estimator cannot take (flag missing_bands: no
#: band masks, or more than their max_bands): no amortized posterior.
MISSING_BANDS_METHOD = "none: bands missing (more than the amortized estimator takes)"


@dataclass(frozen=True)
class Catalogue:
    """ids (n,) as str; flux and error (n, n_filters) in nJy, in the order of ``filters``."""

    path: str
    ids: np.ndarray
    filters: tuple[str, ...]
    flux_njy: np.ndarray
    error_njy: np.ndarray


def _read_table(path: Path, key: str):
    from astropy.table import Table

    if not path.is_file():
        raise ConfigError(f"{key}: {str(path)!r} does not exist; give the path of a FITS, ECSV or CSV catalogue")
    suffix = "".join(path.suffixes[-2:]).lower()
    fmt = "ascii.csv" if suffix.endswith(".csv") else "ascii.ecsv" if suffix.endswith(".ecsv") else None
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as error:  # astropy raises many types for unreadable files
        raise ConfigError(f"{key}: {str(path)!r} cannot be read as a table ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:300]}); give a FITS (.fits), ECSV (.ecsv) or CSV (.csv) "
                          f"file with an id column and a flux and {ERROR_SUFFIX} column per filter") from None


def _column_njy(table, column: str, path: str, key: str, ids: np.ndarray, convert: bool = True) -> np.ndarray:
    """One column as float nJy (n,), masked entries as NaN (``convert`` False: in the column's own unit, to
    compare with galaxy.missing_value); ConfigError naming the first non-number or a unit that does not
    convert."""
    import astropy.units as u

    data = table[column]
    values = np.ma.filled(np.ma.asarray(data).astype(float), np.nan) if data.dtype.kind in "fiu" else None
    if values is None:
        text = np.ma.filled(np.ma.asarray(data), "").astype(str)
        parsed = np.array([_to_float(item) for item in text])
        bad = np.flatnonzero(np.isnan(parsed) & ~np.isin(np.char.lower(np.char.strip(text)), ["nan", ""]))
        if len(bad):
            raise ConfigError(f"{key}: {path!r} column {column!r} row {bad[0] + 1} (id {str(ids[bad[0]])!r}): "
                              f"{str(text[bad[0]])!r} is not a number ({len(bad)} such row(s)); give numbers only")
        values = parsed
    values = np.asarray(values, dtype=float)
    unit = data.unit
    if unit is None or str(unit) == "" or not convert:
        return values
    try:
        if isinstance(unit, u.UnrecognizedUnit):
            raise u.UnitConversionError(f"unit {str(unit)!r} is not one astropy knows")
        if isinstance(unit, u.MagUnit) and column.endswith(ERROR_SUFFIX):
            raise u.UnitConversionError("a magnitude error is not a magnitude: it converts to a flux error only "
                                        "with its flux; give the error as a flux density")
        return (values * unit).to_value(u.nJy) if not isinstance(unit, u.MagUnit) else \
            u.Magnitude(values, unit).to_value(u.nJy)
    except (u.UnitsError, ValueError, TypeError) as error:
        raise ConfigError(f"{key}: {path!r} column {column!r} has unit {str(unit)!r}, which does not convert to nJy "
                          f"({error}); give fluxes and errors as flux densities (nJy, uJy, Jy, erg/s/cm^2/Hz) or "
                          f"drop the unit (then nJy is assumed)") from None


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def read_catalogue(path: str | Path, filters: list[str] | tuple[str, ...], id_column: str = "id",
                   key: str = "catalogue", missing_value: float | None = None) -> Catalogue:
    """Read and check a catalogue; fluxes and errors per filter in nJy.

    A flux that is empty, masked, NaN or ``missing_value`` (``galaxy.missing_value``, e.g. synference's 99)
    marks that band missing for that galaxy: its flux and error become NaN (whatever the error column holds).

    Raises:
        ConfigError: naming ``key``, the file, and the column and first bad row: no id column, missing
            flux/error columns for a filter, empty or repeated ids, values that are not numbers, infinite
            fluxes, errors that are not positive and finite where the flux is given, a filter missing in every
            row, a row with every band missing, units that do not convert to nJy.
    """
    path = Path(path)
    table = _read_table(path, key)
    columns = list(table.colnames)
    name = str(path)
    if id_column not in columns:
        raise ConfigError(f"{key}: {name!r} has no id column {id_column!r}; columns: {columns}; add one or set "
                          f"id_column")
    if len(table) == 0:
        raise ConfigError(f"{key}: {name!r} has no rows; give one row per galaxy")
    ids = np.char.strip(np.ma.filled(np.ma.asarray(table[id_column]), "").astype(str))
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise ConfigError(f"{key}: {name!r} column {id_column!r} row {empty[0] + 1} is empty; give every galaxy an id")
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        rows = np.flatnonzero(ids == repeated[0]) + 1
        raise ConfigError(f"{key}: {name!r} column {id_column!r}: id {str(repeated[0])!r} on rows {rows.tolist()} "
                          f"({len(repeated)} repeated id(s) in all); ids must be unique")
    flux_columns = {code: flux_column(code, columns, list(filters), name) for code in filters}
    missing = [code for code, column in flux_columns.items() if column is None]
    if missing:
        found = len(filters) - len(missing)
        raise ConfigError(f"{key}: {name!r} has no flux and {ERROR_SUFFIX} columns for {missing} ({found} "
                          f"of {len(filters)} filters found); name them by the filter code or band (e.g. "
                          f"{missing[0].rsplit('.', 1)[-1]} and {missing[0].rsplit('.', 1)[-1]}{ERROR_SUFFIX}); "
                          f"columns: {columns}")
    from seqsbi.simulators.galaxy.photometry import missing_mask

    raw = np.stack([_column_njy(table, flux_columns[c], name, key, ids, convert=False) for c in filters], axis=1)
    missing = missing_mask(raw, missing_value)
    flux = np.stack([_column_njy(table, flux_columns[c], name, key, ids) for c in filters], axis=1)
    error = np.stack([_column_njy(table, flux_columns[c] + ERROR_SUFFIX, name, key, ids) for c in filters], axis=1)
    marked = "empty, masked or nan" + ("" if missing_value is None else f" or {missing_value:g}")
    everywhere = np.flatnonzero(missing.all(axis=0))
    if len(everywhere):
        code = filters[everywhere[0]]
        raise ConfigError(f"{key}: {name!r} column {flux_columns[code]!r} ({code}) is missing ({marked}) in every "
                          f"row; drop {code} from galaxy.filters (and the library), or give its fluxes")
    empty = np.flatnonzero(missing.all(axis=1))
    if len(empty):
        raise ConfigError(f"{key}: {name!r} row {empty[0] + 1} (id {str(ids[empty[0]])!r}) has every band missing "
                          f"({marked}; {len(empty)} such row(s)); drop it from the catalogue")
    flux[missing], error[missing] = np.nan, np.nan
    for values, what, bad_mask, fix in (
        (flux, "flux", ~missing & ~np.isfinite(flux), "give a finite flux (a measured, possibly negative, value), "
                                                      "or leave it empty to mark the band missing"),
        (error, "error", ~missing & ~(np.isfinite(error) & (error > 0)),
         "give a positive, finite flux error where the flux is given"),
    ):
        if bad_mask.any():
            row, band = np.argwhere(bad_mask)[0]
            column = flux_columns[filters[band]] + ("" if what == "flux" else ERROR_SUFFIX)
            raise ConfigError(f"{key}: {name!r} column {column!r} row {row + 1} (id {str(ids[row])!r}): {what} "
                              f"{float(values[row, band])!r} nJy ({int(bad_mask.sum())} such value(s)); {fix}")
    return Catalogue(name, ids, tuple(filters), flux, error)


def catalogue_features(catalogue: Catalogue, galaxy: dict) -> np.ndarray:
    """x (n, n_filters): the catalogue's fluxes as ``galaxy.features`` (kind, flux scale), its errors the
    noise level (as :func:`seqsbi.simulators.galaxy.features.to_features` treats simulations)."""
    from seqsbi.simulators.galaxy.features import to_features
    from seqsbi.simulators.galaxy.photometry import flux_scale

    return to_features(catalogue.flux_njy, galaxy["features"]["kind"], catalogue.error_njy,
                       flux_scale_njy=flux_scale(galaxy))


# --- outputs --------------------------------------------------------------------------------------------------


def summary_table(ids: np.ndarray, samples: np.ndarray, names: tuple[str, ...], units: tuple[str, ...],
                  method: str, flag_columns: dict[str, np.ndarray], flags: np.ndarray):
    """astropy Table: id; per parameter ``<name>_<p2_5|p16|median|p84|p97_5>`` (n,); the flag columns
    (values and booleans, as given); ``flags`` (comma-separated names of raised flags, "" for none) and
    ``method``. Parameter names and units go to ``meta`` (PARAMS, UNITS) and the column descriptions (the units
are not astropy units)."""
    from astropy.table import Table

    table = Table()
    table["id"] = np.asarray(ids).astype(str)
    with np.errstate(invalid="ignore"):
        quantiles = np.nanpercentile(samples, list(PERCENTILES.values()), axis=1) if samples.size else \
            np.empty((len(PERCENTILES), len(ids), len(names)))
    for j, (name, unit) in enumerate(zip(names, units)):
        for i, suffix in enumerate(PERCENTILES):
            table[f"{name}_{suffix}"] = quantiles[i, :, j].astype(float)
            table[f"{name}_{suffix}"].description = f"{PERCENTILES[suffix]:g}th percentile of {name}" + (
                f" [{unit}]" if unit else "")
    for column, values in flag_columns.items():
        table[column] = values
    table["flags"] = np.asarray(flags).astype(str)
    table["method"] = np.full(len(ids), method)
    table.meta["PARAMS"] = ",".join(names)
    table.meta["UNITS"] = ",".join(units)
    return table


def write_table(table, path: str | Path) -> None:
    """Write an astropy table atomically; the format from the suffix (.fits or .csv)."""
    path = Path(path)
    fmt = "fits" if path.suffix == ".fits" else "ascii.csv"
    with artifacts.atomic_path(path) as temporary:
        table.write(temporary, format=fmt, overwrite=True)


def write_samples(path: str | Path, ids: np.ndarray, samples: np.ndarray, names: tuple[str, ...],
                  units: tuple[str, ...], method: str, x: np.ndarray | None = None) -> None:
    """HDF5 (atomically): ``samples`` (n_galaxies, n_samples, n_parameters) float32 with attributes
    ``parameter_names``, ``parameter_units`` and ``method``; ``ids`` (n_galaxies,) strings; ``x`` the features."""
    write_samples_in_parts(path, [(ids, samples, x)], names, units, method)


def write_samples_in_parts(path: str | Path, parts, names: tuple[str, ...], units: tuple[str, ...],
                           method: str) -> None:
    """:func:`write_samples` from consecutive parts, an iterable of (ids (m,), samples (m, S, d), x (m, k) or
    None): one part in memory at a time (a 10^5-galaxy catalogue's samples are gigabytes)."""
    import h5py

    with artifacts.atomic_path(path) as temporary, h5py.File(temporary, "w") as hf:
        for ids, samples, x in parts:
            samples = np.asarray(samples, dtype=np.float32)
            if "samples" not in hf:
                dataset = hf.create_dataset("samples", shape=(0, *samples.shape[1:]), dtype=np.float32,
                                            maxshape=(None, *samples.shape[1:]), chunks=(1, *samples.shape[1:]))
                dataset.attrs["parameter_names"] = list(names)
                dataset.attrs["parameter_units"] = list(units)
                dataset.attrs["dimensions"] = "galaxy, sample, parameter"
                hf.create_dataset("ids", shape=(0,), dtype=h5py.string_dtype(), maxshape=(None,))
                if x is not None:
                    hf.create_dataset("x", shape=(0, x.shape[1]), dtype=float, maxshape=(None, x.shape[1]))
            start = hf["samples"].shape[0]
            for key, values in (("samples", samples), ("ids", np.asarray(ids).astype(str).astype(object)),
                                ("x", x)):
                if values is not None:
                    hf[key].resize(start + len(values), axis=0)
                    hf[key][start:] = values
        hf.attrs["method"] = method
        hf.attrs["parameter_names"] = list(names)
        hf.attrs["parameter_units"] = list(units)
