"""Faults a user meets (issue 15): simulators returning NaN, rejection samplers that accept nothing,
observations no simulation resembles. Each test is the issue's case, or a smaller one, in-process."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_run
from seqsbi import engines
from seqsbi.artifacts import ROUND_FILES
from seqsbi.config import run_settings, validate_config
from seqsbi.engines import ENGINES
from seqsbi.errors import ConfigError, SimulationError
from seqsbi.observations import Observation
from seqsbi.rounds import check_invalid_simulations, observation_coverage, train_round, write_round

torch.set_num_threads(1)

# Issue 15.1: x = theta + 1 + 0.1 N(0, 1), NaN wherever theta_1 > 1 (a quarter of the prior [-2, 2]^2).
NAN_MODEL = '''
import numpy as np

def simulate(theta, rng):
    x = theta + 1.0 + 0.1 * rng.standard_normal(theta.shape)
    x[theta[:, 0] > 1.0] = np.nan
    return x
'''
EDGE = Observation("edge", np.array([1.9, 1.0]), None)


def settings_of(**run) -> object:
    return run_settings("r", validate_config({"runs": {"r": run}})["runs"]["r"], [])


def nan_run(tmp_path, engine: str, **overrides):
    model = tmp_path / "nan_model.py"
    model.write_text(NAN_MODEL)
    overrides.setdefault("training", {"max_num_epochs": 60})
    return settings_of(**tiny_run(
        simulator=f"{model}:simulate", simulator_settings={}, engine=engine, simulations_per_round=300,
        prior={"parameters": [{"name": "theta_1", "low": -2, "high": 2}, {"name": "theta_2", "low": -2, "high": 2}]},
        posterior_samples=300, mcmc={"num_chains": 10, "warmup_steps": 10}, truncation={"support_samples": 20000},
        **({"density_estimator": "mlp"} if engine == "SNRE" else {}), **overrides))


def test_each_engine_has_one_policy_for_invalid_simulations():
    """sbi 0.27 drops NaN/inf rows only for maximum-likelihood rounds from the (truncated) prior;
    SNPE would drop them in round 0 and refuse them in round 1, so it refuses them from the start."""
    assert {name: engine.drops_invalid for name, engine in ENGINES.items()} == {
        "SNPE": False, "TSNPE": True, "NPE": True, "SNLE": False, "SNRE": False}


@pytest.mark.parametrize("engine", ["SNPE", "SNLE", "SNRE"])
def test_engine_that_cannot_take_invalid_simulations_fails_in_round_zero_before_training(tmp_path, engine,
                                                                                        monkeypatch):
    settings = nan_run(tmp_path, engine)
    monkeypatch.setattr(engines, "train", lambda *args: pytest.fail("trained despite invalid simulations"))
    with pytest.raises(SimulationError) as error:
        train_round(settings, EDGE, 0)
    message = str(error.value)
    assert "run 'r' round 0: " in message and " of 300 simulations (" in message
    assert "have a NaN or infinite value (theta of those: theta_1 1" in message  # theta_1 from 1 ...
    assert "(prior -2 to 2), theta_2 -" in message
    assert f"engine {engine} cannot train with them" in message
    assert "make the simulator return finite values there" in message and "use engine TSNPE or NPE" in message


def test_engine_that_drops_invalid_simulations_says_so_and_trains_without_them(tmp_path, caplog):
    """The issue's case with TSNPE, 2 rounds x 300: the log states the policy the engine then follows,
    round.json records count, share and region, and sbi holds only the finite simulations."""
    settings = nan_run(tmp_path, "TSNPE")
    caplog.set_level(logging.INFO)
    round0 = train_round(settings, EDGE, 0)
    round1 = train_round(settings, EDGE, 1, round0)
    write_round(round1, settings, {key: tmp_path / name for key, name in ROUND_FILES.items()})
    invalid0 = round0.summary["invalid_simulations"]
    bad = np.isnan(round0.x).any(axis=1)
    assert invalid0["count"] == bad.sum() == round0.summary["non_finite_simulations"]
    assert 0.15 < invalid0["fraction"] < 0.35 and invalid0["policy"] == "dropped"
    low, high = invalid0["theta_region"]["theta_1"]
    assert 1.0 < low < 1.1 and 1.9 < high <= 2.0  # the region: theta_1 > 1, any theta_2
    assert invalid0["theta_region"]["theta_2"][0] < -1.5 and invalid0["theta_region"]["theta_2"][1] > 1.5
    messages = [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]
    assert len(messages) == 2 and all("engine TSNPE leaves them out of training" in m for m in messages)
    assert not any("does not allow invalid simulations" in r.getMessage() for r in caplog.records)
    theta, x, _ = round1.inference.get_simulations()
    invalid1 = json.loads((tmp_path / ROUND_FILES["summary"]).read_text())["invalid_simulations"]
    assert theta.shape[0] == 600 - invalid0["count"] - invalid1["count"] and torch.isfinite(x).all()
    assert np.all(np.abs(round1.samples.mean(axis=0) - [0.9, 0.0]) < 0.25)


def test_too_many_invalid_simulations_fail_any_engine(tmp_path, monkeypatch):
    settings = nan_run(tmp_path, "NPE", training={"max_invalid_fraction": 0.2})
    monkeypatch.setattr(engines, "train", lambda *args: pytest.fail("trained despite invalid simulations"))
    with pytest.raises(SimulationError, match=r"more than runs\.r\.training\.max_invalid_fraction \(0\.2\) allows "
                                              r"for any engine: make the simulator return finite values there, "
                                              r"narrow the prior"):
        train_round(settings, EDGE, 0)


def test_too_few_simulations_left_after_dropping_fail_before_training(tmp_path, monkeypatch):
    """Of a round of 3 simulations (2 training rows, 1 validation row: enough), one is NaN; the 2 kept
    leave 1 training row, which sbi cannot train on: refused before training, naming simulations_per_round."""
    monkeypatch.setattr(engines, "train", lambda *args: pytest.fail("trained with too few simulations"))
    settings = nan_run(tmp_path, "NPE", training={"validation_fraction": 0.34})  # a round of 3 below
    theta = np.array([[0.0, 0.0], [1.5, 0.0], [-1.0, 0.5]])
    x = np.where(theta[:, :1] > 1.0, np.nan, theta + 1.0)
    with pytest.raises(SimulationError, match=r"the 2 left leave 1 training and 1 validation row\(s\) "
                                              r"\(validation_fraction=0\.34\), too few to train: raise "
                                              r"runs\.r\.simulations_per_round"):
        check_invalid_simulations(settings, theta, x, 0)


def test_max_invalid_fraction_is_a_share():
    with pytest.raises(ConfigError, match=r"training\.max_invalid_fraction: 1\.5 is greater than the maximum of 1"):
        settings_of(**tiny_run(training={"max_invalid_fraction": 1.5}))


# Issue 15.2: rejection samplers that accept (almost) nothing switch, logged, instead of hanging.

def test_truncated_prior_accepting_nothing_switches_to_sir_and_finishes(caplog):
    """A truncated region of ~1e-11 of a 5-parameter prior: sbi's rejection sampler would draw ~1e13
    prior samples. The pilot accepts none, so the draw switches to SIR from the posterior, in seconds."""
    from sbi.utils import BoxUniform

    prior = BoxUniform(-2 * torch.ones(5), 2 * torch.ones(5))
    narrow = torch.distributions.MultivariateNormal(torch.zeros(5), 0.01**2 * torch.eye(5))
    threshold = narrow.log_prob(torch.full((5,), 0.02))
    restricted = engines.TruncatedPrior.build(prior, lambda theta: narrow.log_prob(theta) > threshold, narrow,
                                              "rejection", "cpu")
    caplog.set_level(logging.INFO)
    torch.manual_seed(0)
    # sbi's own rejection sampler would not finish here; the pilot makes the draw switch at once.
    theta = engines.draw(restricted, 200, settings_of(**tiny_run(engine="TSNPE")))
    assert theta.shape == (200, 5) and np.all(np.abs(theta) < 0.1)
    assert any("0% of 4000 pilot prior draws fall inside the truncated region (rejection.min_acceptance 0.01); "
               "switching to truncation.sample_with: sir" in r.getMessage() for r in caplog.records)


def test_tsnpe_with_a_narrow_posterior_finishes_round_one_by_sir(caplog):
    """Issue 15.2, smaller: linear_gaussian with noise 0.01, 3 parameters in [-2, 2], x_o = (1, 1, 1),
    TSNPE with rejection (the default), 2 rounds x 300: round 1's truncated prior accepts ~0.05% of
    prior draws; the round logs the switch to SIR and finishes inside the truncated region."""
    settings = settings_of(**tiny_run(engine="TSNPE", simulator_settings={"shift": 1.0, "noise_std": 0.01},
                                      simulations_per_round=300, posterior_samples=300, seed=1,
                                      training={"max_num_epochs": 300}, truncation={"support_samples": 20000}))
    ones = Observation("ones", np.ones(3), np.zeros(3))
    caplog.set_level(logging.INFO)
    round0 = train_round(settings, ones, 0)
    round1 = train_round(settings, ones, 1, round0)
    switch = [r.getMessage() for r in caplog.records if "switching to truncation.sample_with: sir" in r.getMessage()]
    assert len(switch) == 1 and "pilot prior draws fall inside the truncated region" in switch[0]
    assert np.all(round1.theta.std(axis=0) < round0.theta.std(axis=0))
    assert np.all(np.abs(round1.samples.mean(axis=0)) < 0.15)


def leaky_npe(x_o, theta_true=None, **overrides):
    """Round 0 of NPE with sbi's plain maf (mass can leave the prior) on tiny_run's 3-parameter toy."""
    settings = settings_of(**tiny_run(engine="NPE", rounds=1, simulations_per_round=200, posterior_samples=300,
                                      **{"training": {"max_num_epochs": 40}, "mcmc": {"num_chains": 20}, **overrides}))
    return settings, train_round(settings, Observation("far", np.asarray(x_o, float), theta_true), 0)


def test_bounded_rejection_draws_what_sbi_draws_and_pilots_leave_the_random_stream_alone():
    """Where acceptance is fine, draw() returns sbi's own samples bit for bit and leaves torch's random
    state where sbi leaves it: the pilot runs on a copy."""
    settings, result = leaky_npe([0.0, 0.0, 0.0])
    posterior = result.posterior
    assert 0.05 < engines._pilot_inside_prior(posterior, settings) < 1  # leaks, but rejection works
    torch.manual_seed(3)
    ours = engines.draw(posterior, 500, settings)
    state = torch.get_rng_state()
    torch.manual_seed(3)
    theirs = posterior.sample((500,), show_progress_bars=False).numpy().astype(float)
    assert np.array_equal(ours, theirs) and torch.equal(state, torch.get_rng_state())


# Issue 15.4 (and 15.2's leaky SNPE-C rejection): x_o = (25, 25, 25) where simulations span ~[-1, 3].

def test_observation_outside_the_simulations_is_reported_and_its_leaky_posterior_sampled_by_mcmc(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    settings, result = leaky_npe([25.0, 25.0, 25.0], training={"max_num_epochs": 150})
    coverage = result.summary["observation_coverage"]
    assert coverage["outside"] is True and [f["index"] for f in coverage["features_outside"]] == [0, 1, 2]
    for feature in coverage["features_outside"]:
        assert feature["x_o"] == 25 and 2.5 < feature["max"] < 3.5 and feature["beyond_std"] > 15
    assert coverage["mahalanobis"] > 5 * coverage["mahalanobis_max_simulated"]
    assert coverage["share_of_simulations_as_far"] == 0
    warning = [r.getMessage() for r in caplog.records if "lies outside" in r.getMessage()]
    assert len(warning) == 1 and warning[0].startswith("observation 'far' lies outside the data of this round's 200 "
                                                       "simulations: x_o[0] = 25 is ")
    # The network's posterior at x_o is far outside the prior: rejection would accept nothing.
    switch = [r.getMessage() for r in caplog.records if "switching from rejection to MCMC" in r.getMessage()]
    assert len(switch) == 1 and "0% of 4000 pilot draws lie inside the prior" in switch[0]
    assert result.samples.shape == (300, 3) and np.all(np.abs(result.samples) <= 2)
    write_round(result, settings, {key: tmp_path / name for key, name in ROUND_FILES.items()})
    assert json.loads((tmp_path / ROUND_FILES["summary"]).read_text())["observation_coverage"]["outside"] is True


def test_observation_coverage_per_feature_and_jointly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 2)) @ np.array([[1.0, 0.9], [0.0, 0.3]])  # strongly correlated features
    inside = observation_coverage(x, Observation("typical", x[0], None))
    assert inside["outside"] is False and inside["features_outside"] == []
    # Inside each feature's range, but against the correlation: outside jointly.
    joint = observation_coverage(x, Observation("against", np.array([1.5, -1.5]), None))
    assert joint["outside"] is True and joint["features_outside"] == []
    assert joint["mahalanobis"] > joint["mahalanobis_max_simulated"]
    below = observation_coverage(x, Observation("low", np.array([x[:, 0].min() - 2.0, 0.0]), None))
    assert [(f["index"], round(f["beyond"], 6)) for f in below["features_outside"]] == [(0, 2.0)]


def one_feature(value: float) -> Observation:
    return Observation("one", np.array([value]), None)


def test_summary_table_warns_when_x_o_lies_outside_the_simulations():
    from seqsbi.plots import posterior_summary

    samples = np.random.default_rng(0).normal(size=(100, 1))
    x = np.random.default_rng(1).normal(size=(300, 1))
    assert "#" not in posterior_summary(samples, ["a"], [""], None, observation_coverage(x, one_feature(0.1)))
    table = posterior_summary(samples, ["a"], [""], None, observation_coverage(x, one_feature(25.0)))
    lines = table.splitlines()
    assert lines[2].startswith("# warning: x_o lies outside the final round's 300 simulations")
    assert lines[3].startswith("# x_o[0] = 25 is ") and "above their max" in lines[3]
    assert lines[4].startswith("# jointly: Mahalanobis distance")
