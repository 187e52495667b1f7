"""Rounds in-process: each engine trains, writes its artifacts and continues from disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_run
from seqsbi.artifacts import ROUND_FILES, read_npz
from seqsbi.config import run_settings, validate_config
from seqsbi.errors import ConfigError
from seqsbi.observations import Observation
from seqsbi.rounds import read_previous_round, train_round, write_round

torch.set_num_threads(1)
OBSERVATION = Observation("zero", np.zeros(2), np.array([-1.0, -1.0]))


def settings_for(engine: str, **overrides):
    overrides.setdefault("prior", {"parameters": [{"name": "a", "low": -2, "high": 2},
                                                  {"name": "b", "low": -2, "high": 2}]})
    overrides.setdefault("posterior_samples", 200)
    overrides.setdefault("training", {"max_num_epochs": 300})
    overrides.setdefault("mcmc", {"num_chains": 10, "warmup_steps": 20})
    run = tiny_run(engine=engine, simulations_per_round=150, truncation={"support_samples": 20000}, **overrides)
    if engine == "SNRE":
        run["density_estimator"] = "mlp"
    config = validate_config({"runs": {"r": run}})
    return run_settings("r", config["runs"]["r"], ["zero"])


def outputs_in(directory):
    return {key: directory / name for key, name in ROUND_FILES.items()}


def round_zero_from_disk(tmp_path, settings):
    directory = tmp_path / "round_0"
    return read_previous_round(directory / "inference.pt", directory / "posterior.pt", settings,
                               directory / "samples.npz")


@pytest.mark.parametrize("engine", ["SNPE", "TSNPE", "NPE", "SNLE", "SNRE"])
def test_two_rounds_through_disk(tmp_path, engine):
    settings = settings_for(engine)
    round0 = train_round(settings, OBSERVATION, 0)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    previous = round_zero_from_disk(tmp_path, settings)
    round1 = train_round(settings, OBSERVATION, 1, previous)
    write_round(round1, settings, outputs_in(tmp_path / "round_1"))

    for k in (0, 1):
        directory = tmp_path / f"round_{k}"
        assert sorted(p.name for p in directory.iterdir()) == sorted(ROUND_FILES.values())
        sims = read_npz(directory / "simulations.npz")
        assert sims["theta"].shape == (150, 2) and sims["x"].shape == (150, 2)
        samples = read_npz(directory / "samples.npz")
        assert samples["samples"].shape == (200, 2) and samples["parameter_names"].tolist() == ["a", "b"]
        log = (directory / "training_log.tsv").read_text().splitlines()
        assert log[0] == "epoch\ttraining_loss\tvalidation_loss" and len(log) > 1
        summary = json.loads((directory / "round.json").read_text())
        assert summary["round"] == k and summary["simulations_total"] == 150 * (k + 1)
    # Round 1 trained on both rounds' simulations: round 0's first, then its own.
    theta, x, _ = round1.inference.get_simulations()
    assert np.array_equal(theta.numpy(), np.concatenate([round0.theta, round1.theta]).astype(np.float32))
    assert np.array_equal(x.numpy(), np.concatenate([round0.x, round1.x]).astype(np.float32))
    if engine == "NPE":
        # ... drawn from the prior again: uniform on [-2, 2]^2 has std 4 / sqrt(12) = 1.15.
        assert np.all(np.abs(round1.theta.std(axis=0) - 1.15) < 0.2)
    elif engine != "SNRE":
        # ... drawn from round 0's posterior (or, for TSNPE, the prior truncated to it), concentrated
        # around the truth (-1, -1) compared with the prior box [-2, 2]^2 (SNRE's 150-simulation
        # classifier is too rough to say).
        assert np.all(round1.theta.std(axis=0) < 0.8 * round0.theta.std(axis=0))
        assert np.all(round1.theta >= -2) and np.all(round1.theta <= 2)


def test_disk_continuation_equals_in_process_continuation(tmp_path):
    """Round 1 resumed from round 0's files gives the same samples as sbi's in-memory loop."""
    settings = settings_for("SNPE")
    round0 = train_round(settings, OBSERVATION, 0)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    in_memory = train_round(settings, OBSERVATION, 1, round0)
    previous = round_zero_from_disk(tmp_path, settings)
    from_disk = train_round(settings, OBSERVATION, 1, previous)
    assert np.array_equal(in_memory.theta, from_disk.theta)
    assert np.array_equal(in_memory.samples, from_disk.samples)


@pytest.mark.parametrize("engine", ["SNPE", "SNLE", "TSNPE"])
def test_proposal_reuses_the_previous_rounds_samples_when_it_is_that_posterior(tmp_path, engine):
    """SNPE/SNLE/SNRE propose from round k-1's posterior, which round k-1 already sampled: round k
    takes those samples first and draws only the rest (here it needs 150 and has 100: 50 new).
    TSNPE proposes from a truncated prior, a different distribution: nothing is reused."""
    settings = settings_for(engine, posterior_samples=100)
    round0 = train_round(settings, OBSERVATION, 0)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    round1 = train_round(settings, OBSERVATION, 1, round_zero_from_disk(tmp_path, settings))
    reused = np.array_equal(round1.theta[:100], round0.samples)
    assert reused == (engine != "TSNPE")
    assert round1.theta.shape == (150, 2) and not np.isin(round1.theta[100:], round0.samples).any()


def test_round_one_warm_starts_from_round_zeros_network(tmp_path, monkeypatch):
    """Round 1 continues round 0's trainer read back from disk: its training starts from the weights
    round 0 trained (not a fresh network), moves them, and fits both rounds' simulations."""
    settings = settings_for("SNPE")
    round0 = train_round(settings, OBSERVATION, 0)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    trained = list(torch.load(tmp_path / "round_0" / "estimator.pt", weights_only=False).parameters())
    # sbi builds a new Adam over the network's parameters when train() starts: record what they hold then.
    starting_weights = []
    adam_init = torch.optim.Adam.__init__

    def recording_init(self, params, *args, **kwargs):
        params = list(params)
        starting_weights.append([p.detach().clone() for p in params])
        adam_init(self, params, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "__init__", recording_init)
    round1 = train_round(settings, OBSERVATION, 1, round_zero_from_disk(tmp_path, settings))

    assert len(starting_weights) == 1
    start = starting_weights[0]
    assert [p.shape for p in start] == [p.shape for p in trained]
    assert all(torch.equal(a, b) for a, b in zip(start, trained))
    assert not all(torch.equal(a, b) for a, b in zip(round1.estimator.parameters(), trained))
    assert round1.summary["epochs"] >= 1
    theta, _, _ = round1.inference.get_simulations()
    assert theta.shape == (300, 2)
    assert np.array_equal(theta[:150].numpy(), round0.theta.astype(np.float32))


