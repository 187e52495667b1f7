"""Any instrument's filters offline: sedpy's curves by SVO code, curve files, and curves stored in libraries."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from conftest import galaxy_test_model, tiny_run, write_workdir
from seqsbi.config import plan_workflow
from seqsbi.errors import ConfigError
from seqsbi.simulators.galaxy import configure_synthesizer, filters
from seqsbi.simulators.galaxy.library import ab_magnitudes, read_library, write_library
from seqsbi.simulators.galaxy.model import PARAMETERS, ReferenceGalaxySimulator, build_simulator
from seqsbi.units import C_ANGSTROM_PER_S

MIXED = ("HST/WFC3_UVIS1.F275W", "CTIO/DECam.u", "HST/ACS_WFC.F606W", "Paranal/VISTA.Ks", "JWST/NIRCam.F150W",
         "sedpy/par.jwst_modb_f277w", "JWST/NIRCam.F444W", "Spitzer/IRAC.I1", "Spitzer/IRAC.I4")


# -- the sedpy -> SVO table ------------------------------------------------------------------------

def test_every_sedpy_curve_resolves_under_exactly_one_code():
    """Every .par file sedpy ships has one row and one code: its SVO code, or sedpy/par.<stem> with a note
    saying why there is no SVO code; the codes are unique and well formed, and each resolves to its file."""
    rows = filters.sedpy_svo_table()
    stems = [stem for stem, _, _ in rows]
    shipped = sorted(path.stem for path in filters.sedpy_filter_dir().glob("*.par"))
    assert sorted(stems) == shipped and len(stems) == len(set(stems))
    codes = [code for _, code, _ in rows]
    assert len(codes) == len(set(codes)) and "-" not in codes
    offline = filters.offline_filter_files()
    assert sorted(offline.values()) == sorted(filters.sedpy_filter_dir() / f"{stem}.par" for stem in shipped)
    for stem, code, note in rows:
        assert filters.CODE_PATTERN.fullmatch(code), code
        assert offline[code] == filters.sedpy_filter_dir() / f"{stem}.par"
        if not filters.is_svo_code(code):
            assert code == filters.sedpy_code(stem) == f"sedpy/par.{stem}" and note.startswith("no SVO code: "), stem
        assert not code.lower().startswith("sedpy") or not filters.is_svo_code(code), code
    table = dict((stem, code) for stem, code, _ in rows)
    assert table["acs_wfc_f606w"] == "HST/ACS_WFC.F606W" and table["vista_vircam_Ks"] == "Paranal/VISTA.Ks"
    assert table["spitzer_irac_ch1"] == "Spitzer/IRAC.I1" and table["jwst_f770w"] == "JWST/MIRI.F770W"
    assert table["jwst_f070w"] == "JWST/NIRCam.F070W" and table["jwst_niriss_f090w"] == "JWST/NIRISS.F090W"
    assert table["jwst_moda_f070w"] == "sedpy/par.jwst_moda_f070w" and table["bass_r"] == "BOK/BASS.r"


#: Band centres (Angstrom) of SVO bands whose names carry no wavelength: IRAC and WISE channels, GALEX,
#: Swift UVOT (Poole et al. 2008), Herschel PACS/SPIRE, SOFIA HAWC+, Stromgren, Gaia and Hipparcos.
NAMED_CENTRES = {
    "IRAC.I1": 3.55e4, "IRAC.I2": 4.49e4, "IRAC.I3": 5.73e4, "IRAC.I4": 7.87e4, "WISE.W1": 3.4e4, "WISE.W2": 4.6e4,
    "WISE.W3": 1.2e5, "WISE.W4": 2.2e5, "GALEX.FUV": 1530, "GALEX.NUV": 2300, "UVOT.UVW2": 2030, "UVOT.UVM2": 2231,
    "UVOT.UVW1": 2634, "Pacs.blue": 7e5, "Pacs.green": 1e6, "Pacs.red": 1.6e6, "SPIRE.PSW": 2.5e6,
    "SPIRE.PMW": 3.5e6, "SPIRE.PLW": 5e6, "HAWC.A": 5.3e5, "HAWC.B": 6.3e5, "HAWC.C": 8.9e5, "HAWC.D": 1.54e6,
    "HAWC.E": 2.14e6, "Stromgren.u": 3500, "Stromgren.v": 4110, "Stromgren.b": 4670, "Stromgren.y": 5470,
    "GAIA3.G": 6200, "GAIA3.Gbp": 5100, "GAIA3.Grp": 7800, "GAIA2r.G": 6200, "GAIA2r.Gbp": 5100,
    "GAIA2r.Grp": 7800, "Hipparcos.Hp_bes": 5300,
}
#: Pivot-wavelength ranges (Angstrom) of the broad letter bands, across photometric systems.
LETTER_BANDS = {"u": (3000, 4000), "U": (3000, 4000), "B": (4000, 4800), "g": (4000, 5200), "V": (5000, 5800),
                "r": (5800, 7000), "R": (5800, 7000), "i": (7000, 8500), "I": (7000, 8500), "z": (8400, 9500),
                "Z": (8400, 9500), "y": (9500, 10800), "Y": (9500, 10800), "J": (11500, 13500), "H": (15000, 17500),
                "K": (20000, 23000), "Ks": (20000, 23000)}


def _nominal_range(code: str) -> tuple[float, float]:
    """Where the code says its band is (Angstrom): the number in F606W (nm; JWST, Roman, HST IR: 10 nm),
    IB427 (nm) or 24mu (um) +- 12 %, a published band centre +- 12 %, or a letter band's range."""
    facility, rest = code.split("/")
    instrument, band = rest.rsplit(".", 1)
    band = band.removesuffix("_filter").removesuffix("_bes")
    number = re.fullmatch(r"(?:F|IB)(\d+)[A-Z0-9]*|(\d+)mu", band)
    if number and number.group(2):
        centre = float(number.group(2)) * 1e4
    elif number:
        value = float(number.group(1))  # HST: F098M-F160W in 10 nm (WFC3 IR), F225W-F850LP in nm
        centre = value * (100 if facility in ("JWST", "Roman") or (facility == "HST" and value < 200) else 10)
    elif f"{instrument}.{band}" in NAMED_CENTRES or f"{instrument}.{band}_bes" in NAMED_CENTRES:
        centre = NAMED_CENTRES.get(f"{instrument}.{band}", NAMED_CENTRES.get(f"{instrument}.{band}_bes"))
    else:
        return LETTER_BANDS[band]
    return centre / 1.12, centre * 1.12


