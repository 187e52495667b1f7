"""seqsbi.units: known values, round trips, and the constants against astropy's."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from seqsbi import units


def test_ab_zero_point_known_values():
    assert units.njy_to_ab(3631e9) == pytest.approx(0.0, abs=1e-4)  # 3631 Jy is AB 0
    assert units.njy_to_ab(1.0) == 31.4  # Oke & Gunn: -2.5 log10(1e-32) - 48.60 exactly
    assert units.njy_to_ab(10.0) == pytest.approx(28.9, abs=1e-12)
    assert 2.5 * np.log10(units.AB_ZERO_POINT_NJY) == pytest.approx(units.AB_MAG_OF_1_NJY, abs=1e-4)
    assert units.ab_to_njy(0.0) == pytest.approx(3630.78e9, rel=1e-6)  # 10^(-48.6 / 2.5) erg/s/cm^2/Hz
    assert units.ab_to_njy(31.4) == 1.0


def test_ab_round_trips():
    flux = np.geomspace(1e-3, 1e13, 97).reshape(97, 1) * np.ones((1, 3))
    assert units.ab_to_njy(units.njy_to_ab(flux)) == pytest.approx(flux, rel=1e-12)
    magnitude = np.linspace(-5.0, 40.0, 91)
    assert units.njy_to_ab(units.ab_to_njy(magnitude)) == pytest.approx(magnitude, abs=1e-12)
    assert units.njy_to_ab(flux).shape == flux.shape


def test_asinh_magnitude():
    softening = np.array([10.0, 10.0, 10.0])
    flux = np.array([1e5, 0.0, -20.0])
    m = units.njy_to_asinh_magnitude(flux, softening)
    # Bright: the AB magnitude, up to the 6.6e-5 mag between 3631 Jy (asinh) and the exact 31.4 (AB).
    assert m[0] == pytest.approx(units.njy_to_ab(1e5), abs=1e-4)
    assert m[0] == pytest.approx(-2.5 * np.log10(1e5 / units.AB_ZERO_POINT_NJY), abs=1e-6)
    # Zero flux: -2.5 log10(b) with b = softening / 3631 Jy; negative flux stays finite and fainter.
    assert m[1] == pytest.approx(-2.5 * np.log10(10.0 / units.AB_ZERO_POINT_NJY), rel=1e-12)
    assert np.isfinite(m[2]) and m[2] > m[1]


def test_sigma_from_depth():
    # A source at the 5-sigma depth has flux 5 sigma: a depth of 31.4 AB is 1 nJy, so sigma = 0.2 nJy.
    assert units.sigma_from_depth(31.4) == pytest.approx(0.2, rel=1e-15)
    depths = np.array([27.0, 29.0])
    assert units.sigma_from_depth(depths, n_sigma=10) == pytest.approx(units.ab_to_njy(depths) / 10)
    # 2.5 mag deeper is 10x fainter.
    assert units.sigma_from_depth(29.0) / units.sigma_from_depth(31.5) == pytest.approx(10.0, rel=1e-12)


def test_speed_of_light_and_frequency():
    assert units.C_ANGSTROM_PER_S == 299792458 * 1e10  # exact: SI definition of the metre
    assert units.angstrom_to_hz(5000.0) == pytest.approx(5.99584916e14, rel=1e-12)
    wavelength = np.geomspace(100.0, 1e5, 50)
    assert units.hz_to_angstrom(units.angstrom_to_hz(wavelength)) == pytest.approx(wavelength, rel=1e-15)


def test_flambda_to_fnu():
    # F_lambda = 1 per Angstrom at 1e4 Angstrom: F_nu = 1e8 / c per Hz.
    assert units.flambda_to_fnu(np.ones(2), np.array([1e4, 1e4])) == pytest.approx(1e8 / 2.99792458e18)
    fnu = np.array([[1.0, 2.0, 3.0]])
    wave = np.array([1e3, 2e3, 4e3])
    assert units.flambda_to_fnu(fnu, wave).shape == (1, 3)


def test_other_conversions():
    assert units.myr_to_yr(np.array([1.0, 250.0])) == pytest.approx([1e6, 2.5e8], rel=0)
    assert units.cgs_to_njy(1e-23) == pytest.approx(1e9, rel=1e-15)  # 1 Jy
    assert units.mpc_to_cm(1.0) == units.MPC_CM


def test_constants_agree_with_astropy():
    from astropy import constants
    from astropy import units as u

    assert constants.c.to(u.m / u.s).value == 299792458.0
    assert units.C_ANGSTROM_PER_S == constants.c.to(u.m / u.s).value * 1e10
    assert units.C_ANGSTROM_PER_S == pytest.approx(constants.c.to(u.AA / u.s).value, rel=1e-15)  # astropy: 1 ulp off
    assert units.MPC_CM == (1 * u.Mpc).to(u.cm).value
    assert units.NJY_CGS == pytest.approx((1 * u.nJy).to(u.erg / u.s / u.cm**2 / u.Hz).value, rel=1e-15)
    assert units.AB_ZERO_POINT_NJY == pytest.approx((3631 * u.Jy).to(u.nJy).value, rel=1e-15)
    assert units.ab_to_njy(20.0) == pytest.approx((20.0 * u.ABmag).to(u.nJy).value, rel=1e-12)
    assert units.YR_PER_MYR == (1 * u.Myr).to(u.yr).value


def test_import_is_cheap():
    """units is imported at Snakefile parse time: it must not pull in astropy, unyt or synthesizer."""
    code = ("import sys; import seqsbi.units; "
            "print(sorted(m for m in ('astropy', 'unyt', 'synthesizer', 'torch', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT / "workflow")})
    assert result.stdout.strip() == "[]"
