"""Unit conversions and physical constants used by seqsbi, in one place.

numpy only: this module may be imported at Snakefile parse time, where importing astropy would cost
about 0.7 s. The constants are therefore written out here, each with its source; tests/test_conversions.py
checks them against astropy's. Every conversion is written so that it gives bit-for-bit the values the
code gave before it moved here (same constants, same order of floating-point operations).

Units: wavelengths in Angstrom, frequencies in Hz, flux densities in nJy (or erg/s/cm^2/Hz where named
``cgs``), distances in cm or Mpc, times in yr or Myr.
"""

from __future__ import annotations

import numpy as np

#: Speed of light in Angstrom/s. c = 299 792 458 m/s exactly (SI definition of the metre, 17th CGPM,
#: 1983) and 1 m = 1e10 Angstrom; the float is exactly 299792458.0 * 1e10 (astropy.constants.c.value * 1e10).
C_ANGSTROM_PER_S = 2.99792458e18

#: 1 Mpc in cm: 1 pc = 648000 / pi au (IAU 2015 Resolution B2) with 1 au = 149 597 870 700 m exactly
#: (IAU 2012 Resolution B2); the float equals astropy's ``(1 * u.Mpc).to(u.cm)``.
MPC_CM = 3.0856775814913673e24

#: 1 nJy in erg/s/cm^2/Hz: 1 Jy = 1e-23 erg/s/cm^2/Hz (definition of the jansky).
NJY_CGS = 1e-32

#: AB magnitude of a 1 nJy source. Oke & Gunn (1983, ApJ 266, 713) define m_AB = -2.5 log10(f_nu) - 48.60
#: with f_nu in erg/s/cm^2/Hz; with f_nu in nJy (x 1e-32) that is m_AB = 80 - 48.60 - 2.5 log10(f_nJy), so
#: the zero point is exactly 31.4 (the rounded 3631 Jy below gives 31.40007, 7e-5 mag brighter).
AB_MAG_OF_1_NJY = 31.4

#: The AB zero-point flux, 3631 Jy, in nJy: the conventional rounded value of 10^(-48.60 / 2.5)
#: erg/s/cm^2/Hz = 3630.78 Jy; used as the flux unit of asinh magnitudes (Lupton, Gunn & Szalay 1999).
AB_ZERO_POINT_NJY = 3.631e12

#: Pogson's ratio: 5 magnitudes are a factor 100 in flux, so m = -2.5 log10(f) + const.
POGSON = 2.5

#: Years in a megayear (1 Myr = 1e6 yr, SI prefix "mega").
YR_PER_MYR = 1e6

#: Angstrom per unit of a filter curve's wavelength column (1 nm = 10 A, 1 um = 1e4 A; SI prefixes).
WAVELENGTH_TO_ANGSTROM = {"angstrom": 1.0, "nm": 10.0, "um": 1e4}
#: Other spellings of those units, as unyt writes them (synthesizer's filter files: Wavelength_units).
WAVELENGTH_UNIT_SPELLINGS = {"Å": "angstrom", "Angstrom": "angstrom", "A": "angstrom", "μm": "um", "micron": "um"}


def angstrom_per(unit: str) -> float | None:
    """Angstrom per ``unit`` (a key of WAVELENGTH_TO_ANGSTROM or one of its spellings); None if unknown."""
    return WAVELENGTH_TO_ANGSTROM.get(WAVELENGTH_UNIT_SPELLINGS.get(unit, unit))


def njy_to_ab(flux_njy: np.ndarray) -> np.ndarray:
    """AB magnitudes from fluxes in nJy: m_AB = 31.4 - 2.5 log10(f / nJy) (Oke & Gunn 1983; see
    ``AB_MAG_OF_1_NJY``). Any shape; non-positive fluxes give nan or -inf as np.log10 does."""
    return AB_MAG_OF_1_NJY - POGSON * np.log10(flux_njy)


def ab_to_njy(magnitude_ab: np.ndarray) -> np.ndarray:
    """Fluxes in nJy from AB magnitudes: f = 10^((31.4 - m_AB) / 2.5); the inverse of :func:`njy_to_ab`.
    Any shape."""
    return 10 ** ((AB_MAG_OF_1_NJY - np.asarray(magnitude_ab, dtype=float)) / POGSON)


def njy_to_asinh_magnitude(flux_njy: np.ndarray, softening_njy: np.ndarray) -> np.ndarray:
    """Asinh magnitudes (Lupton, Gunn & Szalay 1999, AJ 118, 1406) from fluxes in nJy:
    m = -(2.5 / ln 10) [asinh((f / f0) / (2 b)) + ln b], with f0 = 3631 Jy and softening b = softening / f0.
    Close to AB magnitudes for f >> softening, linear in f near 0, finite for f <= 0. Shapes broadcast."""
    b = softening_njy / AB_ZERO_POINT_NJY
    return -POGSON / np.log(10) * (np.arcsinh(flux_njy / AB_ZERO_POINT_NJY / (2 * b)) + np.log(b))


def sigma_from_depth(depth_ab: np.ndarray, n_sigma: float = 5) -> np.ndarray:
    """1-sigma flux error in nJy of a point source whose ``n_sigma`` detection limit is ``depth_ab`` (AB mag):
    the flux at the depth divided by n_sigma. Any shape."""
    return ab_to_njy(depth_ab) / n_sigma


def cgs_to_njy(fnu_cgs: np.ndarray) -> np.ndarray:
    """Flux densities in nJy from erg/s/cm^2/Hz (1 nJy = 1e-32 erg/s/cm^2/Hz). Any shape."""
    return fnu_cgs / NJY_CGS


def angstrom_to_hz(wavelength_angstrom: np.ndarray) -> np.ndarray:
    """Frequencies in Hz from wavelengths in Angstrom: nu = c / lambda. Any shape."""
    return C_ANGSTROM_PER_S / wavelength_angstrom


def hz_to_angstrom(frequency_hz: np.ndarray) -> np.ndarray:
    """Wavelengths in Angstrom from frequencies in Hz: lambda = c / nu (the same formula as
    :func:`angstrom_to_hz`). Any shape."""
    return C_ANGSTROM_PER_S / frequency_hz


def flambda_to_fnu(flambda: np.ndarray, wavelength_angstrom: np.ndarray) -> np.ndarray:
    """Per-frequency from per-wavelength densities: F_nu = F_lambda lambda^2 / c, with lambda in Angstrom
    and F_lambda per Angstrom (so F_nu is per Hz in the same other units). Shapes broadcast, e.g.
    (..., n_lam) and (n_lam,)."""
    return flambda * wavelength_angstrom**2 / C_ANGSTROM_PER_S


def mpc_to_cm(distance_mpc: np.ndarray) -> np.ndarray:
    """Distances in cm from Mpc (see ``MPC_CM``). Any shape."""
    return distance_mpc * MPC_CM


#: Time units a library's fixed parameters may carry (synference writes e.g. ``min_age`` in 'yr'), in yr.
YR_PER_TIME_UNIT = {"yr": 1.0, "kyr": 1e3, "Myr": 1e6, "Gyr": 1e9}


def myr_to_yr(time_myr: np.ndarray) -> np.ndarray:
    """Times in yr from Myr (x 1e6). Any shape."""
    return time_myr * YR_PER_MYR
