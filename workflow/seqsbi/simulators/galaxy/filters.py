"""Filters offline: real JWST/NIRCam curves from astro-sedpy exposed under their SVO codes.

synthesizer looks SVO filters up in ``$SYNTHESIZER_SVO_FILTER_CACHE/<code with / as _>.hdf5``
(datasets ``wavelength`` in Angstrom and ``transmission``, attribute ``svo_url``) before going
online, so writing those files lets ``FilterCollection(filter_codes=["JWST/NIRCam.F070W", ...])``
work with no network. The curves are sedpy's post-flight ``jwst_f*.par`` (nrc_plus_ote throughput).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

from seqsbi import artifacts
from seqsbi.errors import ConfigError

NIRCAM_WIDE = tuple(f"JWST/NIRCam.{band}" for band in
                    ("F070W", "F090W", "F115W", "F150W", "F200W", "F277W", "F356W", "F444W"))
SVO_URL = "https://svo2.cab.inta.csic.es/theory/fps/getdata.php?format=ascii&id={code}"
_NIRCAM_MAX_BAND = 500  # sedpy's jwst_f*.par files above F480M are MIRI bands


def sedpy_filter_dir() -> Path:
    # Found without importing sedpy (its import pulls in astropy: ~0.7 s at Snakefile parse time).
    spec = importlib.util.find_spec("sedpy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("astro-sedpy is not installed (pip install astro-sedpy); it ships the NIRCam curves")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "filters"


def offline_filter_files() -> dict[str, Path]:
    """SVO code -> sedpy curve file, for every NIRCam band shipped with astro-sedpy."""
    codes = {}
    for path in sorted(sedpy_filter_dir().glob("jwst_f*.par")):
        match = re.fullmatch(r"jwst_f(\d+)([a-z]\d?)", path.stem)
        if match and int(match.group(1)) < _NIRCAM_MAX_BAND:
            codes[f"JWST/NIRCam.F{match.group(1)}{match.group(2).upper()}"] = path
    return codes


def check_filter_codes(codes: list[str] | tuple[str, ...], key: str = "filters", tophat: dict | None = None) -> None:
    """Raise ConfigError naming the unknown codes and listing those available offline."""
    available = offline_filter_files()
    unknown = [code for code in codes if code not in available and code not in (tophat or {})]
    if unknown:
        raise ConfigError(f"{key}: no offline curve for {unknown}; available offline: {', '.join(available)} "
                          f"(or give a top-hat filter with lam_eff and lam_fwhm)")


def read_sedpy_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength in Angstrom, throughput) from a sedpy .par file (columns 1 and 2; '#' comments)."""
    table = np.loadtxt(path, comments="#", usecols=(0, 1))
    return table[:, 0], np.clip(table[:, 1], 0.0, None)


def tophat_curve(lam_eff: float, lam_fwhm: float, n: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength in Angstrom, transmission): 1 within lam_eff +- lam_fwhm / 2, 0 just outside."""
    half = lam_fwhm / 2
    wavelength = np.linspace(lam_eff - 0.6 * lam_fwhm, lam_eff + 0.6 * lam_fwhm, n)
    return wavelength, (np.abs(wavelength - lam_eff) <= half).astype(float)


def write_svo_cache_file(code: str, cache_dir: str | Path, tophat: dict | None = None) -> Path:
    """Write the SVO-cache file for ``code`` into ``cache_dir`` (sedpy's curve, or a top-hat from
    ``tophat[code]`` = {lam_eff, lam_fwhm} in Angstrom); return its path."""
    check_filter_codes([code], tophat=tophat)
    curves = offline_filter_files()
    if tophat and code in tophat:
        wavelength, transmission = tophat_curve(tophat[code]["lam_eff"], tophat[code]["lam_fwhm"])
        source = f"top-hat, lam_eff {tophat[code]['lam_eff']:g} A, lam_fwhm {tophat[code]['lam_fwhm']:g} A (config)"
    else:
        wavelength, transmission = read_sedpy_curve(curves[code])
        source = f"astro-sedpy {curves[code].name} (JWST post-flight, nrc_plus_ote)"
    path = Path(cache_dir) / f"{code.replace('/', '_')}.hdf5"
    import h5py

    with artifacts.atomic_path(path) as temporary, h5py.File(temporary, "w") as hf:
        hf.create_dataset("wavelength", data=wavelength).attrs["Units"] = "angstrom"
        hf.create_dataset("transmission", data=transmission)
        hf.attrs["svo_url"] = SVO_URL.format(code=code)
        hf.attrs["source"] = source
    return path

