"""Real photometry (issue 18): per-observation noise, feature kinds, missing bands, per-observation and
non-box priors, and the bad inputs they bring. In-process and cheap (no library or grid is built)."""

from __future__ import annotations

import numpy as np
import pytest

from seqsbi.config import observation_prior, plan_workflow
from seqsbi.errors import ConfigError
from seqsbi.observations import Observation
from seqsbi.priors import ParameterSpace
from seqsbi.simulators.galaxy import simulator as galaxy_simulator
from seqsbi.simulators.galaxy.features import (
    FluxNoise,
    noise_for_observation,
    observation_features,
    simulate_features,
    to_features,
)

CODES = ["JWST/NIRCam.F070W", "JWST/NIRCam.F090W", "JWST/NIRCam.F115W", "JWST/NIRCam.F150W",
         "JWST/NIRCam.F200W", "JWST/NIRCam.F277W", "JWST/NIRCam.F356W", "JWST/NIRCam.F444W"]
BANDS = [code.rsplit(".", 1)[1] for code in CODES]


@pytest.fixture
def constant_flux(monkeypatch):
    """The galaxy simulator with a model whose flux is 10 nJy in every band (no library needed)."""
    monkeypatch.setattr(galaxy_simulator, "_rebuilt_simulator",
                        lambda *args: (lambda theta: np.full((theta.shape[0], len(CODES)), 10.0)))
    return dict(library="unused", svo_filter_cache="unused", filters=CODES, noise={"depth_5sigma_ab": 29.0})


# --- 1. per-observation noise -------------------------------------------------------------------------------------

def test_the_simulator_uses_the_observations_own_errors_and_the_depth_only_without_them(constant_flux):
    errors = [1.0, 2.0, 4.0, 8.0, 1.0, 2.0, 4.0, 8.0]
    theta = np.zeros((20000, 6))
    x = galaxy_simulator.galaxy(theta, np.random.default_rng(0), features="flux", sigma_njy=errors, **constant_flux)
    assert np.allclose(x.std(axis=0), errors, rtol=0.03)
    depth = galaxy_simulator.galaxy(theta, np.random.default_rng(0), features="flux", **constant_flux)
    assert np.allclose(depth.std(axis=0), 10 ** ((31.4 - 29) / 2.5) / 5, rtol=0.03)


def test_error_floor_from_config_applies_to_the_observations_errors():
    noise = noise_for_observation({"depth_5sigma_ab": 29.0, "max_snr": 10}, 2, np.array([1.0, 1.0]))
    assert noise.source == "observation"
    assert np.allclose(noise.sigma(np.array([[5.0, 100.0]])), [[1.0, 10.0]])
    assert noise_for_observation(None, 2) is None


# --- 2. feature kinds ---------------------------------------------------------------------------------------------

def test_flux_features_are_scaled_per_band_and_asinh_is_softened_per_band():
    flux = np.array([[100.0, -3.0]])
    assert np.allclose(to_features(flux, "flux", flux_scale_njy=np.array([10.0, 1.0])), [[10.0, -3.0]])
    noise = FluxNoise(np.array([1.0, 100.0]))
    asinh = to_features(flux, "asinh_magnitude", noise.sigma(flux), softening_njy=noise.softening_njy)
    assert np.all(np.isfinite(asinh))
    # a bright flux in a band with a small sigma is its AB magnitude; the same flux near a large sigma is not
    assert asinh[0, 0] == pytest.approx(31.4 - 5.0, abs=2e-3)
    wide = to_features(np.array([[100.0, 100.0]]), "asinh_magnitude", softening_njy=noise.softening_njy)
    assert abs(wide[0, 1] - (31.4 - 5.0)) > 0.01 > abs(wide[0, 0] - (31.4 - 5.0))


@pytest.mark.parametrize("kind", ["ab_magnitude", "flux", "asinh_magnitude"])
def test_observation_and_simulation_share_one_transform(kind):
    """Zero noise draws: the simulator's features of a flux equal the observation's features of it."""
    noise = FluxNoise(np.array([2.0, 5.0, 1.0]))
    flux = np.array([40.0, 1.0, -2.0])

    class Zero:
        def standard_normal(self, shape):
            return np.zeros(shape)

    simulated = simulate_features(flux[None, :], kind, noise, Zero())[0]
    assert np.allclose(simulated, observation_features(flux, kind, noise))