def test_round_zero_refuses_a_previous_round():
    settings = settings_for("SNPE")
    with pytest.raises(ValueError, match="round 0 needs no"):
        train_round(settings, OBSERVATION, 0, previous=object())


@pytest.mark.parametrize("engine", ["SNPE", "TSNPE"])
def test_constrained_flow_keeps_every_round_inside_the_prior(tmp_path, engine):
    """With constrain_to_prior the flow lives behind a logit map of the box: no mass can leave it,
    even with the truth on the prior's edge (x_o = 0.9 + 1 for the box [-2, 1])."""
    prior = {"parameters": [{"name": "a", "low": -2, "high": 1}, {"name": "b", "low": -2, "high": 1}]}
    settings = settings_for(engine, constrain_to_prior=True, prior=prior)
    edge = Observation("edge", np.array([1.9, 1.9]), np.array([0.9, 0.9]))
    round0 = train_round(settings, edge, 0)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    previous = round_zero_from_disk(tmp_path, settings)
    round1 = train_round(settings, edge, 1, previous)
    for result in (round0, round1):
        assert result.summary["posterior_mass_inside_prior"] == 1.0
        assert result.summary["constrain_to_prior"] is True
        assert np.all(result.samples > -2) and np.all(result.samples < 1)
    assert np.all(round1.samples.mean(axis=0) > 0.3)  # near the edge, where the truth is


def test_constrain_to_prior_names_the_estimators_it_supports():
    expected = (r"^runs\.r\.density_estimator: 'mdn' cannot be bounded to the prior \(constrain_to_prior: true\); "
                r"use maf or nsf, or set constrain_to_prior: false$")
    with pytest.raises(ConfigError, match=expected):
        settings_for("SNPE", constrain_to_prior=True, density_estimator="mdn")


