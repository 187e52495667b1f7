"""Features from fluxes: AB and asinh magnitudes, depth-based noise."""

from __future__ import annotations

import numpy as np
import pytest

from seqsbi.simulators.galaxy.features import FluxNoise, describe_ranges, simulate_features, to_features


def test_ab_magnitudes_of_known_fluxes():
    flux = np.array([[3631e9, 1.0, 10 ** ((31.4 - 29) / 2.5)]])
    assert np.allclose(to_features(flux, "ab_magnitude"), [[0.0, 31.4, 29.0]], atol=1e-3)


def test_depth_noise_has_the_right_sigma_and_floor():
    noise = FluxNoise.from_config({"depth_5sigma_ab": [29.0, 27.0], "max_snr": 20}, 2)
    flux = np.array([[1.0, 1.0], [1e6, 1e6]])
    sigma = noise.sigma(flux)
    five_sigma_29 = 10 ** ((31.4 - 29) / 2.5)
    assert sigma[0, 0] == pytest.approx(five_sigma_29 / 5)
    assert sigma[0, 1] == pytest.approx(10 ** ((31.4 - 27) / 2.5) / 5)
    assert np.allclose(sigma[1], 1e6 / 20)  # SNR ceiling
    rng = np.random.default_rng(0)
    noisy, _ = noise.apply(np.full((20000, 2), 1.0), rng)
    assert noisy[:, 0].std() == pytest.approx(five_sigma_29 / 5, rel=0.03)


def test_faint_sources_get_finite_magnitudes_at_the_one_sigma_limit():
    noise = FluxNoise.from_config({"depth_5sigma_ab": 29.0}, 1)
    x = simulate_features(np.full((1000, 1), 1e-3), "ab_magnitude", noise, np.random.default_rng(1))
    one_sigma_limit = 31.4 - 2.5 * np.log10(10 ** ((31.4 - 29) / 2.5) / 5)
    assert np.all(np.isfinite(x)) and np.all(x <= one_sigma_limit + 1e-9)


def test_asinh_magnitudes_match_ab_for_bright_sources_and_stay_finite_for_negative_flux():
    sigma = np.full((3, 1), 2.0)
    flux = np.array([[1e5], [0.0], [-5.0]])
    asinh = to_features(flux, "asinh_magnitude", sigma)
    assert asinh[0, 0] == pytest.approx(to_features(flux[:1], "ab_magnitude")[0, 0], abs=1e-3)
    assert np.all(np.isfinite(asinh)) and asinh[2, 0] > asinh[1, 0]
    # Lupton et al.'s softening: 1.042 sigma; the magnitude of zero flux is -2.5/ln10 ln(b / 3631 Jy)
    b = 1.0857**0.5 * 2.0
    assert asinh[1, 0] == pytest.approx(-2.5 / np.log(10) * np.log(b / 3.631e12), abs=1e-4)
    with pytest.raises(ValueError, match="need a noise model"):
        to_features(flux, "asinh_magnitude")


def test_describe_ranges_names_units():
    lines = describe_ranges(np.array([[25.0, 26.0], [27.0, 24.5]]), ("F070W", "F090W"), "ab_magnitude")
    assert lines == ["F070W: 25.000 to 27.000 AB mag", "F090W: 24.500 to 26.000 AB mag"]


CODES = ["JWST/NIRCam.F070W", "JWST/NIRCam.F444W"]


def catalogue_case(tmp_path, text):
    from seqsbi.observations import Observation

    (tmp_path / "cat.csv").write_text(text)
    galaxy = {"catalogue": str(tmp_path / "cat.csv"), "filters": CODES, "features": {"kind": "ab_magnitude"}}
    return {"g1": Observation("g1", None, catalogue_id="7")}, galaxy


def test_catalogue_row_becomes_features(tmp_path):
    from seqsbi.simulators.galaxy.catalogue import catalogue_observations

    observations, galaxy = catalogue_case(tmp_path, "id,F070W,F070W_err,JWST/NIRCam.F444W,JWST/NIRCam.F444W_err\n"
                                                    "7,100.0,5.0,1000.0,20.0\n")
    x_o = catalogue_observations(observations, galaxy)["g1"].x_o
    assert np.allclose(x_o, [31.4 - 5.0, 31.4 - 7.5])


@pytest.mark.parametrize("text, message", [
    ("id,F070W,F070W_err\n7,100,5\n", r"no flux and _err columns for \['JWST/NIRCam.F444W'\] \(1 of the 2"),
    ("id,F070W,F070W_err,F444W,F444W_err\n7,100,0,100,5\n",
     r"id '7' JWST/NIRCam.F070W: flux error 0.0 must be a positive"),
    ("id,F070W,F070W_err,F444W,F444W_err\n7,100,5,100,-1\n",
     r"id '7' JWST/NIRCam.F444W: flux error -1.0 must be a positive"),
    ("id,F070W,F070W_err,F444W,F444W_err\n8,100,5,100,5\n", r"catalogue_id '7' is not in"),
])
def test_bad_catalogue_rows_are_named(tmp_path, text, message):
    from seqsbi.errors import ConfigError
    from seqsbi.simulators.galaxy.catalogue import catalogue_observations

    observations, galaxy = catalogue_case(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        catalogue_observations(observations, galaxy)


@pytest.mark.parametrize("kind", ["ab_magnitude", "flux_njy", "asinh_magnitude"])
def test_features_in_chunks_equal_features_in_one_call_noise_included(kind):
    from seqsbi.simulators.galaxy.features import simulate_features_chunked

    flux = np.asfortranarray(10 ** np.random.default_rng(1).uniform(-1, 3, size=(1003, 8)))  # a library's .T view
    noise = FluxNoise.from_config({"depth_5sigma_ab": 29.0, "max_snr": 20}, 8)
    whole = simulate_features(flux, kind, noise, np.random.default_rng(5))
    chunked = simulate_features_chunked(flux, kind, noise, np.random.default_rng(5), chunk_rows=100)
    assert np.array_equal(chunked, whole)
    if kind != "asinh_magnitude":
        assert np.array_equal(simulate_features_chunked(flux, kind, None, None, chunk_rows=7),
                              simulate_features(flux, kind, None, None))
