"""Filters offline: astro-sedpy's curves under their SVO codes, top-hats, and user curve files.

synthesizer looks SVO filters up in ``$SYNTHESIZER_SVO_FILTER_CACHE/<code with / as _>.hdf5``
(datasets ``wavelength`` in Angstrom and ``transmission``, attribute ``svo_url``) before going
online, so writing those files lets ``FilterCollection(filter_codes=["HST/ACS_WFC.F606W", ...])``
work with no network. Where a curve comes from, in order of precedence:

1. ``galaxy.filter_files``: a two-column text file (wavelength, throughput) under a user-chosen code;
2. ``galaxy.tophat_filters``: a top-hat from ``lam_eff`` and ``lam_fwhm`` (Angstrom);
3. astro-sedpy's ``data/filters/*.par`` through the table ``sedpy_svo_codes.tsv``: every file under
   one code, its SVO code where one is verified, else ``sedpy/par.<file stem>`` (a namespace SVO
   does not use, e.g. ``sedpy/par.jwst_moda_f070w``; the table's note says why there is no SVO code).

Nothing here imports synthesizer, astropy or sedpy: it runs at Snakefile parse time.
"""

from __future__ import annotations

import atexit
import difflib
import importlib.util
import re
import shutil
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi import artifacts
from seqsbi.errors import ConfigError
from seqsbi.units import WAVELENGTH_TO_ANGSTROM

NIRCAM_WIDE = tuple(f"JWST/NIRCam.{band}" for band in
                    ("F070W", "F090W", "F115W", "F150W", "F200W", "F277W", "F356W", "F444W"))
SVO_URL = "https://svo2.cab.inta-csic.es/theory/fps/getdata.php?format=ascii&id={code}"
#: sedpy file name (no .par) -> its code (SVO code, or SEDPY_NAMESPACE + file name), with a note.
SEDPY_SVO_TABLE = Path(__file__).with_name("sedpy_svo_codes.tsv")
#: Codes of sedpy curves without a verified SVO code: ``sedpy/par.<file stem>``. Not an SVO facility;
#: the '.' keeps synthesizer's Facility/Instrument.Band form (its band is the file stem).
SEDPY_NAMESPACE = "sedpy/par."
#: SVO-style code: Facility/Instrument.Band (synthesizer splits it at '/' and the last '.').
CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*/[A-Za-z0-9][A-Za-z0-9_+-]*\.[A-Za-z0-9][A-Za-z0-9_+-]*")
#: Transmission above this fraction of its peak marks a filter's span (for the SPS grid coverage check).
SPAN_FRACTION = 0.01
DOCS = "config/README.md (section 'Filters'; full list: workflow/seqsbi/simulators/galaxy/sedpy_svo_codes.tsv)"


