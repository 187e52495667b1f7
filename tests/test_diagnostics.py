"""Posterior checks in-process (seqsbi.diagnostics): predictive check, C2ST between rounds and against a
reference posterior, training verdicts, and their figures. The workflow and report: test_catalog.py."""

from __future__ import annotations

import numpy as np
import pytest

from seqsbi import diagnostics, plots
from seqsbi.errors import ArtifactError
from seqsbi.simulators.galaxy.features import FluxNoise, simulate_features
from seqsbi.simulators.toy import linear_gaussian
from seqsbi.units import njy_to_ab, sigma_from_depth

NAMES = ["theta_1", "theta_2", "theta_3"]


def analytic_posterior(x_o: np.ndarray, n: int, seed: int, shift: float = 1.0, noise: float = 0.1) -> np.ndarray:
    """Draws from the linear Gaussian's posterior N(x_o - shift, noise^2) per dimension (box prior wide enough)."""
    return x_o - shift + noise * np.random.default_rng(seed).standard_normal((n, len(x_o)))


def test_predictive_check_accepts_the_true_posterior_and_rejects_a_wrong_one():
    x_o = np.zeros(3)
    right = analytic_posterior(x_o, 4000, 1)
    check = diagnostics.predictive_check(linear_gaussian, right, x_o, 800, seed=3)
    # Predictive x ~ N(0, 2 * 0.1^2): x_o = 0 is central in every feature.
    assert check.p_value > 0.2
    assert np.all(np.abs(check.z) < 1.5) and np.allclose(check.quantiles[2], 0, atol=0.03)
    assert np.allclose(check.quantiles[3] - check.quantiles[1], 2 * 0.1 * np.sqrt(2), rtol=0.15)
    wrong = right + np.array([0.5, 0, 0])  # theta_1 off by 3.5 predictive standard deviations
    check = diagnostics.predictive_check(linear_gaussian, wrong, x_o, 800, seed=3)
    assert check.p_value < 0.01 and check.z[0] < -3 and check.quantile_of_observed[0] < 0.01
    table = diagnostics.predictive_table(check)
    assert table.splitlines()[0].split("\t")[:3] == ["feature", "unit", "observed"]
    assert len([line for line in table.splitlines() if not line.startswith("#")]) == 1 + 3
    assert f"p-value {check.p_value:.3f}" in table


def test_predictive_check_marks_censored_bands_and_gives_magnitude_errors(tmp_path):
    depth = 28.0
    noise = FluxNoise.from_config({"depth_5sigma_ab": depth}, 3)
    sigma = sigma_from_depth(np.full(3, depth), 5)  # nJy
    true_flux = np.array([50 * sigma[0], 10 * sigma[1], 0.01 * sigma[2]])  # bright, faint, undetected

    def simulate(theta, rng):
        return simulate_features(np.repeat(true_flux[None, :], len(theta), axis=0), "ab_magnitude", noise, rng)

    x_o = simulate(np.zeros((1, 1)), np.random.default_rng(0))[0]
    x_o[2] = njy_to_ab(sigma[2])  # at the 1-sigma floor: censored
    settings = {"features": "ab_magnitude", "noise": {"depth_5sigma_ab": depth}}
    errors = diagnostics.observation_errors("galaxy", settings, x_o)
    assert errors.censored.tolist() == [False, False, True]
    # sigma_m = 1.0857 sigma_f / f: about 1.0857 / 50 for the bright band.
    assert errors.sigma[0] == pytest.approx(2.5 / np.log(10) * sigma[0] / (10 ** ((31.4 - x_o[0]) / 2.5)))
    assert 0.015 < errors.sigma[0] < 0.03
    assert np.isnan(diagnostics.observation_errors("linear_gaussian", {}, x_o).sigma).all()
    check = diagnostics.predictive_check(simulate, np.zeros((100, 1)), x_o, 100, 1, errors, ["F1", "F2", "F3"])
    table = diagnostics.predictive_table(check, "AB mag")
    rows = [line.split("\t") for line in table.splitlines()[1:4]]
    assert [row[4] for row in rows] == ["false", "false", "true"] and rows[2][0] == "F3"
    assert "# censored:" in table
    plots.predictive_plot(check, tmp_path / "ppc.png", "AB mag", "galaxy | row")
    assert (tmp_path / "ppc.png").read_bytes()[:4] == b"\x89PNG"


def test_predictive_check_refuses_a_simulator_returning_no_finite_values():
    with pytest.raises(ArtifactError, match="finite"):
        diagnostics.predictive_check(lambda theta, rng: np.full((len(theta), 2), np.nan), np.zeros((10, 1)),
                                     np.zeros(2), 10, 0)