def test_svo_coded_curves_sit_where_their_code_says():
    """Each SVO-coded curve's pivot wavelength (of its core, transmission above 10 % of peak, so that the
    far-red leaks of the filter-only VISTA curves do not count) lies where its code's band is: catches a
    curve filed under the wrong band (sedpy's bass_r.par says 'g' in its header; its curve is r)."""
    misplaced = {}
    for code, path in filters.offline_filter_files().items():
        if not filters.is_svo_code(code):
            continue
        wavelength, throughput = filters.read_sedpy_curve(path)
        core = np.where(throughput > 0.1 * throughput.max(), throughput, 0.0)
        pivot = np.sqrt(np.trapezoid(core * wavelength, wavelength) / np.trapezoid(core / wavelength, wavelength))
        low, high = _nominal_range(code)
        if not low <= pivot <= high:
            misplaced[code] = (round(pivot), round(low), round(high))
    assert not misplaced


def test_every_mapped_curve_reads_as_a_valid_curve():
    for code in filters.offline_filter_files():
        wavelength, transmission, _ = filters.filter_curve(code)
        assert np.all(np.diff(wavelength) > 0) and transmission.min() >= 0 and transmission.max() <= 1, code
        assert np.trapezoid(transmission, wavelength) > 0, code


def test_nircam_curves_are_unchanged(tmp_path):
    """The table gives the NIRCam codes exactly the files and arrays the old jwst_f*.par rule gave."""
    import h5py

    for code in filters.NIRCAM_WIDE:
        band = code.rsplit(".", 1)[1].lower()
        path = filters.sedpy_filter_dir() / f"jwst_{band}.par"
        assert filters.offline_filter_files()[code] == path
        table = np.loadtxt(path, comments="#", usecols=(0, 1))
        with h5py.File(filters.write_svo_cache_file(code, tmp_path), "r") as hf:
            assert np.array_equal(hf["wavelength"][:], table[:, 0])
            assert np.array_equal(hf["transmission"][:], np.clip(table[:, 1], 0.0, None))


