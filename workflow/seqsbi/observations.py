"""Observations: the observation sheet (TSV) and the x_o each job rebuilds from its params.

Cheap (numpy, pandas): Snakemake reads the sheet at parse time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqsbi.artifacts import read_npz
from seqsbi.errors import ConfigError


@dataclass(frozen=True)
class Observation:
    """One observed data vector x_o (shape (k,)) and, when known, the true parameters (shape (d,)).

    A galaxy observation may instead name a model-library row (``library_index``): its x_o and
    theta_true are read from the library's feature array once the workflow has built it. A galaxy
    observation with its own photometry (a catalogue row, or a sheet row with ``x_err``) carries
    ``flux_njy`` and ``flux_err_njy`` (one per configured filter, NaN where a band is missing) until the
    galaxy block turns them into x_o (seqsbi.simulators.galaxy.photometry); ``bands`` are then the
    filters it has (None: all). ``columns``: the row's other non-empty columns (per-observation priors:
    ``<parameter>``, ``<parameter>_err``, ``<parameter>_low``, ``<parameter>_high``), as text.
    """

    name: str
    x_o: np.ndarray | None
    theta_true: np.ndarray | None = None
    library_index: int | None = None
    catalogue_id: str | None = None
    flux_njy: np.ndarray | None = None
    flux_err_njy: np.ndarray | None = None
    bands: tuple[int, ...] | None = None
    columns: dict[str, str] = field(default_factory=dict)

#: Sheet columns seqsbi reads itself; any other non-empty column is kept in Observation.columns.
SHEET_COLUMNS = ("observation", "x_o", "x_err", "library_index", "catalogue_id", "theta_true")


def _parse_vector(text: str, where: str, column: str, allow_nan: bool = False) -> np.ndarray:
    """Comma-separated finite numbers; with ``allow_nan``, ``nan`` (or an empty item) marks a missing value."""
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if allow_nan and item.lower() in ("", "nan"):
            values.append(math.nan)
            continue
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(
                f"{where} column {column}: {item!r} is not a number; give comma-separated numbers"
            ) from None
        if not math.isfinite(value):
            raise ConfigError(
                f"{where} column {column}: value {item!r} is not finite; observations must be finite numbers"
                + (" (nan marks a missing band in galaxy runs)" if allow_nan else "")
            )
        values.append(value)
    return np.asarray(values, dtype=float)


def _first_ragged_line(path: Path, sep: str) -> str | None:
    """'line N has M fields; the header has K' for the first line whose field count differs from the header's."""
    try:
        lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1)
                 if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError):
        return None
    if not lines:
        return None
    width = len(lines[0][1].split(sep))
    for number, line in lines[1:]:
        if len(line.split(sep)) > width:
            return f"line {number} has {len(line.split(sep))} fields; the header has {width}"
    return None


def read_table(path: Path, key: str, **options):
    """``pandas.read_csv(path, **options)``; ConfigError naming ``key``, the file and pandas' reason (a row with
    more fields than the header, no header, not text) instead of pandas' exception."""
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with more fields than the header is an error, never a silent index column
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, index_col=False, **options)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{key}: {str(path)!r} is empty; it needs a header row and one row per entry") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, ValueError) as error:
        reason = _first_ragged_line(path, options.get("sep", ",")) or " ".join(str(error).split())
        raise ConfigError(f"{key}: {str(path)!r} cannot be read as a table ({reason}); every row needs the header's "
                          f"columns, separated by {'tabs' if options.get('sep') == chr(9) else 'commas'}") from None
    mangled = [column for column in table.columns if str(column).startswith("Unnamed:")]
    duplicated = [column for column in table.columns
                  if "." in str(column) and str(column).rsplit(".", 1)[0] in table.columns
                  and str(column).rsplit(".", 1)[1].isdigit()]
    if mangled or duplicated:
        raise ConfigError(f"{key}: {str(path)!r} header {list(table.columns)} has "
                          f"{'empty' if mangled else 'repeated'} column name(s) {mangled or duplicated}; "
                          f"give every column one unique name")
    return table