def test_ab_floor_share_is_recorded_and_warned_about():
    settings = {"filters": CODES[:2], "noise": {"depth_5sigma_ab": 29.0}, "features": "ab_magnitude"}
    floor = 31.4 - 2.5 * np.log10(10 ** ((31.4 - 29) / 2.5) / 5)
    x = np.column_stack([np.r_[np.full(50, floor), np.full(50, 25.0)], np.full(100, 25.0)])
    report = galaxy_simulator.feature_warnings(x, settings)
    assert report["ab_floor_share"] == {CODES[0]: 0.5, CODES[1]: 0.0}
    assert "25.0% of this round's AB-magnitude features" in report["warning"]
    assert "set galaxy.features.kind to asinh_magnitude, which stays continuous" in report["warning"]
    assert "warning" not in galaxy_simulator.feature_warnings(np.full((100, 2), 25.0), settings)


def test_heavy_tailed_flux_features_are_warned_about():
    """Fluxes spanning decades (as a prior over 4 dex of mass and z 0-5 makes): sbi's z-scoring squeezes most rows."""
    settings = {"filters": CODES[:2], "noise": {"depth_5sigma_ab": 29.0}, "features": "flux"}
    rng = np.random.default_rng(0)
    spread = np.column_stack([10 ** rng.normal(0, 2, 2000), rng.normal(100, 10, 2000)])  # 2 dex scatter; Gaussian
    report = galaxy_simulator.feature_warnings(spread, settings)
    assert report["flux_std_over_iqr"][CODES[0]] > 10 and 0.6 < report["flux_std_over_iqr"][CODES[1]] < 0.9
    assert "flux features are heavy-tailed" in report["warning"] and "asinh_magnitude" in report["warning"]
    assert "warning" not in galaxy_simulator.feature_warnings(spread[:, [1, 1]], settings)


# --- 3. missing bands, 4. per-observation priors, through the plan -------------------------------------------------

def galaxy_plan(tmp_path, sheet: str, catalogue: str | None = None, **galaxy):
    (tmp_path / "obs.tsv").write_text(sheet)
    if catalogue is not None:
        (tmp_path / "cat.csv").write_text(catalogue)
        galaxy["catalogue"] = str(tmp_path / "cat.csv")
    config = {"observations": str(tmp_path / "obs.tsv"), "galaxy": {"features": {"noise": {"depth_5sigma_ab": 29.0}},
                                                                      **galaxy},
              "runs": {"g": {"simulator": "galaxy", "prior": {"from_library": True}, "simulations_per_round": 2000,
                             "simulation_block_size": 500}}}
    return plan_workflow(config)