# -- photometry against a direct integration --------------------------------------------------------

def _direct_mean_fnu(wavelength: np.ndarray, throughput: np.ndarray, fnu) -> float:
    """Photon-counting band average <f_nu> = int f_nu T dlam / lam / int T dlam / lam on 400k points."""
    lam = np.geomspace(wavelength[0], wavelength[-1], 400_001)
    weight = np.interp(lam, wavelength, throughput) / lam
    return float(np.trapezoid(fnu(lam) * weight, lam) / np.trapezoid(weight, lam))


SPECTRA = {
    "power law f_nu ~ nu^-1.5": lambda lam: (C_ANGSTROM_PER_S / lam / 1e15) ** -1.5,
    "blackbody 6000 K": lambda lam: (C_ANGSTROM_PER_S / lam) ** 3 / np.expm1(1.4387769e8 / (lam * 6000.0)),
}


@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_photometry_through_sedpy_and_file_curves_matches_direct_integration(tmp_path, spectrum):
    """synthesizer's integration (both backends use it) through the curves we give it, against a direct
    integration of the raw curves (sedpy's file read by numpy; the user file's numbers), to 1e-3 mag."""
    curve_file = tmp_path / "narrow.txt"
    lam_nm = np.linspace(450.0, 560.0, 45)
    curve_file.write_text("# lambda [nm]  throughput\n" + "".join(
        f"{x:.3f}, {np.exp(-0.5 * ((x - 505) / 18) ** 2):.6f}  # row\n" for x in lam_nm))
    files = {"Custom/Cam.G505": {"path": str(curve_file), "wavelength_unit": "nm"}}
    cache = tmp_path / "svo"
    codes = ["HST/ACS_WFC.F606W", "Paranal/VISTA.Ks", "Spitzer/IRAC.I1", "sedpy/par.wfc3_uvis_f390w", "Custom/Cam.G505"]
    for code in codes:
        filters.write_svo_cache_file(code, cache, filter_files=files)
    configure_synthesizer(svo_filter_cache=cache)
    from synthesizer.instruments import FilterCollection
    from unyt import Hz, angstrom

    lam = np.geomspace(1000.0, 60000.0, 30000)
    collection = FilterCollection(filter_codes=codes, new_lam=lam * angstrom)
    fnu = SPECTRA[spectrum]
    raw = {"HST/ACS_WFC.F606W": "acs_wfc_f606w", "Paranal/VISTA.Ks": "vista_vircam_Ks",
           "Spitzer/IRAC.I1": "spitzer_irac_ch1", "sedpy/par.wfc3_uvis_f390w": "wfc3_uvis_f390w"}
    for code in codes:
        if code in raw:
            wavelength, throughput = np.genfromtxt(filters.sedpy_filter_dir() / f"{raw[code]}.par", usecols=(0, 1),
                                                   unpack=True)
            throughput = np.clip(throughput, 0, None)
        else:
            wavelength, throughput = lam_nm * 10, np.exp(-0.5 * ((lam_nm - 505) / 18) ** 2)
        direct = _direct_mean_fnu(wavelength, throughput, fnu)
        synthesized = collection.filters[code].apply_filter(fnu(lam), nu=C_ANGSTROM_PER_S / lam * Hz)
        assert abs(2.5 * np.log10(synthesized / direct)) < 1e-3, code


# -- curve files and unknown codes, at the cheapest level --------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("# w t\n5000 0.1\n5100 x\n", "line 3: '5100 x' is not two numbers"),
    ("5000 0.1\n5100\n", "line 2: '5100' has one column"),
    ("5000 0.1\n5100 0.5\n5050 0.2\n", "line 3: wavelength 5050 does not increase (previous row 5100, line 2)"),
    ("5000 0.1\n5000 0.5\n", "line 2: wavelength 5000 does not increase"),
    ("5000 0.1\n5100 -0.5\n", "line 2: throughput -0.5 is negative"),
    ("# only comments\n\n5000 0.3\n", "has 1 data row(s); a curve needs at least 2"),
    ("5000 0\n5100 0\n5200 0\n", "the throughput is zero everywhere (lines 1-3)"),
    ("5000 nan\n5100 1\n", "line 1: '5000 nan' is not finite"),
    ("-5 0.1\n5100 1\n", "line 1: wavelength -5 must be positive"),
])
def test_bad_curve_files_are_named_with_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "curve.dat"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        filters.read_curve_file(path, key="galaxy.filter_files['My/Cam.X']")
    assert "galaxy.filter_files['My/Cam.X']" in str(error.value) and str(path) in str(error.value)
    assert fragment in str(error.value)