def test_convergence_c2st_against_a_reference_samples_file(tmp_path):
    from seqsbi.artifacts import read_npz, write_npz

    x_o = np.array([0.5, -0.3, 0.2])
    # A fake reference run's output, as the likelihood engine writes it: the analytic posterior.
    path = tmp_path / "reference" / "samples.npz"
    write_npz(path, samples=analytic_posterior(x_o, 3000, 11), parameter_names=np.array(NAMES),
              parameter_units=np.array(["m"] * 3))
    reference = diagnostics.check_reference(read_npz(path), NAMES, str(path))
    wide = x_o - 1 + 0.3 * np.random.default_rng(2).standard_normal((2000, 3))  # a first round: too wide
    right = analytic_posterior(x_o, 2000, 3)
    rows = diagnostics.convergence_table([wide, right], NAMES, n=300, seed=0, reference=reference)
    assert [row["round"] for row in rows] == [0, 1] and np.isnan(rows[0]["c2st_previous_round"])
    assert rows[0]["c2st_reference"] > 0.75 and rows[1]["c2st_previous_round"] > 0.75  # the wide round differs
    assert rows[1]["c2st_reference"] < 0.6  # the right one does not
    assert rows[1]["theta_1_width68"] == pytest.approx(0.2, rel=0.1)
    assert "round 1) still moved: C2ST" in diagnostics.last_round_moved(rows, 0.55)
    assert diagnostics.last_round_moved(rows, 0.99) is None and diagnostics.last_round_moved(rows[:1], 0.55) is None
    csv = diagnostics.rows_to_csv(rows).splitlines()
    assert csv[0].endswith("c2st_previous_round,c2st_reference") and len(csv) == 3
    plots.convergence_plot(rows, NAMES, tmp_path / "convergence.png", 0.55)
    plots.pairplot([wide, right], NAMES, np.array([[-2, 2]] * 3), tmp_path / "pair.png", reference=reference)
    assert (tmp_path / "pair.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ArtifactError, match="same prior parameters"):
        diagnostics.check_reference(read_npz(path), NAMES[::-1], str(path))


def test_training_verdict_flags_a_round_stopped_at_the_cap_while_still_improving(tmp_path):
    epochs = np.arange(1, 51)
    falling = 5 * np.exp(-epochs / 30)
    settled = np.r_[5 * np.exp(-epochs[:30] / 5), np.full(20, 5 * np.exp(-6)) + 0.01]
    verdicts = [diagnostics.training_verdict(falling, 50), diagnostics.training_verdict(settled, 50),
                diagnostics.training_verdict(falling[:30], 50)]
    assert [v["warning"] for v in verdicts] == [True, False, False]
    assert verdicts[1]["at_max_epochs"] and not verdicts[1]["still_falling"] and verdicts[1]["best_epoch"] == 30
    assert verdicts[2]["still_falling"] and not verdicts[2]["at_max_epochs"]
    table = diagnostics.training_table(verdicts, 50)
    assert "# warning: round(s) 0 stopped at max_num_epochs = 50" in table
    log = tmp_path / "training_log.tsv"
    log.write_text("epoch\ttraining_loss\tvalidation_loss\n" + "".join(
        f"{e}\t{v + 0.1:.6g}\t{v:.6g}\n" for e, v in zip(epochs, falling)))
    read = diagnostics.read_training_log(log)
    assert np.allclose(read["validation_loss"], falling, rtol=1e-5) and read["epoch"][-1] == 50
    plots.training_curves_plot([read, read], verdicts[:2], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_schema_takes_reference_and_diagnostics_and_refuses_bad_values():
    from conftest import tiny_run
    from seqsbi.config import validate_config
    from seqsbi.errors import ConfigError

    config = {"observations": "obs.tsv",
              "runs": {"fit": tiny_run(reference="exact", diagnostics={"predictive_samples": 100, "moved_c2st": 0.6})}}
    filled = validate_config(config)["runs"]["fit"]
    assert filled["reference"] == "exact"
    assert diagnostics.settings_of(filled) == {**diagnostics.DEFAULTS, "predictive_samples": 100, "moved_c2st": 0.6}
    with pytest.raises(ConfigError, match="moved_c2st"):
        validate_config({"observations": "obs.tsv", "runs": {"fit": tiny_run(diagnostics={"moved_c2st": 0.3})}})


def test_progress_bars_on_a_terminal_and_one_timing_line_in_a_job_log(tmp_path, monkeypatch, caplog):
    import io
    import logging
    import sys

    from seqsbi.logs import log_to_file, progress_bars
    from seqsbi.scatter import simulate_blocks
    from seqsbi.simulators import resolve_simulator

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    simulator = resolve_simulator("linear_gaussian", {})
    for stream, bar in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert progress_bars() is bar
        with caplog.at_level(logging.INFO, logger="seqsbi.scatter"):
            simulate_blocks(simulator, np.zeros((30, 3)), 0, 10, 1)
        assert ("simulating" in stream.getvalue() and "30/30" in stream.getvalue()) is bar
        assert "simulated 30 parameter vectors in 3 block(s)" in caplog.text
        caplog.clear()
    monkeypatch.undo()
    with log_to_file(tmp_path / "job.log"):  # a job: stderr is its log file
        assert not progress_bars()
    logging.basicConfig(force=True)  # leave no handler on the closed log file


def test_observation_errors_use_the_observations_own_errors_and_only_its_bands():
    # Three filters, the second missing for this observation; its own errors 10 and 40 nJy on the others.
    settings = {"features": "flux_njy", "noise": {"depth_5sigma_ab": 28.0}, "filters": ["A.a", "A.b", "A.c"],
                "sigma_njy": [10.0, None, 40.0], "bands": [0, 2]}
    errors = diagnostics.observation_errors("galaxy", settings, np.array([100.0, 5.0]))
    assert errors.sigma.tolist() == [10.0, 40.0]
    settings["features"] = "ab_magnitude"
    x_o = njy_to_ab(np.array([100.0, 40.0]))  # the second band at its own 1-sigma floor: censored
    errors = diagnostics.observation_errors("galaxy", settings, x_o)
    assert errors.censored.tolist() == [False, True]
    assert errors.sigma[0] == pytest.approx(2.5 / np.log(10) * 10.0 / 100.0)