def sedpy_filter_dir() -> Path:
    # Found without importing sedpy (its import pulls in astropy: ~0.7 s at Snakefile parse time).
    spec = importlib.util.find_spec("sedpy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("astro-sedpy is not installed (pip install astro-sedpy); it ships the offline curves")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "filters"


@lru_cache(maxsize=1)
def sedpy_svo_table() -> tuple[tuple[str, str, str], ...]:
    """Rows (sedpy file stem, code, note) of ``sedpy_svo_codes.tsv``; code is the SVO code, or
    ``sedpy/par.<stem>`` (:func:`sedpy_code`) for a file without a verified SVO code."""
    rows = []
    for line in SEDPY_SVO_TABLE.read_text().splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("sedpy_file\t"):
            continue
        stem, code, note = (line.split("\t") + ["", ""])[:3]
        rows.append((stem, code, note))
    return tuple(rows)


def sedpy_code(stem: str) -> str:
    """The non-SVO code of sedpy's ``<stem>.par``: ``sedpy/par.<stem>``."""
    return SEDPY_NAMESPACE + stem


def is_svo_code(code: str) -> bool:
    """False for codes in the ``sedpy/par.`` namespace (sedpy curves without an SVO code)."""
    return not code.startswith(SEDPY_NAMESPACE)


def offline_filter_files() -> dict[str, Path]:
    """Code -> astro-sedpy curve file, for every row of ``sedpy_svo_codes.tsv`` (SVO codes and
    ``sedpy/par.<stem>`` codes alike)."""
    directory = sedpy_filter_dir()
    return {code: directory / f"{stem}.par" for stem, code, _ in sedpy_svo_table()}


def sedpy_curves_of_instrument(code: str) -> list[str]:
    """``sedpy/par.`` codes whose file name contains the instrument of ``code`` (``Subaru/MOIRCS.Ks``
    -> ``sedpy/par.subaru_moircs_H``, ...): where an SVO code has no verified sedpy curve, the curve
    may still be there under its file name."""
    if not CODE_PATTERN.fullmatch(code) or not is_svo_code(code):
        return []
    instrument = code.split("/", 1)[1].rsplit(".", 1)[0].lower()
    if len(instrument) < 3:
        return []
    return [sedpy_code(stem) for stem, other, _ in sedpy_svo_table()
            if not is_svo_code(other) and instrument in stem.lower()]


def filter_families(codes) -> dict[str, int]:
    """``Facility/Instrument`` -> number of codes, sorted by name (case-insensitive)."""
    return dict(sorted(Counter(code.rsplit(".", 1)[0] for code in codes).items(), key=lambda item: item[0].lower()))


def cache_key(code: str) -> str:
    """synthesizer's SVO-cache file stem for ``code`` (``/`` -> ``_``): ``HST_ACS_WFC.F606W``."""
    return code.replace("/", "_")


def curve_file_spec(value: str | dict[str, Any]) -> tuple[str, str]:
    """(path, wavelength unit) of a ``galaxy.filter_files`` entry: a path, or {path, wavelength_unit}."""
    if isinstance(value, str):
        return value, "angstrom"
    return value["path"], value.get("wavelength_unit", "angstrom")


def check_filter_codes(codes: list[str] | tuple[str, ...], key: str = "filters", tophat: dict | None = None,
                       filter_files: dict | None = None, stored: dict | None = None) -> None:
    """Raise ConfigError naming each code with no curve (offline sedpy, top-hat, curve file or one
    stored in the library: ``stored``), with close matches and the offline families."""
    available = set(offline_filter_files()) | set(tophat or {}) | set(filter_files or {}) | set(stored or {})
    unknown = [code for code in codes if code not in available]
    if not unknown:
        return
    lines = [f"{key}: no offline curve for {unknown}"]
    for code in unknown:
        if not CODE_PATTERN.fullmatch(code):
            lines.append(f"  {code!r} is not an SVO-style code Facility/Instrument.Band (e.g. HST/ACS_WFC.F606W)")
        close = difflib.get_close_matches(code, sorted(available), n=5, cutoff=0.6)
        lines.append(f"  {code!r}: close matches: {', '.join(close) if close else 'none'}")
        same = sedpy_curves_of_instrument(code)
        if same:
            lines.append(f"  {code!r}: astro-sedpy curves of this instrument without an SVO code: "
                         f"{', '.join(same[:8])}{' ...' if len(same) > 8 else ''}")
    offline = list(offline_filter_files())
    svo = [code for code in offline if is_svo_code(code)]
    families = ", ".join(f"{family} ({n})" for family, n in filter_families(svo).items())
    lines.append(f"offline (astro-sedpy) families: {families}; and {len(offline) - len(svo)} curves without an "
                 f"SVO code as {SEDPY_NAMESPACE}<file stem> (e.g. {sedpy_code('jwst_moda_f070w')})")
    lines.append(f"add any other curve with galaxy.filter_files {{CODE: path}} or galaxy.tophat_filters; see {DOCS}")
    raise ConfigError("\n".join(lines))


def read_sedpy_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength in Angstrom, throughput) from a sedpy .par file (columns 1 and 2; '#' comments);
    negative throughput (noise in some files) is clipped to 0."""
    table = np.loadtxt(path, comments="#", usecols=(0, 1))
    return table[:, 0], np.clip(table[:, 1], 0.0, None)


def read_curve_file(path: str | Path, wavelength_unit: str = "angstrom",
                    key: str = "galaxy.filter_files") -> tuple[np.ndarray, np.ndarray]:
    """A user curve file as (wavelength in Angstrom, throughput), both (n,), checked.

    Format (bagpipes/EAZY style): whitespace- or comma-separated columns, wavelength then throughput
    (further columns ignored), ``#`` comments and blank lines skipped; ``wavelength_unit`` one of
    angstrom, nm, um. Raises ConfigError naming ``key``, the file and line for: a missing file, a
    non-numeric or one-column row, fewer than 2 rows, wavelengths not strictly increasing or not
    positive, negative or non-finite throughput, zero area under the curve.
    """
    if wavelength_unit not in WAVELENGTH_TO_ANGSTROM:
        raise ConfigError(f"{key}: wavelength_unit {wavelength_unit!r} unknown; allowed: "
                          f"{', '.join(WAVELENGTH_TO_ANGSTROM)}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: curve file {str(path)!r} does not exist")
    rows, lines = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        where = f"{key}: {path}, line {number}"
        if len(text) < 2:
            raise ConfigError(f"{where}: {line.strip()!r} has one column; give wavelength and throughput")
        try:
            wavelength, throughput = float(text[0]), float(text[1])
        except ValueError:
            raise ConfigError(f"{where}: {line.strip()!r} is not two numbers (comment lines start with #)") from None
        if not (np.isfinite(wavelength) and np.isfinite(throughput)):
            raise ConfigError(f"{where}: {line.strip()!r} is not finite")
        if wavelength <= 0:
            raise ConfigError(f"{where}: wavelength {wavelength:g} must be positive")
        if throughput < 0:
            raise ConfigError(f"{where}: throughput {throughput:g} is negative; throughputs are >= 0")
        if rows and wavelength <= rows[-1][0]:
            raise ConfigError(f"{where}: wavelength {wavelength:g} does not increase (previous row "
                              f"{rows[-1][0]:g}, line {lines[-1]}); sort the rows by wavelength, without repeats")
        rows.append((wavelength, throughput))
        lines.append(number)
    if len(rows) < 2:
        raise ConfigError(f"{key}: {path} has {len(rows)} data row(s); a curve needs at least 2")
    table = np.asarray(rows, dtype=float)
    wavelength, throughput = table[:, 0] * WAVELENGTH_TO_ANGSTROM[wavelength_unit], table[:, 1]
    if not np.trapezoid(throughput, wavelength) > 0:
        raise ConfigError(f"{key}: {path}: the throughput is zero everywhere (lines {lines[0]}-{lines[-1]}); "
                          f"the area under the curve must be positive")
    return wavelength, throughput


def tophat_curve(lam_eff: float, lam_fwhm: float, n: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength in Angstrom, transmission): 1 within lam_eff +- lam_fwhm / 2, 0 just outside."""
    half = lam_fwhm / 2
    wavelength = np.linspace(lam_eff - 0.6 * lam_fwhm, lam_eff + 0.6 * lam_fwhm, n)
    return wavelength, (np.abs(wavelength - lam_eff) <= half).astype(float)