def test_first_round_restarts_keep_the_network_with_the_lowest_validation_loss(tmp_path):
    single = train_round(settings_for("SNLE"), OBSERVATION, 0)
    settings = settings_for("SNLE", training={"max_num_epochs": 300, "first_round_restarts": 3})
    round0 = train_round(settings, OBSERVATION, 0)
    losses = round0.summary["restart_validation_losses"]
    # Restart 0 is the single training itself; the others differ only in the network's initialisation.
    assert len(losses) == 3 and len(set(losses)) == 3
    assert losses[0] == pytest.approx(single.summary["best_validation_loss"])
    assert round0.summary["best_validation_loss"] == pytest.approx(min(losses))
    assert round0.summary["epochs"] == len(round0.training_log)
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    round1 = train_round(settings, OBSERVATION, 1, round_zero_from_disk(tmp_path, settings))
    assert "restart_validation_losses" not in round1.summary  # later rounds warm-start the chosen network


def test_first_round_restarts_must_be_at_least_one():
    with pytest.raises(ConfigError, match=r"first_round_restarts: 0 is less than the minimum of 1"):
        settings_for("SNLE", training={"first_round_restarts": 0})


def test_proposals_at_an_upper_bound_move_one_float32_step_below_it():
    from seqsbi.rounds import below_upper_bounds

    high = np.array([1000.0, 5.0])
    theta = np.array([[np.float32(1000.0), 1.0], [999.0, 5.0], [10.0, 4.9999]])
    moved = below_upper_bounds(theta, high)
    assert moved[0, 0] < 1000 and np.float32(moved[0, 0]) == np.nextafter(np.float32(1000), np.float32(0))
    assert moved[1, 1] < 5 and (np.asarray(moved, dtype=np.float32) < high.astype(np.float32)).all()
    np.testing.assert_array_equal(np.delete(moved.ravel(), [0, 3]), np.delete(theta.ravel(), [0, 3]))
    np.testing.assert_array_equal(below_upper_bounds(theta[2:], high), theta[2:])  # nothing at a bound


@pytest.mark.parametrize("engine", ["SNLE", "SNRE"])
def test_rounds_from_scratch_on_their_own_simulations_sample_inside_their_box(tmp_path, engine):
    """training.retrain_from_scratch + discard_prior_samples + mcmc.restrict_to_training_box: round 1, continued
    from disk (sbi drops the network builder when pickling a trainer), trains a new network on round 1's
    simulations alone (z-scored on them) and samples inside the box of their parameters."""
    settings = settings_for(engine, training={"max_num_epochs": 300, "retrain_from_scratch": True,
                                              "discard_prior_samples": True},
                            mcmc={"num_chains": 10, "warmup_steps": 20, "restrict_to_training_box": True})
    round0 = train_round(settings, OBSERVATION, 0)
    assert "training_box" not in round0.summary  # round 0 trains on prior draws: the prior is its box
    write_round(round0, settings, outputs_in(tmp_path / "round_0"))
    previous = round_zero_from_disk(tmp_path, settings)
    continued = previous.inference._neural_net  # what a warm start would train on
    round1 = train_round(settings, OBSERVATION, 1, previous)

    assert round1.estimator is not continued
    # A new network z-scores theta on its own training rows, round 1's (around the truth (-1, -1)), not on
    # the prior's draws (mean 0) nor on x (round 1's x are near 0, round 0's near 1).
    means = [m.mean.numpy() for m in round1.estimator.modules() if type(m).__name__ == "Standardize"]
    assert any(np.allclose(mean, round1.theta.mean(axis=0), atol=0.15) for mean in means)
    low, high = round1.theta.min(axis=0), round1.theta.max(axis=0)
    snap = 0.01 * (high - low)  # faces this close to the prior's are the prior's
    low, high = np.where(low < -2 + snap, -2, low), np.where(high > 2 - snap, 2, high)
    assert np.all(high - low < 3.9)  # narrower than the prior [-2, 2]^2, so the restriction does something
    support = round1.posterior.potential_fn.prior.support.base_constraint  # the MCMC's prior: the box
    assert np.allclose(support.lower_bound.numpy(), low) and np.allclose(support.upper_bound.numpy(), high)
    assert np.all(round1.samples >= low - 1e-6) and np.all(round1.samples <= high + 1e-6)
    box = round1.summary["training_box"]
    assert box["box"] == {name: [float(a), float(b)] for name, a, b in zip("ab", low, high)}
    assert set(box["edge_shares"]) <= {"a low", "a high", "b low", "b high"}
    write_round(round1, settings, outputs_in(tmp_path / "round_1"))
    assert json.loads((tmp_path / "round_1" / "round.json").read_text())["training_box"] == box