def test_curve_file_units_and_comments(tmp_path):
    path = tmp_path / "curve.txt"
    path.write_text("# wavelength throughput\n1.0 0.5 extra\n\n1.5, 0.7  # comment\n2.0\t0.1\n")
    wavelength, throughput = filters.read_curve_file(path, "um")
    assert wavelength.tolist() == [1e4, 1.5e4, 2e4] and throughput.tolist() == [0.5, 0.7, 0.1]
    with pytest.raises(ConfigError, match="does not exist"):
        filters.read_curve_file(tmp_path / "absent.txt")


def _config(tmp_path, **galaxy):
    config = yaml.safe_load(write_workdir(tmp_path, {"tiny": tiny_run()}).read_text())
    config["galaxy"] = galaxy
    return config


def test_unknown_code_fails_at_plan_time_with_close_matches_and_families(tmp_path):
    unknown = ["Paranal/VISTA.KS", "ACS.F814W", "sedpy/par.jwst_moda_f70w", "Subaru/MOIRCS.Ks"]
    config = _config(tmp_path, filters=["HST/ACS_WFC.F606W", *unknown])
    with pytest.raises(ConfigError) as error:
        plan_workflow(config)
    message = str(error.value)
    assert f"galaxy.filters: no offline curve for {unknown}" in message
    assert "'Paranal/VISTA.KS': close matches: Paranal/VISTA.Ks" in message
    assert "'ACS.F814W' is not an SVO-style code" in message and "HST/ACS_WFC.F814W" in message
    assert "HST/ACS_WFC (8)" in message and "JWST/NIRCam (22)" in message and "Spitzer/IRAC (4)" in message
    assert "'sedpy/par.jwst_moda_f70w': close matches: sedpy/par.jwst_moda_f070w" in message
    assert ("'Subaru/MOIRCS.Ks': astro-sedpy curves of this instrument without an SVO code: sedpy/par.subaru_moircs_H, "
            "sedpy/par.subaru_moircs_J, sedpy/par.subaru_moircs_Ks") in message
    n_sedpy = sum(not filters.is_svo_code(code) for code in filters.offline_filter_files())
    assert f"and {n_sedpy} curves without an SVO code as sedpy/par.<file stem>" in message
    assert "config/README.md" in message and "sedpy_svo_codes.tsv" in message and "galaxy.filter_files" in message
    assert len(message) < 2500