def filter_curve(code: str, tophat: dict | None = None,
                 filter_files: dict | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(wavelength in Angstrom, transmission, where it came from) for ``code``: its curve file, top-hat
    or astro-sedpy curve, in that order. Curves peaking above 1 (percent, effective areas) are scaled
    to peak 1 (synthesizer clips transmissions to [0, 1]; photometry does not depend on the scale).
    Raises ConfigError for an unknown code or a bad curve file."""
    if filter_files and code in filter_files:
        path, unit = curve_file_spec(filter_files[code])
        wavelength, transmission = read_curve_file(path, unit, key=f"galaxy.filter_files[{code!r}]")
        source = f"curve file {path} (wavelength in {unit}; config)"
    elif tophat and code in tophat:
        wavelength, transmission = tophat_curve(tophat[code]["lam_eff"], tophat[code]["lam_fwhm"])
        source = f"top-hat, lam_eff {tophat[code]['lam_eff']:g} A, lam_fwhm {tophat[code]['lam_fwhm']:g} A (config)"
    else:
        check_filter_codes([code], tophat=tophat, filter_files=filter_files)
        path = offline_filter_files()[code]
        wavelength, transmission = read_sedpy_curve(path)
        source = f"astro-sedpy {path.name}"
    peak = transmission.max()
    if peak > 1:
        transmission = transmission / peak
        source += f" (scaled by 1/{peak:.4g} to peak 1)"
    return wavelength, transmission, source


def curve_span(wavelength: np.ndarray, transmission: np.ndarray,
               fraction: float = SPAN_FRACTION) -> tuple[float, float]:
    """(lowest, highest) wavelength where the transmission exceeds ``fraction`` of its peak."""
    above = np.flatnonzero(transmission > fraction * transmission.max())
    return float(wavelength[above[0]]), float(wavelength[above[-1]])


def write_cache_file(code: str, wavelength: np.ndarray, transmission: np.ndarray, cache_dir: str | Path,
                     source: str = "") -> Path:
    """Write synthesizer's SVO-cache file for ``code`` (wavelength in Angstrom) into ``cache_dir``."""
    path = Path(cache_dir) / f"{cache_key(code)}.hdf5"
    import h5py

    with artifacts.atomic_path(path) as temporary, h5py.File(temporary, "w") as hf:
        hf.create_dataset("wavelength", data=wavelength).attrs["Units"] = "angstrom"
        hf.create_dataset("transmission", data=transmission)
        hf.attrs["svo_url"] = SVO_URL.format(code=code)
        hf.attrs["source"] = source
    return path


def write_svo_cache_file(code: str, cache_dir: str | Path, tophat: dict | None = None,
                         filter_files: dict | None = None) -> Path:
    """Write the SVO-cache file for ``code`` into ``cache_dir`` (its curve file, top-hat from
    ``tophat[code]`` = {lam_eff, lam_fwhm} in Angstrom, or sedpy's curve); return its path."""
    wavelength, transmission, source = filter_curve(code, tophat, filter_files)
    return write_cache_file(code, wavelength, transmission, cache_dir, source)


_CURVE_CACHES: list[str] = []


def curves_cache_dir(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A new temporary SVO-cache directory holding ``curves`` (code -> (wavelength in Angstrom,
    transmission)), removed when the process exits: a library's stored curves, used as they are."""
    directory = tempfile.mkdtemp(prefix="seqsbi-filters-")
    if not _CURVE_CACHES:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _CURVE_CACHES])
    _CURVE_CACHES.append(directory)
    for code, (wavelength, transmission) in curves.items():
        write_cache_file(code, wavelength, transmission, directory, "stored in the library's Model group")
    return Path(directory)
