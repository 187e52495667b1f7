"""Dequantized censored features (training.dequantize_censored): SNLE's network trains on the AB floor's point mass
spread over an interval, x_o is evaluated at its middle, simulations on disk keep the floor; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from seqsbi import censoring
from seqsbi.config import plan_workflow
from seqsbi.errors import ConfigError
from seqsbi.simulators.galaxy import simulator as galaxy_simulator
from seqsbi.units import njy_to_ab, sigma_from_depth

torch.set_num_threads(1)
CODES = ["JWST/NIRCam.F115W", "JWST/NIRCam.F200W", "JWST/NIRCam.F444W"]
FLOOR = float(njy_to_ab(sigma_from_depth(29.0, 5)))  # every band's: one depth
#: An observation with two bands on the floor and one detected at 3 nJy.
SHEET = f"observation\tx_o\ng\t{FLOOR},{FLOOR},{float(njy_to_ab(3.0))}\n"


def test_dequantize_spreads_only_censored_values_uniformly_over_the_interval():
    floor = np.array([30.0, 31.0])
    rng = np.random.default_rng(0)
    detected = np.column_stack([rng.uniform(25, 30 - 1e-3, 20000), rng.uniform(25, 31 - 1e-3, 20000)])
    x = np.where(rng.random((20000, 2)) < 0.4, floor, detected)
    out = censoring.dequantize(x, floor, 0.5, np.random.default_rng(1))
    mask = censoring.censored(x, floor)
    assert 0.38 < mask.mean() < 0.42 and np.array_equal(out[~mask], x[~mask])
    for j in range(2):
        spread = out[mask[:, j], j] - floor[j]
        assert spread.min() >= 0 and spread.max() < 0.5
        assert stats.kstest(spread / 0.5, "uniform").pvalue > 1e-3
    assert not censoring.censored(out, floor + 1e-4)[~mask].any()  # detected values stay below the floor
    assert np.array_equal(x[mask], np.broadcast_to(floor, x.shape)[mask])  # the input is left alone
    x_o = np.array([30.0, 30.2])
    np.testing.assert_array_equal(censoring.at_midpoint(x_o, floor, 0.5), [30.25, 30.2])
    # float32 round trips (an x stored in a trainer) still count as censored
    floor32 = 30.0000009  # float32 rounds it down to 30 (its spacing there is 1.9e-6 mag)
    assert float(np.float32(floor32)) < floor32 and censoring.censored(np.float32(floor32), floor32)
    assert not censoring.censored(floor32 - 1e-4, floor32)


def test_dequantized_density_at_the_midpoint_is_the_censored_likelihood_over_the_width():
    """One band, flux ~ N(f, sigma): P(censored | f) = Phi((sigma - f) / sigma); the dequantized values' density
    around floor + w/2 is that over w, for every f - the same likelihood up to a constant, so the same posterior."""
    sigma, width, n = 1.0, 1.0, 200000
    floor = np.array([float(njy_to_ab(sigma))])
    rng = np.random.default_rng(2)
    for f in (0.0, 1.0, 2.5):
        flux = f + sigma * rng.standard_normal((n, 1))
        x = njy_to_ab(np.maximum(flux, sigma))
        out = censoring.dequantize(x, floor, width, rng)
        half = 0.05
        density = np.mean(np.abs(out[:, 0] - (floor[0] + width / 2)) < half) / (2 * half)
        expected = stats.norm.cdf((sigma - f) / sigma) / width
        assert density == pytest.approx(expected, rel=0.05)


@pytest.fixture
def faint_galaxy(monkeypatch, tmp_path):
    """The galaxy simulator with a model whose flux is 2 nJy in every band (no library needed): at a 29 AB depth
    (1-sigma 1.8 nJy) about 40% of the features sit on the floor."""
    monkeypatch.setattr(galaxy_simulator, "_rebuilt_simulator",
                        lambda *args: (lambda theta: np.full((theta.shape[0], len(CODES)), 2.0)))

    def plan(kind="ab_magnitude", sheet=SHEET, **run):
        (tmp_path / "obs.tsv").write_text(sheet)
        config = {"observations": str(tmp_path / "obs.tsv"),
                  "galaxy": {"filters": CODES, "features": {"kind": kind, "noise": {"depth_5sigma_ab": 29.0}}},
                  "runs": {"g": {"simulator": "galaxy", "prior": {"from_library": True}, "engine": "SNLE",
                                 "simulations_per_round": 400, "simulation_block_size": 200, "posterior_samples": 50,
                                 "network": {"hidden_features": 10, "num_transforms": 1},
                                 "training": {"max_num_epochs": 3}, "mcmc": {"num_chains": 5, "warmup_steps": 2},
                                 **run}}}
        return plan_workflow(config, check_devices=False)
    return plan


def test_snle_trains_on_dequantized_features_and_evaluates_x_o_at_the_middle(faint_galaxy, tmp_path):
    from seqsbi.artifacts import ROUND_FILES
    from seqsbi.rounds import read_previous_round, train_round, write_round

    plan = faint_galaxy(training={"max_num_epochs": 3, "dequantize_censored": 0.8})
    settings, observation = plan.settings("g", "g"), plan.observations["g"]
    assert censoring.censoring_floor(settings) == pytest.approx([FLOOR] * 3)
    round0 = train_round(settings, observation, 0)
    floor = np.full(3, FLOOR)
    mask = censoring.censored(round0.x, floor)
    assert 0.2 < mask.mean() < 0.6  # the round's own simulations keep the floor
    trained = round0.inference.get_simulations()[1].numpy().astype(float)
    assert not (trained == np.float32(FLOOR)).any()
    assert np.all((trained[mask] > FLOOR - 1e-5) & (trained[mask] < FLOOR + 0.8 + 1e-5))
    assert trained[mask].mean() == pytest.approx(FLOOR + 0.4, abs=0.05)
    np.testing.assert_allclose(trained[~mask], round0.x[~mask], rtol=1e-6)
    default_x = round0.posterior.default_x.numpy()[0].astype(float)
    np.testing.assert_allclose(default_x, [FLOOR + 0.4, FLOOR + 0.4, njy_to_ab(3.0)], rtol=1e-6)
    # the same dequantized training set from the same seed; round 1 from disk appends its own, also spread
    again = train_round(settings, observation, 0).inference.get_simulations()[1].numpy()
    np.testing.assert_array_equal(again, trained.astype(np.float32))
    outputs = {key: tmp_path / "round_0" / name for key, name in ROUND_FILES.items()}
    write_round(round0, settings, outputs)
    previous = read_previous_round(outputs["inference"], outputs["posterior"], settings, outputs["samples"])
    round1 = train_round(settings, observation, 1, previous)
    trained1 = round1.inference.get_simulations(starting_round=1)[1].numpy().astype(float)
    assert censoring.censored(round1.x, floor).any() and not (trained1 == np.float32(FLOOR)).any()
    np.testing.assert_allclose(round1.posterior.default_x.numpy()[0], default_x, rtol=1e-6)


def test_without_the_key_nothing_changes(faint_galaxy):
    from seqsbi.rounds import train_round

    plan = faint_galaxy()
    settings = plan.settings("g", "g")
    result = train_round(settings, plan.observations["g"], 0)
    np.testing.assert_array_equal(result.inference.get_simulations()[1].numpy(), result.x.astype(np.float32))
    np.testing.assert_allclose(result.posterior.default_x.numpy()[0], plan.observations["g"].x_o, rtol=1e-6)


def test_the_floor_follows_the_observations_own_errors_and_bands(faint_galaxy):
    """A sheet row with x_err: the floor is the magnitude of each band's own error, for the bands it has; a value
    of x_o fainter than its floor is taken as censored, with a warning."""
    plan = faint_galaxy(training={"dequantize_censored": 1.0}, sheet="observation\tx_o\tx_err\ng\t1,nan,1\t0.5,1,2\n")
    settings = plan.settings("g", "g")
    np.testing.assert_allclose(censoring.censoring_floor(settings), njy_to_ab(np.array([0.5, 2.0])))
    x_o = plan.observations["g"].x_o
    np.testing.assert_allclose(censoring.network_x_o(settings, x_o), [njy_to_ab(1.0), njy_to_ab(2.0) + 0.5])
    import logging

    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("seqsbi.censoring").addHandler(handler)
    try:
        moved = censoring.network_x_o(settings, np.array([20.0, njy_to_ab(2.0) + 0.3]), "g")
        rounded = censoring.network_x_o(settings, np.array([32.152, 20.0]), "g")  # the floor 32.15257 rounded down
    finally:
        logging.getLogger("seqsbi.censoring").removeHandler(handler)
    assert moved[1] == pytest.approx(njy_to_ab(2.0) + 0.5)
    assert any(m.startswith("g: JWST/NIRCam.F444W 30.9474 (floor 30.6474) fainter than the 1-sigma floor")
               for m in messages), messages
    assert rounded[0] == 32.152  # a detection, as given
    assert any("JWST/NIRCam.F115W 32.1520 (floor 32.1526) less than 0.01 mag brighter" in m for m in messages), messages
    assert censoring.as_simulated(settings, np.array([20.0, 33.0]))[1] == pytest.approx(njy_to_ab(2.0))


@pytest.mark.parametrize("run, message", [
    ({"engine": "SNPE"}, r"runs.g.training.dequantize_censored is set, but engine SNPE does not learn the density"),
    ({"engine": "SNRE", "density_estimator": "mlp"}, r"engine SNRE does not learn the density"),
    ({"kind": "flux"}, r"runs.g.training.dequantize_censored is set, but runs.g's features have no censoring "
                           r"floor"),
])
def test_dequantization_is_refused_where_it_cannot_apply(faint_galaxy, run, message):
    with pytest.raises(ConfigError, match=message):
        faint_galaxy(training={"dequantize_censored": 1.0}, **run)


def test_dequantization_is_refused_for_an_amortized_estimator_and_a_toy_run():
    from conftest import tiny_run
    from seqsbi.config import run_settings, validate_config

    config = validate_config({"runs": {"r": tiny_run(engine="SNLE", training={"dequantize_censored": 1.0})}})
    with pytest.raises(ConfigError, match=r"runs.r.training.dequantize_censored is set, but runs.r's features have "
                                          r"no censoring floor"):
        run_settings("r", config["runs"]["r"], [])
    from seqsbi import amortized
    from test_catalogue import toy_block

    config = toy_block(training={"dequantize_censored": 1.0})
    with pytest.raises(ConfigError, match=r"amortized.toy.training.dequantize_censored is set, but an amortized "
                                          r"estimator is a posterior network"):
        amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"])


def test_a_refinements_round_zero_trainer_holds_dequantized_rows_from_round_zeros_seed(faint_galaxy):
    """round_zero_trainer (a refinement's round 0: the amortized estimator's rows, in-process or rebuilt from disk by
    train_round.py) spreads them with round 0's seed: both builds hold the same rows."""
    from seqsbi.refine import round_zero_trainer
    from seqsbi.seeds import round_seed

    plan = faint_galaxy(training={"dequantize_censored": 0.5})
    settings = plan.settings("g", "g")
    rng = np.random.default_rng(4)
    theta0 = rng.uniform(settings.prior.low, settings.prior.high, (300, settings.prior.dim))
    x0 = njy_to_ab(np.maximum(2.0 + 1.82 * rng.standard_normal((300, 3)), sigma_from_depth(29.0, 5)))
    seed = round_seed(settings.seed, settings.name, "g", 0)
    held = [round_zero_trainer(settings, theta0, x0, seed).get_simulations()[1].numpy() for _ in range(2)]
    np.testing.assert_array_equal(held[0], held[1])
    mask = censoring.censored(x0, np.full(3, FLOOR))
    assert mask.mean() > 0.2 and not (held[0] == np.float32(FLOOR)).any()
    assert np.all(held[0][mask] < FLOOR + 0.5 + 1e-5)
