"""The batched galaxy backend against synthesizer's one-galaxy-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import galaxy_test_model
from seqsbi.simulators.galaxy.batched import BatchedGalaxySimulator
from seqsbi.simulators.galaxy.library import ab_magnitudes
from seqsbi.simulators.galaxy.model import PARAMETERS, ReferenceGalaxySimulator

SEED_PRIOR = {"redshift": (0.0, 5.0), "log_mass": (8, 12), "tau_v": (0.01, 3), "tau": (0.1, 2),
              "peak_age": (10, 1000), "log10metallicity": (-4, -1.4)}


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    spec, svo = galaxy_test_model(tmp_path_factory.mktemp("batched"), n_wavelengths=2000)
    return ReferenceGalaxySimulator(spec, svo), BatchedGalaxySimulator(spec, svo)


def prior_draws(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(*SEED_PRIOR[name], size=n) for name in PARAMETERS])


def test_batched_matches_reference_on_1000_prior_draws(backends):
    reference, batched = backends
    theta = prior_draws(1000, seed=11)
    m_reference = ab_magnitudes(reference(theta))
    m_batched = ab_magnitudes(batched(theta))
    bright = m_reference < 35
    assert bright.sum() > 5000  # most of the 8000 (galaxy, band) pairs
    worst = np.max(np.abs(m_batched - m_reference)[bright])
    assert worst <= 1e-3, f"largest |batched - reference| = {worst:.2e} mag"


def test_chunking_does_not_change_the_answer(backends):
    _, batched = backends
    theta = prior_draws(300, seed=5)
    whole = batched(theta)
    batched.chunk_size, saved = 7, batched.chunk_size
    try:
        pieces = batched(theta)
    finally:
        batched.chunk_size = saved
    # Equal up to BLAS rounding (matrix products of different shapes may sum in different orders).
    assert np.allclose(whole, pieces, rtol=1e-12, atol=0)


def test_scattered_galaxy_simulations_are_bit_identical_for_any_chunk_count(backends):
    """Chunk jobs evaluate whole seeded blocks, so BLAS sees the same shapes whatever the chunk count."""
    from seqsbi import scatter
    from seqsbi.simulators import Simulator
    from seqsbi.simulators.galaxy.features import FluxNoise, simulate_features

    _, batched = backends
    noise = FluxNoise.from_config({"depth_5sigma_ab": 29.0}, len(batched.filter_curves))
    simulator = Simulator("galaxy", lambda theta, rng: simulate_features(batched(theta), "ab_magnitude", noise, rng),
                          {}, "test")
    theta = prior_draws(700, seed=8)

    def gathered(n_chunks: int) -> np.ndarray:
        parts = []
        for chunk in range(n_chunks):
            rows = scatter.chunk_rows(len(theta), 150, n_chunks, chunk)
            parts.append(scatter.simulate_blocks(simulator, theta[rows], rows.start, 150, 12345))
        return np.concatenate(parts)

    whole = gathered(1)
    assert np.isfinite(whole).mean() > 0.5
    for n_chunks in (2, 5):
        assert np.array_equal(gathered(n_chunks), whole, equal_nan=True)


def test_sfh_weights_are_normalised_and_vanish_beyond_the_age_of_the_universe(backends):
    _, batched = backends
    weights = batched.sfh_weights(np.array([1e9, 1e10]), np.array([0.5, 1.0]), np.array([3e8, 2e9]))
    assert np.allclose(weights.sum(axis=1), 1.0) and np.all(weights >= 0)
    too_old = batched.age_edges[:-1] >= 1e9
    assert np.all(weights[0, too_old] == 0)


def test_incident_emission_without_dust_matches_reference(backends):
    reference, _ = backends
    from dataclasses import replace

    spec = replace(reference.spec, emission_model="incident",
                   parameter_names=("redshift", "log_mass", "tau", "peak_age", "log10metallicity"))
    svo = reference.svo_filter_cache
    theta = np.delete(prior_draws(30, seed=2), PARAMETERS.index("tau_v"), axis=1)
    m_reference = ab_magnitudes(ReferenceGalaxySimulator(spec, svo)(theta))
    m_batched = ab_magnitudes(BatchedGalaxySimulator(spec, svo)(theta))
    bright = m_reference < 35
    assert np.max(np.abs(m_batched - m_reference)[bright]) <= 1e-3
    dusty = ab_magnitudes(reference(np.insert(theta, 2, 1.0, axis=1)))
    assert np.all(dusty[:, 0] > m_reference[:, 0])  # the attenuated model is fainter in F070W


def test_every_flux_scales_as_ten_to_the_log_mass(backends):
    """The model-fit flag (seqsbi.amortized.ModelFitScore) fits log_mass as a free amplitude of every flux."""
    from seqsbi.amortized import AMPLITUDE_PARAMETER

    j = PARAMETERS.index(AMPLITUDE_PARAMETER)
    theta = prior_draws(50, seed=3)
    heavier = theta.copy()
    heavier[:, j] += 0.7
    for simulator in backends:
        np.testing.assert_allclose(simulator(heavier), 10 ** 0.7 * simulator(theta), rtol=1e-9)
