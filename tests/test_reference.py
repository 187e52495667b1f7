"""The exact-likelihood reference engine (engine 'likelihood', seqsbi.reference): the linear Gaussian's
analytic posterior, the galaxy likelihood against Monte Carlo draws of the simulator's own noise and
feature code, non-convergence, config validation and one Snakemake run."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.stats import binomtest

from conftest import galaxy_test_model, snakemake, tiny_run, write_workdir
from seqsbi.config import plan_workflow
from seqsbi.errors import ConfigError, ReferenceNotConverged
from seqsbi.reference import (
    GalaxyLikelihood,
    linear_gaussian_log_likelihood,
    reference_posterior,
    sample_reference,
)
from seqsbi.simulators.galaxy.features import FluxNoise, simulate_features

#: Tiny nautilus budgets for tests (defaults: 2000 live points, 10,000 effective samples, 4 networks).
TINY_SAMPLER = {"live_points": 200, "effective_samples": 1500, "min_ess": 1000, "networks": 1}


def reference_run(**overrides) -> dict:
    run = tiny_run(engine="likelihood", nested_sampling=dict(TINY_SAMPLER), posterior_samples=1000)
    for key in ("density_estimator", "constrain_to_prior", "rounds", "simulations_per_round", "training"):
        run.pop(key)
    run.update(overrides)
    return run


def test_linear_gaussian_reference_matches_the_analytic_posterior(tmp_path):
    """Prior U(-2, 2)^3, x = theta + 1 + 0.1 N(0, 1): posterior N(x_o - 1, 0.01 I) (mass outside the box
    negligible), evidence 1 / 4^3. Run through the config path (plan_workflow -> RunSettings)."""
    config = yaml.safe_load(write_workdir(tmp_path, {"ref": reference_run()}).read_text())
    plan = plan_workflow(config)
    settings, observation = plan.runs["ref"], plan.observations["shifted"]
    result = reference_posterior(settings, observation.x_o, seed=3)
    samples, diagnostics = result.samples, result.report["diagnostics"]
    assert samples.shape == (1000, 3) and np.all(np.abs(samples) <= 2)
    assert diagnostics["effective_sample_size"] >= TINY_SAMPLER["min_ess"]
    # Standard error of the mean at ESS >= 1000 is <= 0.0032; 0.015 fails on a bias of 0.15 sigma.
    assert np.allclose(samples.mean(axis=0), observation.x_o - 1.0, atol=0.015), samples.mean(axis=0)
    covariance = np.cov(samples.T)
    assert np.allclose(np.sqrt(np.diag(covariance)), 0.1, rtol=0.1), np.sqrt(np.diag(covariance))
    correlation = covariance / np.sqrt(np.outer(np.diag(covariance), np.diag(covariance)))
    assert np.all(np.abs(correlation[np.triu_indices(3, 1)]) < 0.1), correlation
    assert diagnostics["log_evidence"] == pytest.approx(-3 * np.log(4.0), abs=0.1)
    assert result.report["sampler"]["name"] == "nautilus" and diagnostics["likelihood_calls"] > 0


def test_linear_gaussian_log_likelihood_is_the_normal_density():
    theta = np.array([[0.0, 0.5], [1.0, -1.0]])
    x_o = np.array([1.2, 1.4])
    expected = [-0.5 * np.sum(((x_o - t - 1.0) / 0.1) ** 2) - 2 * np.log(0.1 * np.sqrt(2 * np.pi)) for t in theta]
    assert np.allclose(linear_gaussian_log_likelihood(theta, x_o, 1.0, 0.1), expected)


def test_a_run_that_cannot_converge_raises_with_the_setting_to_raise():
    def log_likelihood(theta):
        return linear_gaussian_log_likelihood(theta, np.zeros(2))

    with pytest.raises(ReferenceNotConverged, match="max_likelihood_calls"):
        sample_reference(log_likelihood, np.full(2, -2.0), np.full(2, 2.0), 100, seed=0,
                         sampler={**TINY_SAMPLER, "max_likelihood_calls": 400})


# -- the galaxy likelihood against the simulator's own noise and feature code --------------------------
@pytest.fixture(scope="module")
def galaxy_fluxes(tmp_path_factory):
    """Noise-free fluxes (1, 8) of one faint galaxy from the batched simulator on a small BC03 grid, and
    per-band depths that put band 0 near non-detection (S/N 0.3), band 1 at S/N 1 and the rest at S/N 4."""
    from seqsbi.simulators.galaxy.batched import BatchedGalaxySimulator

    spec, svo = galaxy_test_model(tmp_path_factory.mktemp("reference"), n_wavelengths=400)
    simulator = BatchedGalaxySimulator(spec, svo)
    theta = np.array([[2.0, 9.0, 0.5, 0.5, 300.0, -2.5]])
    flux = simulator(theta)
    snr = np.array([0.3, 1.0, 4, 4, 4, 4, 4, 4])
    depths = 31.4 - 2.5 * np.log10(5 * flux[0] / snr)  # sigma = flux / snr
    return simulator, theta, flux, FluxNoise.from_config({"depth_5sigma_ab": depths.tolist()}, 8)


@pytest.mark.parametrize("kind, scale", [("ab_magnitude", None), ("flux_njy", None), ("flux", 7.0),
                                         ("asinh_magnitude", None)])
def test_galaxy_likelihood_matches_monte_carlo_draws_of_the_simulator(galaxy_fluxes, kind, scale):
    """p(x_o | theta) per band from 400,000 noisy draws at theta (simulate_features, the simulator's own code):
    the censored fraction for a band of x_o on the AB floor, a histogram density (bin +-0.02 sigma in
    flux) for the others, and one joint two-band probability."""
    simulator, theta, flux, noise = galaxy_fluxes
    rng = np.random.default_rng(5)
    scale = None if scale is None else np.full(8, scale)  # flux features divided by a per-band scale
    draws = simulate_features(np.repeat(flux, 400_000, axis=0), kind, noise, rng, scale)
    x_o = simulate_features(flux, kind, noise, np.random.default_rng(12), scale)[0]
    sigma = noise.sigma(flux)[0]
    if kind == "ab_magnitude":
        floor = 31.4 - 2.5 * np.log10(sigma)
        x_o[0] = floor[0]  # band 0 censored (its probability is ~0.75 at S/N 0.3)
        x_o[2] = 31.4 - 2.5 * np.log10(flux[0, 2] + 0.5 * sigma[2])  # a detected band half a sigma up
    likelihood = GalaxyLikelihood(simulator, kind, noise, scale)
    terms = likelihood.band_log_likelihoods(theta, x_o)[0]
    assert np.isclose(likelihood(theta, x_o)[0], terms.sum())
    inside, estimates = [], []
    for j in range(8):
        if kind == "ab_magnitude" and np.isclose(x_o[j], floor[j]):
            hits = np.isclose(draws[:, j], floor[j], atol=1e-9, rtol=0)
            estimate = np.exp(terms[j])
        else:
            # A bin of +-0.02 sigma in flux, mapped to the feature: the density is nearly linear across it.
            half_width = 0.02 * sigma[j] * np.abs(_feature_slope(kind, x_o[j], noise.softening_njy[j], scale))
            hits = np.abs(draws[:, j] - x_o[j]) <= half_width
            estimate = np.exp(terms[j]) * 2 * half_width
        inside.append(hits)
        estimates.append(estimate)
        assert binomtest(int(hits.sum()), len(hits), estimate).pvalue > 1e-4, (kind, j, hits.mean(), estimate)
    both = inside[0] & inside[2]  # the joint likelihood is the product over bands
    assert binomtest(int(both.sum()), len(both), estimates[0] * estimates[2]).pvalue > 1e-4


def _feature_slope(kind: str, value: float, softening: float, scale: np.ndarray | None) -> float:
    """d(feature)/d(flux) at feature ``value``: converts a flux bin into a feature bin."""
    from seqsbi.units import ab_to_njy

    if kind in ("flux", "flux_njy"):
        return 1.0 if scale is None else 1.0 / scale[0]
    if kind == "ab_magnitude":
        return 2.5 / (np.log(10) * ab_to_njy(value))
    u = -value * np.log(10) / 2.5 - np.log(softening / 3.631e12)
    return 2.5 / (np.log(10) * 2 * softening * np.cosh(u))


# -- config -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("runs, expected", [
    ({"ref": reference_run(simulator="two_moons", simulator_settings={}, prior={"parameters": [
        {"name": "a", "low": -1, "high": 1}, {"name": "b", "low": -1, "high": 1}]})},
     ["runs.ref.engine", "'two_moons'", "linear_gaussian, galaxy"]),
    ({"ref": reference_run(density_estimator="maf")}, ["runs.ref.density_estimator", "trains no network"]),
    ({"sbi": tiny_run(reference="nowhere")}, ["runs.sbi.reference", "'nowhere' is not a run"]),
    ({"sbi": tiny_run(reference="other"), "other": tiny_run()}, ["runs.sbi.reference", "engine 'SNPE'"]),
    ({"sbi": tiny_run(reference="ref"), "ref": reference_run(simulator_settings={"shift": 2.0, "noise_std": 0.1})},
     ["runs.sbi.reference", "simulator_settings"]),
    ({"sbi": tiny_run(reference="ref"), "ref": reference_run(prior={"parameters": [
        {"name": f"theta_{i}", "low": -1, "high": 2, "unit": "m"} for i in (1, 2, 3)]})},
     ["runs.sbi.reference", "another prior", "uniform -1 to 2 m"]),
    ({"sbi": tiny_run(reference="ref"), "ref": reference_run(observations=["zero"])},
     ["runs.sbi.reference", "['shifted']", "runs.ref.observations"]),
])
def test_reference_settings_are_checked_at_validation(tmp_path, runs, expected):
    config = yaml.safe_load(write_workdir(tmp_path, runs).read_text())
    with pytest.raises(ConfigError) as error:
        plan_workflow(config)
    assert all(part in str(error.value) for part in expected), str(error.value)


def test_a_galaxy_reference_run_needs_noise(tmp_path):
    config = yaml.safe_load(write_workdir(tmp_path, {"g": {"simulator": "galaxy", "prior": {"from_library": True},
                                                           "engine": "likelihood"}},
                                          sheet="observation\tlibrary_index\nrow\t3\n").read_text())
    with pytest.raises(ConfigError, match="needs galaxy.features.noise"):
        plan_workflow(config)
    config["galaxy"] = {"features": {"noise": {"depth_5sigma_ab": 29.0}}}
    settings = plan_workflow(config).runs["g"]
    assert settings.is_reference and settings.nested_sampling["live_points"] == 2000


def test_an_sbi_run_may_name_a_matching_reference_run(tmp_path):
    config = yaml.safe_load(write_workdir(tmp_path, {"sbi": tiny_run(reference="ref"), "ref": reference_run()}
                                          ).read_text())
    plan = plan_workflow(config)
    assert plan.runs["sbi"].reference == "ref" and plan.runs["ref"].is_reference


@pytest.mark.slow
@pytest.mark.workflow
def test_a_reference_run_through_snakemake_writes_samples_report_plot_and_table(tmp_path):
    import json

    runs = {"ref": reference_run(observations=["zero"], posterior_samples=500,
                                 nested_sampling={"live_points": 100, "effective_samples": 600, "min_ess": 500,
                                                  "networks": 1})}
    write_workdir(tmp_path, runs)
    result = snakemake(tmp_path, "--cores", "2")
    output = result.stdout + result.stderr
    assert "reference_fit" in output and "train_round" not in output
    run_dir = tmp_path / "results" / "runs" / "ref" / "zero"
    with np.load(run_dir / "reference" / "samples.npz") as data:
        assert data["samples"].shape == (500, 3) and list(data["parameter_names"]) == ["theta_1", "theta_2",
                                                                                        "theta_3"]
        assert np.allclose(data["samples"].mean(axis=0), -1.0, atol=0.03)
        assert list(data["parameter_units"]) == ["m"] * 3
    report = json.loads((run_dir / "reference" / "reference.json").read_text())
    assert report["sampler"]["name"] == "nautilus" and report["sampler"]["live_points"] == 100  # config reached it
    assert report["diagnostics"]["effective_sample_size"] >= 500
    assert (run_dir / "pairplot.png").stat().st_size > 0
    table = (run_dir / "posterior_summary.tsv").read_text()
    assert "theta_1" in table
    # Keys only SBI engines read do not rerun the reference; its sampler settings do (dry runs).
    write_workdir(tmp_path, {"ref": {**runs["ref"], "network": {"hidden_features": 7}, "simulations_per_round": 9,
                                     "training": {"max_num_epochs": 3}}})
    assert "reference_fit" not in snakemake(tmp_path, "-n").stdout
    write_workdir(tmp_path, {"ref": {**runs["ref"], "nested_sampling": {**runs["ref"]["nested_sampling"],
                                                                         "live_points": 120}}})
    assert "reference_fit" in snakemake(tmp_path, "-n").stdout


def test_linear_gaussian_likelihood_inserts_fixed_parameters(tmp_path):
    """A fixed parameter is not inferred, but the simulator (and so the likelihood) gets its value."""
    from seqsbi.reference import log_likelihood_for

    prior = {"parameters": [{"name": "theta_1", "low": -2, "high": 2, "unit": "m"},
                            {"name": "theta_2", "low": -2, "high": 2, "unit": "m",
                             "distribution": "fixed", "value": 0.5},
                            {"name": "theta_3", "low": -2, "high": 2, "unit": "m"}]}
    config = yaml.safe_load(write_workdir(tmp_path, {"ref": reference_run(prior=prior)}).read_text())
    settings = plan_workflow(config).runs["ref"]
    x_o = np.array([1.6, 1.5, 0.9])
    theta = np.array([[0.6, -0.1], [0.0, 0.0]])
    full = np.array([[0.6, 0.5, -0.1], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(log_likelihood_for(settings)(theta, x_o), linear_gaussian_log_likelihood(full, x_o))