def read_observations(path: str | Path) -> dict[str, Observation]:
    """Read the observation sheet: TSV with columns observation, x_o and optional theta_true.

    ``x_o`` and ``theta_true`` are comma-separated numbers; an empty theta_true means unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"observations: sheet {str(path)!r} does not exist; create it or point 'observations' at one")
    table = read_table(path, "observations", sep="\t", comment="#", dtype=str).fillna("")
    missing = {"observation"} - set(table.columns)
    if missing or not {"x_o", "library_index", "catalogue_id"} & set(table.columns):
        raise ConfigError(
            f"observations: sheet {str(path)!r} lacks column(s) {sorted(missing | {'x_o'})}; "
            f"required: observation, x_o (or library_index or catalogue_id; optional: theta_true); "
            f"found {list(table.columns)}"
        )
    observations: dict[str, Observation] = {}
    for _, row in table.iterrows():
        name = row["observation"].strip()
        where = f"{path} row {name!r}"
        if not name or not all(c.isalnum() or c in "_.-" for c in name):
            raise ConfigError(f"{path}: observation name {name!r} must be non-empty letters, digits, '_', '.', '-'")
        if name in observations:
            raise ConfigError(f"{path}: observation {name!r} appears twice; names must be unique")
        theta_text = row.get("theta_true", "").strip()
        theta = _parse_vector(theta_text, where, "theta_true") if theta_text else None
        index_text, x_text = row.get("library_index", "").strip(), row.get("x_o", "").strip()
        catalogue_text = row.get("catalogue_id", "").strip()
        err_text = row.get("x_err", "").strip()
        columns = {c: str(row[c]).strip() for c in table.columns if c not in SHEET_COLUMNS and str(row[c]).strip()}
        if err_text and not x_text:
            raise ConfigError(f"{where} column x_err: errors need x_o (fluxes in nJy) on the same row; library rows "
                              f"and catalogue rows bring their own")
        given = [column for column, text in (("x_o", x_text), ("library_index", index_text),
                                             ("catalogue_id", catalogue_text)) if text]
        if len(given) != 1:
            raise ConfigError(f"{where}: give exactly one of x_o, library_index and catalogue_id (got "
                              f"{', '.join(given) if given else 'none'})")
        if catalogue_text:
            observations[name] = Observation(name, None, theta, catalogue_id=catalogue_text, columns=columns)
        elif index_text:
            if not index_text.isdigit():
                raise ConfigError(f"{where} column library_index: {index_text!r} is not a row number (0, 1, ...)")
            observations[name] = Observation(name, None, theta, int(index_text), columns=columns)
        elif err_text:
            flux = _parse_vector(x_text, where, "x_o", allow_nan=True)
            error = _parse_vector(err_text, where, "x_err", allow_nan=True)
            if flux.shape != error.shape:
                raise ConfigError(f"{where}: x_o has {flux.size} values but x_err {error.size}; give one flux and one "
                                  f"1-sigma error (nJy) per filter")
            observations[name] = Observation(name, None, theta, flux_njy=flux, flux_err_njy=error, columns=columns)
        else:  # features; nan marks a band missing for galaxy runs (seqsbi.simulators.galaxy.photometry)
            observations[name] = Observation(name, _parse_vector(x_text, where, "x_o", allow_nan=True), theta,
                                             columns=columns)
    if not observations:
        raise ConfigError(f"observations: sheet {str(path)!r} has no rows")
    return observations


def observation_from_params(params: dict, features_path: str | Path | None = None) -> Observation:
    """Rebuild an :class:`Observation` inside a job from its params (see common.smk), reading a
    library row's x_o and theta_true from the features file when the observation names one.
    ``inferred``: indices of the parameters inferred (the others fixed): theta_true keeps only those."""
    observation = _observation_from_params(params, features_path)
    keep = params.get("inferred")
    if keep is None or observation.theta_true is None or observation.theta_true.size != params.get("n_parameters"):
        return observation
    return Observation(observation.name, observation.x_o, observation.theta_true[np.asarray(keep, dtype=int)],
                       observation.library_index)


def _observation_from_params(params: dict, features_path: str | Path | None = None) -> Observation:
    if params.get("library_index") is not None:
        if features_path is None:
            raise ConfigError(f"observation {params['name']!r} names library row {params['library_index']} "
                             f"but the job got no features file")
        data, index = read_npz(features_path, required=("x", "theta")), int(params["library_index"])
        if not 0 <= index < len(data["x"]):
            raise ConfigError(f"observation {params['name']!r}: library_index {index} is outside the features file "
                              f"{str(features_path)!r} ({len(data['x'])} rows); delete it and rerun to rebuild it")
        return Observation(params["name"], data["x"][index], data["theta"][index], index)
    theta = params.get("theta_true")
    return Observation(params["name"], np.asarray(params["x_o"], dtype=float),
                       None if theta is None else np.asarray(theta, dtype=float))