def test_sheet_row_with_errors_a_missing_band_and_a_fixed_redshift(tmp_path):
    sheet = ("observation\tx_o\tx_err\tredshift\tlog_mass_low\tlog_mass_high\n"
             "a\t10,20,nan,40,50,60,70,80\t1,2,3,4,5,6,7,8\t2.5\t9\t10\n"
             "b\t10,20,30,40,50,60,70,80\t1,2,3,4,5,6,7,8\t\t\t\n")
    plan = galaxy_plan(tmp_path, sheet)
    a = plan.settings("g", "a")
    assert a.simulator_settings["bands"] == [0, 1, 3, 4, 5, 6, 7]
    assert a.simulator_settings["sigma_njy"] == [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert a.simulator().output_dim(a.prior) == 7 and plan.observations["a"].x_o.shape == (7,)
    assert "redshift" not in a.prior.names and a.prior.fixed == (("redshift", 2.5, ""),)
    assert list(a.prior.low[:1]) == [9.0] and list(a.prior.high[:1]) == [10.0]
    assert a.prior.describe()[-1] == "prior redshift: fixed at 2.5 (not inferred)"
    b = plan.settings("g", "b")
    assert "bands" not in b.simulator_settings and b.prior.dim == 6
    assert np.allclose(plan.observations["b"].x_o, 31.4 - 2.5 * np.log10([10, 20, 30, 40, 50, 60, 70, 80]))


def test_feature_x_o_with_a_missing_band_is_fitted_without_it(tmp_path):
    """x_o given as features (no x_err): nan, or galaxy.missing_value (synference's 99 magnitudes), marks a band
    missing; the run drops it and keeps the configured depth. Other simulators refuse the nan."""
    sheet = ("observation\tx_o\n"
             "a\t25,26,nan,27,28,29,30,31\n"
             "b\t25,26,99,27,28,29,30,31\n"
             "c\t25,26,26.5,27,28,29,30,31\n")
    plan = galaxy_plan(tmp_path, sheet, missing_value=99)
    for name in ("a", "b"):
        settings = plan.settings("g", name)
        assert settings.simulator_settings["bands"] == [0, 1, 3, 4, 5, 6, 7]
        assert "sigma_njy" not in settings.simulator_settings  # the configured depth
        assert settings.simulator().output_dim(settings.prior) == 7
        np.testing.assert_array_equal(plan.observations[name].x_o, [25, 26, 27, 28, 29, 30, 31])
    assert "bands" not in plan.settings("g", "c").simulator_settings and plan.observations["c"].x_o.shape == (8,)
    without_sentinel = galaxy_plan(tmp_path, "observation\tx_o\nb\t25,26,99,27,28,29,30,31\n")
    assert without_sentinel.observations["b"].x_o.shape == (8,)  # 99 is a value unless galaxy.missing_value says
    with pytest.raises(ConfigError, match=r"row 'a' column x_o: every band is missing"):
        galaxy_plan(tmp_path, "observation\tx_o\na\t" + ",".join(["nan"] * 8) + "\n")
    with pytest.raises(ConfigError, match=r"row 'a' column x_o: 3 features for 8 filters"):
        galaxy_plan(tmp_path, "observation\tx_o\na\t25,nan,26\n")
    (tmp_path / "toy.tsv").write_text("observation\tx_o\na\t0.1,nan,0.3\n")
    with pytest.raises(ConfigError, match=r"row 'a' column x_o: nan marks a missing band, which only galaxy runs "
                                          r"understand, but run 't' uses simulator 'linear_gaussian'"):
        plan_workflow({"observations": str(tmp_path / "toy.tsv"), "runs": {"t": {
            "simulator": "linear_gaussian", "prior": {"parameters": [
                {"name": f"p{i}", "low": -1, "high": 1} for i in range(3)]}}}})


def test_chunk_jobs_simulate_with_the_observations_noise_and_bands(tmp_path, constant_flux):
    """simulate_chunk (a scattered round's job) gets the observation's run settings: same noise, same bands."""
    from seqsbi import rounds

    sheet = "observation\tx_o\tx_err\na\t10,20,nan,40,50,60,70,80\t1,2,3,4,5,6,7,8\n"
    plan = galaxy_plan(tmp_path, sheet, features={"kind": "flux", "noise": {"depth_5sigma_ab": 29.0}})
    settings = plan.settings("g", "a")
    theta = np.zeros((2000, 6))
    chunks = [rounds.simulate_chunk(settings, "a", 0, theta, chunk, 2)[1] for chunk in (0, 1)]
    whole = rounds.simulate_chunk(settings, "a", 0, theta, 0, 1)[1]
    assert np.array_equal(np.concatenate(chunks), whole) and whole.shape == (2000, 7)
    assert np.allclose(whole.std(axis=0), [1, 2, 4, 5, 6, 7, 8], rtol=0.1)


def test_catalogue_sentinel_marks_a_band_missing_and_columns_give_a_gaussian_prior(tmp_path):
    header = ",".join(["id"] + [f"{b},{b}_err" for b in BANDS] + ["redshift", "redshift_err"])
    row = ",".join(["7"] + ["99,99"] + ["100,5"] * 7 + ["1.5", "0.1"])
    plan = galaxy_plan(tmp_path, "observation\tcatalogue_id\ng7\t7\n", header + "\n" + row + "\n" +
                       ",".join(["8"] + ["100,5"] * 8 + ["", ""]) + "\n", missing_value=99)
    settings = plan.settings("g", "g7")
    assert settings.simulator_settings["bands"] == list(range(1, 8))
    assert settings.prior.kinds[0] == "gaussian" and settings.prior.mean[0] == 1.5 and settings.prior.std[0] == 0.1
    assert settings.prior.describe()[0] == "prior redshift: Gaussian mean 1.5 std 0.1, truncated to 0 to 5"


@pytest.mark.parametrize("x_o, x_err, extra, message", [
    ("10,20,30,40,50,60,70,80", "1,0,3,4,5,6,7,8", "", "row 'a' (x_o, x_err) JWST/NIRCam.F090W: flux error 0.0 must "
     "be a positive number"),
    ("10,20,30,40,50,60,70,80", "1,2,-3,4,5,6,7,8", "", "JWST/NIRCam.F115W: flux error -3.0 must be a positive"),
    ("10,20,30,40,50,60,70,80", "1,2,3,nan,5,6,7,8", "", "JWST/NIRCam.F150W: flux error nan must be a positive"),
    ("nan,20,30,40,50,60,70,80\t1,2,3,4,5,6,7,8\nb\tnan,1,2,3,4,5,6,7", "1,2,3,4,5,6,7,8", "",
     "['JWST/NIRCam.F070W'] missing (nan or galaxy.missing_value) in every one of the 2 observation(s)"),
    ("nan,nan,nan,nan,nan,nan,nan,nan", "1,2,3,4,5,6,7,8", "", "every band is missing"),
    ("10,20,30,40,50,60,70,80", "1,2,3,4,5,6,7,8", "\t5.5", "column redshift: 5.5 lies outside the run's range [0, 5]"),
    ("10,20,30", "1,2,3", "", "3 fluxes for 8 filters"),
])
def test_bad_photometry_is_named_before_any_job(tmp_path, x_o, x_err, extra, message):
    header = "observation\tx_o\tx_err" + ("\tredshift" if extra else "")
    with pytest.raises(ConfigError) as error:
        galaxy_plan(tmp_path, f"{header}\na\t{x_o}\t{x_err}{extra}\n")
    assert message in str(error.value), str(error.value)


def test_a_catalogue_band_missing_in_every_row_is_refused(tmp_path):
    header = ",".join(["id"] + [f"{b},{b}_err" for b in BANDS])
    rows = [",".join([str(i)] + ["100,5"] * 7 + [",5"]) for i in (1, 2)]
    with pytest.raises(ConfigError, match=r"column 'F444W' \(JWST/NIRCam.F444W\) is missing .* in every row"):
        galaxy_plan(tmp_path, "observation\tcatalogue_id\ng1\t1\n", "\n".join([header, *rows]) + "\n")


def test_observation_prior_columns():
    parameters = [{"name": "redshift", "low": 0.0, "high": 5.0, "unit": ""}, {"name": "tau_v", "low": 0, "high": 3}]

    def prior(**columns):
        return observation_prior(parameters, Observation("o", None, columns=columns), "sheet row 'o'")

    assert prior(notes="x") is None
    assert prior(tau_v="1")[1] == {"name": "tau_v", "low": 0, "high": 3, "distribution": "fixed", "value": 1.0}
    assert prior(redshift_low="1", redshift_high="2")[0]["low"] == 1.0
    with pytest.raises(ConfigError, match="column redshift_err: needs redshift"):
        prior(redshift_err="0.1")
    with pytest.raises(ConfigError, match="give both redshift_low and redshift_high"):
        prior(redshift_low="1")
    with pytest.raises(ConfigError, match=r"column redshift_high: 6 lies outside the run's range \[0, 5\]"):
        prior(redshift_low="1", redshift_high="6")


# --- non-box priors -----------------------------------------------------------------------------------------------

def test_non_box_priors_sample_what_their_log_prob_says():
    import torch

    from seqsbi.engines import make_prior

    space = ParameterSpace.from_config({"parameters": [
        {"name": "z", "low": 0, "high": 5, "distribution": "gaussian", "mean": 0.2, "std": 0.5},
        {"name": "m", "low": 1, "high": 100, "distribution": "log_uniform"},
        {"name": "f", "low": 0, "high": 1, "distribution": "fixed", "value": 0.25}]})
    prior = make_prior(space)
    torch.manual_seed(0)
    draws = prior.sample((40000,)).double()
    assert draws.shape == (40000, 2) and space.all_names == ("z", "m", "f")
    assert float(draws[:, 0].min()) >= 0 and float(draws[:, 1].max()) <= 100
    # log-uniform: half the mass below the geometric mean; truncated Gaussian: the mean of the quadrature
    assert abs(float((draws[:, 1] < 10).double().mean()) - 0.5) < 0.01
    assert float(draws[:, 0].mean()) == pytest.approx(float(prior.mean[0]), abs=0.01)
    grid = torch.linspace(0, 5, 20001)
    density = prior.log_prob(torch.stack([grid, torch.full_like(grid, 10.0)], 1)).exp() * 10.0 * np.log(100)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    assert torch.isinf(prior.log_prob(torch.tensor([[6.0, 10.0]]))).all()


@pytest.mark.parametrize("entry, message", [
    ({"distribution": "log_uniform", "low": -1}, "log_uniform prior needs low > 0"),
    ({"distribution": "fixed", "value": 9}, "fixed value 9 lies outside the range [-1, 1]"),
    ({"distribution": "gaussian", "mean": 0}, "gaussian prior needs mean and a positive std"),
    ({"distribution": "uniform", "value": 0}, "['value'] do not apply to distribution 'uniform'"),
])
def test_bad_non_box_priors_are_named(entry, message):
    with pytest.raises(ConfigError) as error:
        ParameterSpace.from_config({"parameters": [{"name": "a", "low": -1, "high": 1, **entry},
                                                   {"name": "b", "low": 0, "high": 1}]}, key="runs.r.prior")
    assert "runs.r.prior.parameters[0] (a)" in str(error.value) and message in str(error.value)


def test_a_round_with_a_fixed_and_a_gaussian_parameter(tmp_path):
    """linear_gaussian with c fixed: the simulator sees all three, the network two; NPE's flow, bounded to the
    prior's box (its support), samples inside it."""
    import torch

    from conftest import tiny_run
    from seqsbi.config import run_settings, validate_config
    from seqsbi.rounds import train_round

    torch.set_num_threads(1)
    prior = {"parameters": [{"name": "a", "low": -2, "high": 2, "distribution": "gaussian", "mean": 0.5, "std": 0.3},
                            {"name": "b", "low": -2, "high": 2},
                            {"name": "c", "low": -2, "high": 2, "distribution": "fixed", "value": 1.0}]}
    run = tiny_run(engine="NPE", prior=prior, simulations_per_round=200, posterior_samples=100,
                   network={"hidden_features": 10, "num_transforms": 1}, training={"max_num_epochs": 5})
    settings = run_settings("r", validate_config({"runs": {"r": run}})["runs"]["r"], ["o"])
    result = train_round(settings, Observation("o", np.array([1.5, 1.0, 2.0])), 0)
    assert result.theta.shape == (200, 2) and result.x.shape == (200, 3)
    assert np.allclose(result.x[:, 2], 2.0, atol=0.5)  # c + 1 with noise 0.1: c held at 1
    assert settings.prior.contains(result.samples).all()


def test_run_prior_past_the_sps_grid_is_refused_naming_the_key():
    config = {"observations": "config/observations.tsv",
              "runs": {"g": {"simulator": "galaxy", "prior": {"from_library": True, "override_prior_ranges": {
                  "log10metallicity": [-6, -1.4]}}}}}
    with pytest.raises(ConfigError) as error:
        plan_workflow(config)
    text = str(error.value)
    assert "runs.g.prior.override_prior_ranges.log10metallicity: [-6, -1.4]" in text
    assert "SPS grid's log10 Z range [-4, -1]" in text and "narrow the range" in text


def test_a_flux_row_fitted_by_a_non_galaxy_run_is_refused_before_the_galaxy_checks(tmp_path):
    import yaml

    from conftest import tiny_run, write_workdir

    sheet = "observation\tx_o\tx_err\na\t1,2,3\t0.1,0.1,0.1\n"
    config = yaml.safe_load(write_workdir(tmp_path, {"toy": tiny_run()}, sheet=sheet).read_text())
    with pytest.raises(ConfigError, match=r"row 'a' column x_err: per-band fluxes and errors are for galaxy runs, "
                                          r"but run 'toy' uses simulator 'linear_gaussian'"):
        plan_workflow(config)