def test_filter_files_checked_at_plan_time(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_text("4000 0.1\n3900 0.2\n")
    config = _config(tmp_path, filters=["JWST/NIRCam.F150W", "My/Cam.B"], filter_files={"My/Cam.B": str(bad)})
    with pytest.raises(ConfigError, match=r"galaxy.filter_files\['My/Cam.B'\]: .*bad.dat, line 2: wavelength 3900"):
        plan_workflow(config)
    bad.write_text("4000 0.1\n4100 0.2\n")
    plan = plan_workflow(config)
    assert plan.config["galaxy"]["filter_files"] == {"My/Cam.B": str(bad)}
    from seqsbi.simulators.galaxy import config as galaxy_config

    galaxy = plan.config["galaxy"]
    assert galaxy_config.filter_cache_files(galaxy)[1] == "results/galaxy/svo_filter_cache/My_Cam.B.hdf5"
    assert galaxy_config.filter_source(galaxy, "My_Cam.B") == {
        "code": "My/Cam.B", "filter_file": {"path": str(bad), "wavelength_unit": "angstrom"}}
    assert galaxy_config.filter_file_inputs(galaxy, "My_Cam.B") == [str(bad)]
    assert galaxy_config.filter_source(galaxy, "JWST_NIRCam.F150W") == {"code": "JWST/NIRCam.F150W"}


@pytest.mark.parametrize("galaxy, fragment", [
    ({"filters": ["Herschel/SPIRE.PSW"]},
     "galaxy.filters: 'Herschel/SPIRE.PSW' spans"),
    ({"filters": ["Spitzer/IRAC.I4"], "sps_grid": {"max_wavelength_angstrom": 50000}},
     "outside the SPS grid's 100-50000 Angstrom"),
    ({"filters": ["GALEX/GALEX.FUV"], "sps_grid": {"min_wavelength_angstrom": 1000}},
     "rest frame 223.5"),
    ({"filters": ["A_B/C.D", "A/B_C.D"], "tophat_filters": {"A_B/C.D": {"lam_eff": 5000, "lam_fwhm": 500},
                                                            "A/B_C.D": {"lam_eff": 6000, "lam_fwhm": 500}}},
     "'A_B/C.D' and 'A/B_C.D' share the filter cache file A_B_C.D.hdf5"),
    ({"filters": ["X/Y.Z"], "tophat_filters": {"X/Y.Z": {"lam_eff": 5000, "lam_fwhm": 500}},
      "filter_files": {"X/Y.Z": "somewhere.txt"}},
     "galaxy.filter_files and galaxy.tophat_filters both define ['X/Y.Z']"),
    ({"filters": ["HST/ACS_WFC.F606W", "HST/ACS_WFC.F606W"]}, "listed more than once"),
    ({"filters": ["sedpy/par.my_curve"], "filter_files": {"sedpy/par.my_curve": "curve.txt"}},
     "['sedpy/par.my_curve'] use the sedpy/par. namespace, which names astro-sedpy's own curves"),
])
def test_filter_set_problems_fail_at_plan_time(tmp_path, galaxy, fragment):
    with pytest.raises(ConfigError) as error:
        plan_workflow(_config(tmp_path, **galaxy))
    assert fragment in str(error.value)


def test_grid_coverage_message_names_filter_grid_and_redshifts(tmp_path):
    with pytest.raises(ConfigError) as error:
        plan_workflow(_config(tmp_path, filters=["JWST/MIRI.F2100W"]))
    message = str(error.value)
    assert "'JWST/MIRI.F2100W'" in message and "redshift 0-5" in message and "100-100000 Angstrom" in message
    assert "max_wavelength_angstrom" in message


# -- catalogue columns of filters sharing a band name -------------------------------------------------

@pytest.mark.parametrize("text", [
    "id,F444W,F444W_err,J,J_err\n7,100,5,1000,20\n",  # J could be VISTA's or 2MASS's
    "id,F444W,F444W_err,Paranal/VISTA.J,Paranal/VISTA.J_err,J,J_err\n7,100,5,1000,20,10,1\n",  # J: which?
    "id,F444W,F444W_err,Paranal/VISTA.J,Paranal/VISTA.J_err,2MASS/2MASS.J,2MASS/2MASS.J_err\n7,100,5,1000,20,10,1\n",
])
def test_catalogue_band_shared_by_two_filters_needs_full_codes(tmp_path, text):
    """Paranal/VISTA.J and 2MASS/2MASS.J share band 'J': a column 'J' is refused, naming both codes;
    columns named by the full codes are read, each filter from its own (F444W by band, as before)."""
    from seqsbi.observations import Observation
    from seqsbi.simulators.galaxy.catalogue import catalogue_observations

    (tmp_path / "cat.csv").write_text(text)
    galaxy = {"catalogue": str(tmp_path / "cat.csv"), "features": {"kind": "ab_magnitude"},
              "filters": ["JWST/NIRCam.F444W", "Paranal/VISTA.J", "2MASS/2MASS.J"]}
    observations = {"g1": Observation("g1", None, catalogue_id="7")}
    if "J,J_err" in text:
        with pytest.raises(ConfigError) as error:
            catalogue_observations(observations, galaxy)
        message = str(error.value)
        assert "column 'J' is ambiguous: the configured filters ['Paranal/VISTA.J', '2MASS/2MASS.J']" in message
        assert "name these columns by the full filter code" in message
    else:
        x_o = catalogue_observations(observations, galaxy)["g1"].x_o
        assert np.allclose(x_o, [31.4 - 5.0, 31.4 - 7.5, 31.4 - 2.5])


# -- the batched backend and stored curves ----------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A 1000-wavelength BC03 grid (100 A - 10 um) and a mixed HST/ground/NIRCam/IRAC filter set."""
    base = tmp_path_factory.mktemp("mixed")
    spec, svo = galaxy_test_model(base, n_wavelengths=1000)
    for code in MIXED:
        filters.write_svo_cache_file(code, svo)
    from dataclasses import replace

    return replace(spec, filters=MIXED), svo


def _draws(n: int, seed: int, z: tuple[float, float]) -> np.ndarray:
    ranges = {"redshift": z, "log_mass": (8, 12), "tau_v": (0.01, 2), "tau": (0.1, 2), "peak_age": (10, 1000),
              "log10metallicity": (-4, -1.4)}
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(*ranges[name], size=n) for name in PARAMETERS])