def test_training_box_leaves_out_round_zero_and_takes_the_priors_faces_within_a_hundredth_of_its_width():
    from seqsbi.engines import training_box

    class Trainer:  # what training_box reads of an sbi trainer
        _data_round_index = [0, 1]

        def get_simulations(self, starting_round=0):
            theta = [[-2.0, -2.0], [2.0, 2.0]] if starting_round == 0 else []
            theta = theta + [[-1.0, -1.97], [0.5, 1.9]]  # b: width 3.87, so 0.03 from -2 is within 1%, 0.1 is not
            return torch.tensor(theta[:2] if starting_round == 0 else theta), None, None

    settings = settings_for("SNLE", training={"discard_prior_samples": True},
                            mcmc={"restrict_to_training_box": True})
    low, high = training_box(Trainer(), settings)
    assert low.tolist() == [-1.0, -2.0] and np.allclose(high, [0.5, 1.9])
    assert training_box(Trainer(), settings_for("SNLE", training={"discard_prior_samples": True})) is None


def test_training_box_edges_warn_when_the_posterior_presses_against_an_edge(caplog, monkeypatch):
    import logging

    from seqsbi.engines import training_box_edges

    # Earlier in-process runs may leave the root logger's level above WARNING, or this logger disabled.
    caplog.set_level(logging.WARNING, logger="seqsbi.engines")
    logger = logging.getLogger("seqsbi.engines")
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [*logger.handlers, caplog.handler])  # also if a parent stops propagation

    settings = settings_for("SNLE")
    box = (np.array([-1.0, -2.0]), np.array([1.0, 2.0]))  # b's faces are the prior's: never reported
    samples = np.column_stack([np.linspace(-1, 1, 1000), np.zeros(1000)])
    quiet = training_box_edges(samples, box, settings, 1)
    assert set(quiet["edge_shares"]) == {"a low", "a high"} and "warning" not in quiet
    samples[:100, 0] = 0.995  # 10% piled against a's upper edge
    loud = training_box_edges(samples, box, settings, 1)
    assert loud["edge_shares"]["a high"] > 0.1 and "a (1" in loud["warning"] and "high edge" in loud["warning"]
    assert "high edge on a" in caplog.text


def test_a_gaussian_parameter_stays_gaussian_inside_the_training_box():
    """An observation's known redshift (a Gaussian prior) restricted to the box: the same Gaussian, truncated."""
    from seqsbi.torch_priors import IndependentPrior

    prior = {"parameters": [{"name": "a", "low": -2, "high": 2, "distribution": "gaussian", "mean": -1, "std": 0.3},
                            {"name": "b", "low": -2, "high": 2}]}
    settings = settings_for("SNLE", prior=prior, training={"max_num_epochs": 300, "retrain_from_scratch": True,
                                                           "discard_prior_samples": True},
                            mcmc={"num_chains": 10, "warmup_steps": 20, "restrict_to_training_box": True})
    round1 = train_round(settings, OBSERVATION, 1, train_round(settings, OBSERVATION, 0))
    restricted = round1.posterior.potential_fn.prior
    assert isinstance(restricted, IndependentPrior) and restricted.kinds == ("gaussian", "uniform")
    box = round1.summary["training_box"]["box"]
    assert np.allclose(restricted.low.numpy(), [box["a"][0], box["b"][0]])
    inside = torch.tensor([[-1.0, -1.0], [-1.2, -1.0]])
    ratio = (restricted.log_prob(inside) - settings_prior_log_prob(settings, inside)).numpy()
    assert np.isclose(ratio[0], ratio[1], atol=1e-4)  # the Gaussian's shape, only renormalised


def settings_prior_log_prob(settings, theta):
    from seqsbi.engines import make_prior

    return make_prior(settings.prior, "cpu").log_prob(theta)


@pytest.mark.parametrize("engine, training, message", [
    ("SNPE", {"discard_prior_samples": True}, "does not sample its posterior by MCMC"),
    ("SNLE", {}, "needs training.discard_prior_samples: true"),
    ("TSNPE", {"discard_prior_samples": True}, "draws every round from the"),
])
def test_restrict_to_training_box_is_refused_where_it_cannot_apply(engine, training, message):
    mcmc = {} if engine == "TSNPE" else {"restrict_to_training_box": True}
    run = tiny_run(engine=engine, training=training, mcmc=mcmc)
    config = validate_config({"runs": {"r": run}})
    with pytest.raises(ConfigError, match=message):
        run_settings("r", config["runs"]["r"], ["zero"])