def test_batched_matches_reference_from_uv_to_irac(mixed):
    """UV (HST F275W, DECam u: Inoue14 IGM at z up to 3) to 8 um (IRAC I4) curves: same photometry."""
    spec, svo = mixed
    theta = _draws(12, seed=5, z=(0.0, 3.0))
    reference = ab_magnitudes(ReferenceGalaxySimulator(spec, svo)(theta))
    batched = ab_magnitudes(build_simulator(spec, svo, "batched")(theta))
    both = np.isfinite(reference) & np.isfinite(batched)
    assert both.mean() > 0.9 and np.array_equal(np.isfinite(reference), np.isfinite(batched))
    assert np.max(np.abs(reference[both] - batched[both])) < 1e-3


def test_library_stores_curves_and_a_rebuilt_simulator_uses_them(mixed, tmp_path):
    spec, svo = mixed
    simulator = build_simulator(spec, svo, "batched")
    theta = _draws(6, seed=9, z=(0.2, 4.0))
    flux = simulator(theta)
    path = tmp_path / "library.hdf5"
    write_library(path, "mixed", theta, flux, spec, simulator.filters)

    library = read_library(path)
    assert list(library.filter_curves) == list(MIXED)
    for code in MIXED:  # the original curves, bit for bit
        wavelength, transmission, _ = filters.filter_curve(code)
        assert np.array_equal(library.filter_curves[code][0], wavelength)
        assert np.array_equal(library.filter_curves[code][1], transmission)
    import h5py

    with h5py.File(path, "r") as hf:  # synthesizer's own layout, readable by FilterCollection(path=...)
        assert "Header" in hf["Model/Instrument/Filters"] and "HST.ACS_WFC.F606W" in hf["Model/Instrument/Filters"]
        with h5py.File(tmp_path / "filters.hdf5", "w") as out:
            for name in hf["Model/Instrument/Filters"]:
                hf.copy(hf["Model/Instrument/Filters"][name], out, name=name)
    from synthesizer.instruments import FilterCollection

    assert FilterCollection(path=str(tmp_path / "filters.hdf5")).filter_codes == list(MIXED)

    # No SVO cache at all: the stored curves rebuild the same photometry (both backends).
    for backend in ("batched", "reference"):
        rebuilt = build_simulator(library.spec, tmp_path / "no-cache-here", backend, library.filter_curves)
        again = rebuilt(theta)
        if backend == "batched":
            assert np.array_equal(again, flux)
        else:
            assert np.nanmax(np.abs(ab_magnitudes(again) - ab_magnitudes(flux))) < 1e-3
    # Old libraries (no stored curves) still read.
    write_library(tmp_path / "old.hdf5", "old", theta, flux, spec)
    assert read_library(tmp_path / "old.hdf5").filter_curves is None


def test_a_curve_file_cannot_replace_a_curve_the_library_stores(tmp_path, monkeypatch):
    """An existing library's simulator is rebuilt from its own curves: a filter_files entry for one of
    them would be ignored, so it is refused, naming the code."""
    from seqsbi.simulators.galaxy import config as galaxy_config

    curve = tmp_path / "f200w.txt"
    curve.write_text("19000 0\n20000 1\n21000 0\n")
    stored = {"JWST/NIRCam.F200W": (np.array([19000.0, 20000.0, 21000.0]), np.array([0.0, 1.0, 0.0]))}
    monkeypatch.setattr(galaxy_config, "stored_curves", lambda galaxy: stored)
    galaxy = {"filters": ["JWST/NIRCam.F200W"], "filter_files": {"JWST/NIRCam.F200W": str(curve)}}
    with pytest.raises(ConfigError, match=r"^galaxy\.filter_files: \['JWST/NIRCam\.F200W'\] are stored in the "
                                          r"library named by galaxy\.library\.path"):
        galaxy_config.check_filters(galaxy)
