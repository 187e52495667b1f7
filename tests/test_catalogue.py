"""Catalogues (issue 16): the catalogue reader and its checks, the amortized estimator's training set and
split, batched posteriors with trust flags, the output files; one run through the Snakemake CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml
from astropy import units as u
from astropy.table import Table

from conftest import ROOT, snakemake, tiny_run, write_workdir
from seqsbi import amortized, scatter
from seqsbi.catalogue_config import plan_catalogues
from seqsbi.catalogue_table import read_catalogue, summary_table, write_samples, write_samples_in_parts, write_table
from seqsbi.config import plan_workflow, validate_config
from seqsbi.errors import ConfigError
from seqsbi.seeds import block_seed

FILTERS = ["JWST/NIRCam.F115W", "JWST/NIRCam.F200W", "JWST/NIRCam.F444W"]
FLAGS = {"ood_min_p_value": 0.01, "prior_edge_width": 0.02, "prior_edge_max_share": 0.5}


def toy_block(**overrides) -> dict:
    """A validated amortized block on linear_gaussian (3 parameters in [-2, 2]): tiny, trains in seconds."""
    block = {"simulator": "linear_gaussian", "simulator_settings": {"shift": 0.0, "noise_std": 0.1},
             "prior": {"parameters": [{"name": f"t{i}", "low": -2, "high": 2, "unit": "m"} for i in range(3)]},
             "simulations": 600, "simulation_block_size": 100, "simulation_chunks": 3, "test_fraction": 0.2,
             "network": {"hidden_features": 16, "num_transforms": 2},
             "training": {"max_num_epochs": 15, "training_batch_size": 50, "learning_rate": 0.005}}
    block.update(overrides)
    return validate_config({"amortized": {"toy": block}})


def catalogue_table(n: int = 20, unit=None, filters=FILTERS) -> Table:
    rng = np.random.default_rng(3)
    table = Table()
    table["id"] = [f"gal{i:03d}" for i in range(n)]
    for code in filters:
        band = code.rsplit(".", 1)[1]
        table[band] = rng.uniform(10, 1000, n)
        table[f"{band}_err"] = np.full(n, 5.0)
        if unit is not None:
            table[band].unit = table[f"{band}_err"].unit = unit
    return table


@pytest.mark.parametrize("suffix", [".fits", ".ecsv", ".csv"])
def test_catalogue_formats_read_alike_and_units_convert_to_njy(tmp_path, suffix):
    plain = catalogue_table()
    plain.write(tmp_path / f"plain{suffix}")
    read = read_catalogue(tmp_path / f"plain{suffix}", FILTERS)
    assert read.ids.tolist() == list(plain["id"]) and read.flux_njy.shape == (20, 3)
    np.testing.assert_allclose(read.flux_njy[:, 2], plain["F444W"])
    if suffix != ".csv":  # CSV has no units: nJy
        in_ujy = catalogue_table(unit=u.uJy)
        in_ujy.write(tmp_path / f"ujy{suffix}")
        np.testing.assert_allclose(read_catalogue(tmp_path / f"ujy{suffix}", FILTERS).flux_njy,
                                   1000 * read.flux_njy, rtol=1e-12)


def _refused(path, match, filters=FILTERS):
    with pytest.raises(ConfigError, match=match) as error:
        read_catalogue(path, filters, key="catalogues.field.path")
    assert str(path) in str(error.value) and "catalogues.field.path" in str(error.value)
    return str(error.value)


def test_bad_catalogues_are_refused_naming_file_row_column_and_fix(tmp_path):
    table = catalogue_table()
    table.remove_columns(["F200W", "F200W_err"])
    table.write(tmp_path / "missing.fits")
    assert "F200W and F200W_err" in _refused(tmp_path / "missing.fits", r"no flux and _err columns for \['JWST/NIRC")

    table = catalogue_table()
    table["id"][7] = "gal003"
    table.write(tmp_path / "repeated.ecsv")
    assert "rows [4, 8]" in _refused(tmp_path / "repeated.ecsv", "id 'gal003'.*ids must be unique")

    table = catalogue_table()
    table["F115W_err"][5] = 0.0
    table.write(tmp_path / "zero_error.fits")
    message = _refused(tmp_path / "zero_error.fits", "column 'F115W_err' row 6 .id 'gal005'.: error 0.0")
    assert "positive" in message

    text = (tmp_path / "text.csv")
    catalogue_table().write(text)
    lines = text.read_text().splitlines()
    fields = lines[3].split(",")
    lines[3] = ",".join([fields[0], "bright", *fields[2:]])
    text.write_text("\n".join(lines) + "\n")
    assert "give numbers only" in _refused(text, "column 'F115W' row 3 .id 'gal002'.: 'bright' is not a number")

    table = catalogue_table()
    table["F115W"] = u.Magnitude(table["F115W"] * u.nJy).value * u.ABmag  # AB magnitudes convert ...
    table["F115W_err"].unit = u.ABmag  # ... a magnitude error does not (it is no flux on its own)
    table.write(tmp_path / "magnitude_error.ecsv")
    assert "magnitude error" in _refused(tmp_path / "magnitude_error.ecsv", "column 'F115W_err' has unit")

    table = catalogue_table(unit=u.m)
    table.write(tmp_path / "metres.fits")
    assert "does not convert to nJy" in _refused(tmp_path / "metres.fits", "column 'F115W' has unit 'm'")

    table = catalogue_table()
    table["F444W"][2] = np.inf
    table.write(tmp_path / "inf.fits")
    _refused(tmp_path / "inf.fits", "column 'F444W' row 3 .id 'gal002'.: flux inf .* or leave it empty")

    table = catalogue_table()
    table["F444W_err"][2] = np.nan  # an error must be given where the flux is
    table.write(tmp_path / "nan_error.fits")
    _refused(tmp_path / "nan_error.fits", "column 'F444W_err' row 3 .id 'gal002'.: error nan nJy .* where the flux")

    table = catalogue_table()
    table["F200W"] = np.nan
    table.write(tmp_path / "no_band.fits")
    _refused(tmp_path / "no_band.fits", r"column 'F200W' .JWST/NIRCam.F200W. is missing .* in every row; drop")

    table = catalogue_table()
    for code in FILTERS:
        table[code.rsplit(".", 1)[-1]][6] = np.nan
    table.write(tmp_path / "no_data.fits")
    _refused(tmp_path / "no_data.fits", r"row 7 .id 'gal006'. has every band missing")


def test_missing_bands_are_nan_and_say_so(tmp_path):
    table = Table(catalogue_table(), masked=True)
    table["F444W"][2] = np.nan
    table["F200W"].mask[4] = True  # a masked (blank) value reads as missing too
    table["F200W_err"].mask[4] = True  # and its error need not be given
    table["F115W"][5], table["F115W_err"][5] = 99.0, -1.0  # synference's sentinel, with galaxy.missing_value 99
    table.write(tmp_path / "gaps.ecsv")
    catalogue = read_catalogue(tmp_path / "gaps.ecsv", FILTERS, missing_value=99.0)
    missing = np.isnan(catalogue.flux_njy)
    assert np.argwhere(missing).tolist() == [[2, 2], [4, 1], [5, 0]]  # FILTERS order: F115W, F200W, F444W
    np.testing.assert_array_equal(np.isnan(catalogue.error_njy), missing)
    with pytest.raises(ConfigError, match=r"row 6 .id 'gal005'.: error -1.0 nJy"):  # without the sentinel: a flux
        read_catalogue(tmp_path / "gaps.ecsv", FILTERS)


def test_training_blocks_do_not_depend_on_chunks_and_split_is_seeded():
    config = toy_block()
    settings = amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"])
    whole = amortized.simulate_training_blocks(settings, slice(0, 600))
    parts = [amortized.simulate_training_blocks(settings, scatter.chunk_rows(600, 100, 3, chunk)) for chunk in range(3)]
    np.testing.assert_array_equal(whole[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(whole[1], np.concatenate([p[1] for p in parts]))
    assert whole[2] is None  # noise-free fluxes: the galaxy model only
    assert settings.prior.contains(whole[0]).all()
    train, test = amortized.split_rows(600, 0.2, 5)
    assert len(test) == 120 and not set(train) & set(test) and len(train) + len(test) == 600
    assert np.array_equal(test, amortized.split_rows(600, 0.2, 5)[1])
    assert not np.array_equal(test, amortized.split_rows(600, 0.2, 6)[1])


def test_config_checks_name_the_key():
    with pytest.raises(ConfigError, match="config has no runs, amortized estimators or catalogues"):
        plan_workflow({"galaxy": {}})
    minimal = validate_config({"amortized": {"a": {"prior": {"from_library": True}}}})["amortized"]["a"]
    assert minimal["training"]["training_batch_size"] == 200 and minimal["network"]["coupling"] is True
    assert minimal["density_estimator"] == "nice" and minimal["simulator"] == "galaxy"
    with pytest.raises(ConfigError, match=r"amortized.toy.simulation_chunks: 7 chunks but .* only 6 block"):
        plan_catalogues(toy_block(simulation_chunks=7))
    with pytest.raises(ConfigError, match="amortized.toy: 10 training simulations leave 1 held out"):
        plan_catalogues(toy_block(simulations=10, simulation_block_size=10, simulation_chunks=1, test_fraction=0.1))
    # simulations: auto is checked once resolved: 50,000 (band masks) take 40 chunks, 20,000 (features alone) not.
    galaxy = {"features": {"kind": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0}}}
    masked = validate_config({"galaxy": galaxy, "amortized": {"a": {
        "prior": {"from_library": True}, "training_missing_bands": {"share": 0.5}, "simulation_chunks": 40}}})
    assert plan_catalogues(masked).estimator_blocks["a"]["simulations"] == 50000
    # Inputs left on auto too: resolved from the served catalogue, checked against 50,000 only once resolved.
    assert amortized.auto_simulations({"training_depth_range_ab": "auto", "training_missing_bands": None})[0] == 50000
    with pytest.raises(ConfigError, match=r"amortized.a.simulation_chunks: 40 chunks but .* only 20 block"):
        plan_catalogues(validate_config({"galaxy": galaxy, "amortized": {"a": {
            "prior": {"from_library": True}, "simulation_chunks": 40}}}))
    config = toy_block()
    config["catalogues"] = {"field": {"path": "x.fits", "estimator": "other"}}
    config = validate_config(config)
    with pytest.raises(ConfigError, match="catalogues.field.estimator: 'other' is not under amortized"):
        plan_catalogues(config)
    config["catalogues"]["field"]["estimator"] = "toy"
    with pytest.raises(ConfigError, match="needs an estimator with simulator: galaxy"):
        plan_catalogues(config)


@pytest.mark.parametrize("flags, samples, match", [
    ({"ppc_draws": 500}, 200, r"catalogues.field.flags.ppc_draws: 500 predictive draws but posterior_samples is 200"),
    ({"ppc_draws": 50, "ppc_min_p_value": 0.01}, 1000,
     r"catalogues.field.flags.ppc_min_p_value: 0.01 can never flag: 50 draws give .* at least 100"),
    ({"ppc_draws": 99, "ppc_min_p_value": 0.01}, 1000, r"1 / \(1 \+ 99\) = 0.01; raise ppc_draws .* at least 100"),
    # Unset ppc_draws takes min(50, posterior_samples): 20 samples cannot reach the default 0.02.
    ({}, 20, r"0.02 can never flag: 20 draws \(ppc_draws unset: min\(50, posterior_samples 20\)\)"),
])
def test_ppc_settings_that_cannot_run_or_flag_are_refused(flags, samples, match):
    from seqsbi.catalogue_config import check_ppc_flags

    config = validate_config({"amortized": {"a": {"prior": {"from_library": True}}}, "catalogues": {"field": {
        "path": "x.fits", "estimator": "a", "posterior_samples": samples, "flags": flags}}})
    block = config["catalogues"]["field"]
    assert block["flags"]["ppc_min_p_value"] == 0.02 or "ppc_min_p_value" in flags
    with pytest.raises(ConfigError, match=match):
        check_ppc_flags("catalogues.field", block)
    check_ppc_flags("catalogues.field", {**block, "flags": {**block["flags"], "ppc_draws": 0}})  # 0: skipped


@pytest.mark.parametrize("name", ["ood_min_p_value", "fit_min_p_value"])
def test_a_threshold_the_held_out_split_cannot_reach_is_refused(name):
    from seqsbi.catalogue_config import check_held_out_flags

    block = {"flags": {"ood_min_p_value": 0.0, "fit_min_p_value": 0.0, name: 0.01}}
    with pytest.raises(ConfigError, match=rf"catalogues.field.flags.{name}: 0.01 can never flag: estimator "
                                          r"'npe' holds out 40 simulations.* hold out at least 100"):
        check_held_out_flags("catalogues.field", block, "npe", 40)
    check_held_out_flags("catalogues.field", block, "npe", 100)  # p-values down to 1/101 < 0.01
    check_held_out_flags("catalogues.field", {"flags": {**block["flags"], name: 0.0}}, "npe", 40)  # 0: on purpose


@pytest.mark.parametrize("samples, draws", [(1000, 50), (50, 50)])
def test_unset_ppc_draws_take_at_most_fifty_of_the_samples(samples, draws):
    from seqsbi.catalogue_config import check_ppc_flags

    config = validate_config({"amortized": {"a": {"prior": {"from_library": True}}}, "catalogues": {"field": {
        "path": "x.fits", "estimator": "a", "posterior_samples": samples}}})
    block = config["catalogues"]["field"]
    assert block["flags"]["ppc_draws"] is None
    check_ppc_flags("catalogues.field", block)
    assert block["flags"]["ppc_draws"] == draws


@pytest.mark.parametrize("run, match", [
    ({"prior": {}}, r"catalogues.field.refine.run: prior cannot be set here"),
    ({"engine": "NPE"}, r"catalogues.field.refine.run.engine: 'NPE' cannot refine .* SNPE, TSNPE, SNLE, SNRE"),
    ({"rounds": 1}, r"catalogues.field.refine.run.rounds: 1; round 0 is the amortized estimator"),
    ({"simulations_per_round": "many"}, r"catalogues.field.refine.run.simulations_per_round"),
    ({"round0_amortized": "x", "observations": ["a"]}, r"observations, round0_amortized cannot be set here "
                                                        r"\(observations: the galaxies are the catalogue's flagged"),
    ({"engine": "SNRE", "training": {"training_batch_size": 1}}, r"catalogues.field.refine.run.training: .*SNRE"),
])
def test_refinement_settings_name_the_key(run, match):
    from seqsbi import refine

    config = toy_block()
    block = {"posterior_samples": 100, "refine": {"run": run}}
    with pytest.raises(ConfigError, match=match):
        refine.refinement_settings("field", block, config["amortized"]["toy"], config["galaxy"])
    block["refine"]["run"] = {"engine": "TSNPE"}
    settings = refine.refinement_settings("field", block, config["amortized"]["toy"], config["galaxy"])
    assert (settings.engine, settings.rounds, settings.simulations_per_round, settings.posterior_samples) == (
        "TSNPE", 3, 5000, 100) and settings.training["max_num_epochs"] == 100
    assert (settings.training["stop_after_epochs"], settings.training["learning_rate"]) == (10, 0.001)
    block["refine"]["run"] = {"training": {"learning_rate": 0.002}}  # training keys merge with the defaults
    settings = refine.refinement_settings("field", block, config["amortized"]["toy"], config["galaxy"])
    assert (settings.training["learning_rate"], settings.training["max_num_epochs"]) == (0.002, 100)
    from seqsbi.catalogue_config import check_round_zero_rows

    with pytest.raises(ConfigError, match=r"simulations_per_round: 5000 but round 0 reuses the amortized "
                                          r"estimator's training rows and 'toy' has only 480"):
        check_round_zero_rows("catalogues.field.refine.run.simulations_per_round", settings.simulations_per_round,
                              "toy", config["amortized"]["toy"], 600)


def test_warm_start_continues_the_amortized_network_only_where_it_can():
    from seqsbi import refine

    config = toy_block()

    def resolve(warm, **run):
        block = {"estimator": "toy", "posterior_samples": 100, "refine": {"warm_start": warm, "run": run}}
        settings = refine.refinement_settings("field", block, config["amortized"]["toy"], config["galaxy"])
        return refine.warm_start("field", block, settings)

    assert resolve(True) and resolve(True, engine="SNPE")  # default engine TSNPE
    assert not resolve(False) and not resolve(False, engine="SNRE") and not resolve(False, network={})
    assert validate_config({"amortized": {"a": {"prior": {"from_library": True}}}, "catalogues": {"field": {
        "path": "x.fits", "estimator": "a", "refine": {}}}})["catalogues"]["field"]["refine"]["warm_start"] is False
    with pytest.raises(ConfigError, match=r"catalogues.field.refine.warm_start: true, but engine SNRE learns a "
                                          r"likelihood ratio.*use engine SNPE or TSNPE"):
        resolve(True, engine="SNRE")
    with pytest.raises(ConfigError, match=r"warm_start: true continues the amortized estimator's network, so "
                                          r"catalogues.field.refine.run.constrain_to_prior, density_estimator cannot "
                                          r"apply; drop them or set warm_start: false"):
        resolve(True, density_estimator="maf", constrain_to_prior=True)
    with pytest.raises(ConfigError, match=r"so catalogues.field.refine.run.training.retrain_from_scratch cannot apply"):
        resolve(True, training={"retrain_from_scratch": True})
    for key, value in (("training_depth_range_ab", [27.0, 30.0]), ("training_missing_bands", {"share": 0.2})):
        config["amortized"]["toy"] = {**toy_block()["amortized"]["toy"], key: value}  # the network takes more
        with pytest.raises(ConfigError, match=rf"catalogues.field.refine.warm_start: true, but estimator 'toy' takes "
                                              rf"more than the features \({key}\).*set warm_start: false"):
            resolve(True)
        assert not resolve(False)


@pytest.mark.parametrize("key, value", [("training_depth_range_ab", [27.0, 30.0]),
                                        ("training_missing_bands", {"share": 0.2})])
def test_a_run_round_zero_from_an_estimator_with_depths_or_masks_is_refused_at_parse_time(tmp_path, key, value):
    """runs.<run>.round0_amortized naming an estimator whose network takes more than the features (depth inputs or
    band masks, set explicitly: auto resolves to null for such an estimator) is refused when the Snakefile is
    parsed (catalogue_common.smk: plan_catalogues, then check_amortized_round_zero), naming the key and the fix."""
    from seqsbi.catalogue_config import check_amortized_round_zero

    config = yaml.safe_load(write_workdir(tmp_path, {"r": tiny_run(round0_amortized="a")}).read_text())
    config["galaxy"] = {"features": {"kind": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0}}}

    def check(setting):
        config["amortized"] = {"a": {"prior": {"from_library": True}, key: setting}}
        plan = plan_workflow(config, check_devices=False)
        with pytest.raises(ConfigError) as error:
            check_amortized_round_zero(plan, plan_catalogues(plan.config))
        return str(error.value)

    assert check(value) == (f"runs.r.round0_amortized: estimator 'a' takes more than the features ({key}), which a "
                            f"run's round 0 does not supply yet (catalogue refinements do); set amortized.a.{key}: "
                            f"null (auto resolves to null for a round0_amortized estimator) or name an estimator "
                            f"without them")
    # A network on the features alone passes this check; the next refuses the run's linear_gaussian simulator.
    for setting in (None, "auto"):
        assert check(setting).startswith("runs.r.round0_amortized: round 0 re-noises the estimator's galaxy fluxes")


def test_refine_flags_that_can_never_be_raised_are_refused():
    from seqsbi.catalogue_config import check_refine_flags

    flags = validate_config({"amortized": {"a": {"prior": {"from_library": True}}}, "catalogues": {"field": {
        "path": "x.fits", "estimator": "a"}}})["catalogues"]["field"]["flags"]
    check_refine_flags("catalogues.field", {"flags": flags, "refine": None})
    for refine_flag, off in (("ood", {"ood_min_p_value": 0}), ("ppc", {"ppc_draws": 0}),
                             ("prior_edge", {"prior_edge_max_share": 1}), ("fit", {"fit_min_p_value": 0})):
        block = {"flags": {**flags, **off}, "refine": {"flags": ["missing_bands", refine_flag]}}
        with pytest.raises(ConfigError, match=rf"catalogues.field.refine.flags: '{refine_flag}' can never be raised"):
            check_refine_flags("catalogues.field", block)
        check_refine_flags("catalogues.field", {**block, "refine": {"flags": ["missing_bands"]}})


def test_a_prior_difference_names_the_parameter_that_differs():
    from seqsbi.catalogue_config import prior_difference
    from seqsbi.priors import ParameterSpace

    box = [{"name": "z", "low": 0, "high": 5}, {"name": "m", "low": 8, "high": 12}]
    same, other = ParameterSpace.from_config({"parameters": box}), ParameterSpace.from_config({"parameters": box})
    assert prior_difference(same, other) == ""
    gaussian = ParameterSpace.from_config({"parameters": [box[0], {**box[1], "distribution": "gaussian", "mean": 10,
                                                                   "std": 1}]})
    assert "prior m: Gaussian mean 10 std 1" in prior_difference(gaussian, same)
    narrower = ParameterSpace.from_config({"parameters": [box[0], {**box[1], "high": 11}]})
    assert prior_difference(narrower, same) == "run: 'prior m: uniform 8 to 11'; estimator: 'prior m: uniform 8 to 12'"


def test_refinement_selects_flagged_rows_in_table_order():
    from seqsbi import refine

    flags = np.array(["", "ood", "ppc,prior_edge", "invalid_x", "prior_edge", "ood,ppc"])
    rows, beyond = refine.selection(flags, {"flags": ["ood", "prior_edge"], "max_galaxies": None})
    assert rows.tolist() == [1, 2, 4, 5] and beyond.tolist() == []
    rows, beyond = refine.selection(flags, {"flags": ["ppc"], "max_galaxies": 1})
    assert rows.tolist() == [2] and beyond.tolist() == [5]
    assert [b.tolist() for b in refine.batches(np.array([1, 2, 4, 5, 7]), 2)] == [[1, 2], [4, 5], [7]]


def test_training_rows_outside_the_prior_are_refused():
    config = toy_block()
    settings = amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"])
    theta = np.zeros((10, 3))
    theta[4, 1] = 2.5  # beyond high = 2
    with pytest.raises(ConfigError, match=r"amortized.toy: 1 of 10 training rows lie outside the prior box .first: "
                                          r"row 4.*widen prior"):
        amortized.train_amortized(settings, theta, theta.copy(), 0.2)


@pytest.fixture(scope="module")
def trained():
    import torch

    torch.set_num_threads(1)
    config = toy_block()
    settings = amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"])
    theta, x, _ = amortized.simulate_training_blocks(settings, slice(0, 600))
    return settings, amortized.train_amortized(settings, theta, x, 0.2, check_samples=100)


def test_amortized_estimator_is_bounded_tested_and_calibrated(trained):
    settings, result = trained
    summary = result.summary
    assert summary["training_rows"] == 480 and summary["held_out_rows"] == 120
    assert result.held_out_theta.shape == (120, 3) and result.held_out_x.shape == (120, 3)
    assert "coupling" in summary["method"] and np.isfinite(summary["held_out_mean_log_prob"])
    # x = theta + 0.1 noise: even a short fit puts most truths inside their 95% intervals.
    assert min(summary["held_out_coverage"]["0.95"].values()) > 0.7
    # The OOD p-values of held-out rows against their own calibration are spread over (0, 1].
    _, p_values = result.ood.p_value(result.held_out_x)
    assert 0.35 < np.median(p_values) < 0.65 and p_values.min() > 0


def test_catalogue_posteriors_are_batched_reproducible_and_flag_outliers(trained):
    settings, result = trained
    x = np.vstack([result.held_out_x[:18], [[40.0, 40.0, 40.0]], [[-1.98, 0.0, 0.0]]])
    whole = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 300, 11, FLAGS,
                                           batch_galaxies=8)
    assert whole.samples.shape == (20, 300, 3)
    assert settings.prior.contains(whole.samples.reshape(-1, 3)).all()  # bounded flow: no rejection needed
    # Two chunks of whole blocks draw exactly what one job draws.
    first = amortized.catalogue_posteriors(result.estimator, result.ood, x[:8], settings.prior, 300, 11, FLAGS, 8, 0)
    rest = amortized.catalogue_posteriors(result.estimator, result.ood, x[8:], settings.prior, 300, 11, FLAGS, 8, 1)
    np.testing.assert_array_equal(whole.samples, np.concatenate([first.samples, rest.samples]))
    # The far-away row is out of distribution (farther than every held-out row: p = 1 / (1 + 120)).
    assert whole.columns["flag_ood"][18] and whole.columns["ood_p_value"][18] == 1 / 121
    assert "ood" in whole.flags[18]
    assert whole.columns["flag_ood"][:18].sum() <= 2
    shares = amortized.prior_edge_shares(whole.samples, settings.prior, FLAGS["prior_edge_width"])
    np.testing.assert_array_equal(whole.columns["t2_edge_share"], shares[:, 2])
    np.testing.assert_array_equal(whole.columns["prior_edge_share"], shares.max(axis=1))
    assert np.array_equal(whole.columns["flag_prior_edge"], shares.max(axis=1) > FLAGS["prior_edge_max_share"])
    # Posterior medians follow the truth (x = theta + 0.1 noise; the prior's centre would miss by up to 2).
    np.testing.assert_allclose(np.median(whole.samples[:18], axis=1), result.held_out_theta[:18], atol=0.75)


def toy_predictive(settings):
    """The toy's simulator as a predictive simulator (the same noise for every row)."""
    simulator = settings.simulator()
    return lambda theta, rows, rng: simulator(theta.reshape(-1, theta.shape[2]), rng).reshape(*theta.shape[:2], -1)


def test_posterior_predictive_check_flags_what_the_model_cannot_reproduce(trained):
    settings, result = trained
    flags = {**FLAGS, "ppc_draws": 100, "ppc_min_p_value": 0.01}
    # 18 held-out rows, one far outside anything the model makes, one with a non-finite feature.
    x = np.vstack([result.held_out_x[:18], [[40.0, 40.0, 40.0]], [[np.nan, 0.0, 0.0]]])
    whole = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 300, 11, flags,
                                           batch_galaxies=8, predictive=toy_predictive(settings))
    p_value, chi2 = whole.columns["ppc_p_value"], whole.columns["ppc_chi2"]
    # The far row: no predictive draw is as discrepant (p = 1 / (1 + 100)), and it is flagged.
    assert p_value[18] == 1 / 101 and whole.columns["flag_ppc"][18] and "ppc" in whole.flags[18]
    assert chi2[18] > 1000 * np.nanmedian(chi2[:18])
    # Rows the model made: p-values on the grid k / 101, none flagged. They sit high (x = theta + noise with a
    # posterior ~ N(x_o, noise^2): predictive ~ N(x_o, 2 noise^2) is centred on x_o, T(x_o) ~ 0), the known
    # conservatism of posterior predictive p-values; the invalid row: NaN, not flagged.
    assert np.allclose(p_value[:18] * 101, np.round(p_value[:18] * 101)) and np.median(p_value[:18]) > 0.5
    assert not whole.columns["flag_ppc"][:18].any()
    assert np.isnan(p_value[19]) and np.isnan(chi2[19]) and not whole.columns["flag_ppc"][19]
    assert whole.seconds["ppc"] > 0
    # A band missing from x (NaN where the estimator had a stand-in: band masks) is left out of that row's
    # discrepancy: the same chi^2 and p-value as a check of the other two bands alone.
    gap = x[:18].copy()
    gap[3, 1] = np.nan
    left = amortized.catalogue_posteriors(result.estimator, result.ood, x[:18], settings.prior, 300, 11, flags, 8,
                                          predictive=toy_predictive(settings), ppc_x=gap)
    pair = amortized.catalogue_posteriors(result.estimator, result.ood, x[:18], settings.prior, 300, 11, flags, 8,
                                          predictive=lambda *a: toy_predictive(settings)(*a)[:, :, [0, 2]],
                                          ppc_x=x[:18, [0, 2]])
    assert np.isclose(left.columns["ppc_chi2"][3], pair.columns["ppc_chi2"][3], rtol=1e-12, atol=0)
    assert not np.isclose(left.columns["ppc_chi2"][3], whole.columns["ppc_chi2"][3])
    assert left.columns["ppc_p_value"][3] == pair.columns["ppc_p_value"][3]
    np.testing.assert_array_equal(np.delete(left.columns["ppc_chi2"][:16], 3), np.delete(chi2[:16], 3))  # blocks 0-1
    # Chunks of whole blocks give the same p-values (each block's predictive noise is seeded by its index).
    parts = [amortized.catalogue_posteriors(result.estimator, result.ood, x[rows], settings.prior, 300, 11, flags, 8,
                                            first, predictive=toy_predictive(settings))
             for rows, first in ((slice(0, 8), 0), (slice(8, 20), 1))]
    np.testing.assert_array_equal(p_value, np.concatenate([part.columns["ppc_p_value"] for part in parts]))
    np.testing.assert_array_equal(chi2, np.concatenate([part.columns["ppc_chi2"] for part in parts]))
    # ppc_draws 0 (or no simulator) skips the check: NaN values, never flagged, the same samples.
    skipped = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 300, 11,
                                             {**flags, "ppc_draws": 0}, 8, predictive=toy_predictive(settings))
    assert np.isnan(skipped.columns["ppc_p_value"]).all() and not skipped.columns["flag_ppc"].any()
    np.testing.assert_array_equal(skipped.samples, whole.samples)


def power_law_models(n: int, rng: np.random.Generator, slope=(-1.0, 1.0), log_mass=(8.0, 10.0)):
    """A stand-in for the galaxy model: theta (n, 2) = (slope, log_mass), fluxes (n, 5) = 10^(log_mass - 8) x
    100 nJy x nu^slope, with nu from 1 to 3: every flux scales as 10^log_mass, as the galaxy model's do."""
    from seqsbi.priors import ParameterSpace

    prior = ParameterSpace(("slope", "log_mass"), ("", "log10 Msun"), np.array([slope[0], log_mass[0]]),
                           np.array([slope[1], log_mass[1]]))
    theta = prior.draw(n, rng)
    nu = np.linspace(1.0, 3.0, 5)
    return prior, theta, 10 ** (theta[:, 1:] - 8) * 100.0 * nu ** theta[:, :1]


def test_model_fit_score_is_calibrated_and_fails_what_no_model_makes():
    import dataclasses

    rng = np.random.default_rng(4)
    prior, theta, model = power_law_models(3000, rng)
    sigma = np.full((1000, 5), 5.0)  # nJy
    _, _, held_model = power_law_models(1000, rng)
    score = amortized.ModelFitScore.calibrate(model, theta, prior, 0.05, held_model + sigma * rng.standard_normal(
        sigma.shape), sigma)
    calibration = score.held_out_chi2()
    # Fresh rows of the same model and noise: p-values close to uniform (the calibration is the held-out split's).
    _, fresh_theta, fresh = power_law_models(2000, rng)
    noisy = fresh + 5.0 * rng.standard_normal(fresh.shape)
    _, p = score.p_value(noisy, np.full(fresh.shape, 5.0))
    assert 0.06 < np.mean(p < 0.1) < 0.14 and 0.4 < np.median(p) < 0.6
    # ... and with two bands missing, against held-out rows scored without them: still uniform (against every
    # band's calibration, 2.4% of these rows would score p < 0.1 and the median would be 0.71).
    gappy = noisy.copy()
    gappy[:, [1, 3]] = np.nan
    _, p = score.p_value(gappy, np.full(fresh.shape, 5.0))
    assert 0.06 < np.mean(p < 0.1) < 0.14 and 0.4 < np.median(p) < 0.6
    # A noise-free model row fits (chi^2 ~ 0), at any mass the prior allows: the amplitude is fitted.
    chi2, _ = score.p_value(10 ** 0.5 * fresh[:1], np.full((1, 5), 5.0))
    assert chi2[0] < calibration[len(calibration) // 10]
    # Slopes no model has (nu^3, nu^-3) and a mass 100x past the prior's bound fit worse than every held-out row.
    nu = np.linspace(1.0, 3.0, 5)
    odd = np.vstack([300.0 * nu ** 3, 3000.0 * nu ** -3, 100 * 10 ** (10 - fresh_theta[1, 1]) * fresh[1]])
    chi2, p = score.p_value(odd, np.full(odd.shape, 5.0))
    np.testing.assert_array_equal(p, 1 / (1 + 1000))
    assert np.all(chi2 > calibration[-1])
    # The floor is room for systematics: a larger floor scores the same misfit lower.
    loose = dataclasses.replace(score, error_floor=0.5, _calibration={})
    assert np.all(loose.chi2(odd, np.full(odd.shape, 5.0)) < chi2)
    # A missing band (NaN flux) is left out (a training row still fits exactly); a row with no band is NaN.
    gappy = np.vstack([model[:1], np.full((1, 5), np.nan)])
    gappy[0, 2] = np.nan
    chi2, p = score.p_value(gappy, np.full(gappy.shape, 5.0))
    assert chi2[0] < 1e-6 and p[0] > 0.9 and np.isnan(chi2[1]) and np.isnan(p[1])
    # Blocks of a few galaxies each (a large training set) give the same answer.
    whole = score.chi2(odd, np.full(odd.shape, 5.0))
    saved, amortized._FIT_BLOCK_ELEMENTS = amortized._FIT_BLOCK_ELEMENTS, 2 * len(model)
    try:
        np.testing.assert_array_equal(score.chi2(odd, np.full(odd.shape, 5.0)), whole)
    finally:
        amortized._FIT_BLOCK_ELEMENTS = saved


def stand_in_galaxy(tmp_path, settings, fluxes: str):
    """``settings`` with a stand-in galaxy flux model (``fluxes``: a numpy expression of theta and filters; the
    batched galaxy model needs an SPS grid, the CLI test runs it), 3 NIRCam bands, AB features, 29 AB depth and a
    max_snr of 20. The model asserts that it is asked for noise-free fluxes in nJy."""
    import dataclasses

    (tmp_path / "fluxes.py").write_text(
        "import numpy as np\n"
        "def fluxes(theta, rng, filters, features, noise, flux_scale_njy=None):\n"
        "    assert features == 'flux' and noise is None and flux_scale_njy is None  # noise-free nJy asked for\n"
        f"    return {fluxes}\n")
    return dataclasses.replace(settings, simulator_name=f"{tmp_path / 'fluxes.py'}:fluxes", simulator_settings={
        "filters": FILTERS, "features": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0, "max_snr": 20.0}})


def test_galaxy_model_fit_uses_the_estimator_noise_and_the_rows_errors(tmp_path, trained):
    """The galaxy wiring of the model-fit score, on a stand-in flux model (the batched galaxy model needs an SPS
    grid; the CLI test runs it): held-out noise from the configured depth, seeded; rows' errors with max_snr."""
    import dataclasses

    from seqsbi.units import sigma_from_depth

    settings = stand_in_galaxy(tmp_path, trained[0], "100.0 * (2.0 + theta[:, :1]) * np.arange(1, len(filters) + 1)")
    result = trained[1]
    theta = result.held_out_theta
    training = {"theta": theta, "flux": 100.0 * (2.0 + theta[:, :1]) * np.arange(1, 4)}
    flux = np.array([[200.0, 400.0, 600.0], [1.0, 2.0, 3.0]])
    error = np.array([[1.0, 1.0, 1.0], [50.0, 50.0, 50.0]])
    score, used_flux, sigma = amortized.galaxy_model_fit(settings, training, theta, 0.05, 7, flux, error)
    np.testing.assert_array_equal(used_flux, flux)
    np.testing.assert_allclose(sigma, [[10.0, 20.0, 30.0], [50.0, 50.0, 50.0]])  # max(error, |flux| / 20)
    np.testing.assert_allclose(score.held_out_sigma_njy, np.maximum(sigma_from_depth(29.0, 5), np.abs(
        training["flux"]) / 20.0))
    again, _, _ = amortized.galaxy_model_fit(settings, training, theta, 0.05, 7, flux, error)
    np.testing.assert_array_equal(again.held_out_chi2(), score.held_out_chi2())  # every chunk job: the same
    other, _, _ = amortized.galaxy_model_fit(settings, training, theta, 0.05, 8, flux, error)
    assert not np.array_equal(other.held_out_flux_njy, score.held_out_flux_njy)
    quiet = dataclasses.replace(settings, simulator_settings={**settings.simulator_settings, "noise": None})
    assert amortized.galaxy_model_fit(quiet, training, theta, 0.05, 7, flux, error) is None


def test_depth_offset_says_how_far_each_galaxy_is_from_the_training_noise(trained, caplog):
    import dataclasses

    from seqsbi.units import sigma_from_depth

    settings, _ = trained
    settings = dataclasses.replace(settings, simulator_settings={"filters": FILTERS, "features": "ab_magnitude",
                                                                 "noise": {"depth_5sigma_ab": [29.0, 28.0, 29.0]}})
    trained_sigma = sigma_from_depth(np.array([29.0, 28.0, 29.0]), 5)
    error = np.vstack([trained_sigma, 10 ** 0.4 * trained_sigma, trained_sigma * [1.0, np.nan, 1.0]])
    offset = amortized.galaxy_depth_offset(settings, error)
    np.testing.assert_allclose(offset, [0.0, -1.0, 0.0], atol=1e-9)  # 10^0.4 x the errors: 1 mag shallower
    assert "1 of 3 galaxies (33%) are measured over 0.5 mag off the depth" in caplog.text
    assert "median +0.00 mag: deeper" in caplog.text and "training [29.00, 28.00, 29.00]" in caplog.text
    assert "depth_5sigma_ab: [29.00, 27.50, 29.00]" in caplog.text  # the rows' median depths (28, 27; NaN left out)
    caplog.clear()
    amortized.galaxy_depth_offset(settings, error[[0, 2, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert "galaxies" not in caplog.text  # none beyond: no warning
    quiet = dataclasses.replace(settings, simulator_settings={**settings.simulator_settings, "noise": None})
    assert np.isnan(amortized.galaxy_depth_offset(quiet, error)).all()


def test_depth_inputs_are_checked_and_name_the_key():
    from seqsbi.amortized import _depth_inputs

    galaxy_run = {"simulator": "galaxy", "simulator_settings": {"noise": {"depth_5sigma_ab": 29.0}}}
    block = {"training_depth_range_ab": [27, 30], "source": "simulate"}
    assert _depth_inputs("amortized.a", block, galaxy_run) == (27.0, 30.0)
    assert _depth_inputs("amortized.a", {**block, "training_depth_range_ab": None}, galaxy_run) is None
    for bad, match in (({"training_depth_range_ab": [30, 27]}, r"amortized.a.training_depth_range_ab: \[30, 27\]; "
                                                               r"give \[bright, faint\]"),
                       ({"training_depth_range_ab": [-50, 100]}, r"both within 10-40 AB"),
                       ({"source": "library"}, r"needs source: simulate"),):
        with pytest.raises(ConfigError, match=match):
            _depth_inputs("amortized.a", {**block, **bad}, galaxy_run)
    with pytest.raises(ConfigError, match=r"amortized.a.training_depth_range_ab: needs galaxy.features.noise"):
        _depth_inputs("amortized.a", block, {**galaxy_run, "simulator_settings": {"noise": None}})
    with pytest.raises(ConfigError, match=r"amortized.toy.training_depth_range_ab: depths are galaxy photometry; "
                                          r"simulator 'linear_gaussian'"):
        plan_catalogues(toy_block(training_depth_range_ab=[27, 30]))


def test_band_masks_are_checked_and_name_the_key():
    from seqsbi.amortized import _missing_bands

    galaxy_run = {"simulator": "galaxy", "simulator_settings": {"noise": {"depth_5sigma_ab": 29.0},
                                                                "filters": FILTERS}}
    block = {"training_missing_bands": {"share": 0.2, "max_bands": 2}, "source": "simulate"}
    assert _missing_bands("amortized.a", block, galaxy_run) == (0.2, 2)
    assert _missing_bands("amortized.a", {**block, "training_missing_bands": None}, galaxy_run) is None
    with pytest.raises(ConfigError, match=r"amortized.a.training_missing_bands.max_bands: 3, but there are 3 filters; "
                                          r"a simulation needs at least one band: use at most 2"):
        _missing_bands("amortized.a", {**block, "training_missing_bands": {"share": 0.2, "max_bands": 3}},
                       galaxy_run)
    with pytest.raises(ConfigError, match=r"amortized.a.training_missing_bands: needs source: simulate"):
        _missing_bands("amortized.a", {**block, "source": "library"}, galaxy_run)
    with pytest.raises(ConfigError, match=r"amortized.a.training_missing_bands: needs galaxy.features.noise"):
        _missing_bands("amortized.a", block, {**galaxy_run, "simulator_settings": {"noise": None, "filters": FILTERS}})
    with pytest.raises(ConfigError, match=r"amortized.toy.training_missing_bands: bands are galaxy photometry; "
                                          r"simulator 'linear_gaussian'"):
        plan_catalogues(toy_block(training_missing_bands={"share": 0.1}))
    assert toy_block(training_missing_bands={"share": 0.1})["amortized"]["toy"]["training_missing_bands"] == {
        "share": 0.1, "max_bands": 2}  # the schema's default
    for bad in ({"share": 0.0}, {"share": 1.0}, {"max_bands": 1}, {"share": 0.1, "max_bands": 0}):
        with pytest.raises(ConfigError, match=r"amortized.toy.training_missing_bands"):
            toy_block(training_missing_bands=bad)


def test_band_masks_drop_bands_at_random_and_mark_them_in_x(tmp_path, trained):
    """With band masks, a share of training rows loses 1 to max_bands bands; x holds a stand-in (the feature of zero
    flux at the training depth) and a mask column per band; a catalogue row with more bands missing stays NaN."""
    import dataclasses

    from seqsbi.units import njy_to_ab, sigma_from_depth

    settings = dataclasses.replace(stand_in_galaxy(tmp_path, trained[0], "theta"), missing_bands=(0.3, 2))
    mask = amortized.training_band_mask(settings, 60_000, np.random.default_rng(0))
    count = mask.sum(axis=1)
    assert abs(np.mean(count > 0) - 0.3) < 0.01 and count.max() == 2 and abs(np.mean(count == 1) - 0.15) < 0.01
    np.testing.assert_allclose(mask.mean(axis=0), (0.15 * 1 + 0.15 * 2) / 3, atol=0.006)  # every band alike
    np.testing.assert_array_equal(mask, amortized.training_band_mask(settings, 60_000, np.random.default_rng(0)))
    features = np.array([[24.0, 25.0, 26.0], [20.0, np.nan, 21.0], [np.nan, np.nan, 22.0], [20.0, 21.0, np.nan]])
    error = np.array([[1.0, 1.0, 1.0], [1.0, np.nan, 1.0], [np.nan, np.nan, 1.0], [1.0, 1.0, 1.0]])
    floor = njy_to_ab(sigma_from_depth(29.0, 5))  # zero flux at the configured depth: the AB floor
    x = amortized.estimator_x(settings, features, error)
    np.testing.assert_allclose(x[:3], [[24.0, 25.0, 26.0, 0, 0, 0], [20.0, floor, 21.0, 0, 1, 0],
                                       [floor, floor, 22.0, 1, 1, 0]])
    assert np.isnan(x[3, 2]) and x[3, 5] == 0  # a non-finite feature with a finite error is invalid, not missing
    narrow = dataclasses.replace(settings, missing_bands=(0.3, 1))
    assert np.isnan(amortized.estimator_x(narrow, features, error)[2]).all()  # 2 missing: more than it takes
    deep = amortized.estimator_x(dataclasses.replace(settings, depth_inputs=(27.0, 30.0)), features, error)
    five_sigma = 31.4 - 2.5 * np.log10(5.0)  # a 1 nJy error's 5-sigma depth, 29.65 AB
    np.testing.assert_allclose(deep[1], [20.0, njy_to_ab(sigma_from_depth(28.5, 5)), 21.0, five_sigma, 28.5,
                                         five_sigma, 0, 1, 0])  # a missing band: the range's middle


def test_auto_depth_inputs_and_band_masks_follow_the_served_catalogues():
    """``auto`` (the default) resolves from the catalogues an estimator serves: one depth and no masks for a
    catalogue at the configured depth with every band; depth inputs over its depths and band masks for one at mixed
    depths with gaps; null where a network taking the features alone is needed; explicit values untouched."""
    from seqsbi.amortized import complete_block
    from seqsbi.catalogue_config import resolve_auto_inputs
    from seqsbi.catalogue_table import Catalogue
    from seqsbi.units import sigma_from_depth

    def config(**block):
        return validate_config({"galaxy": {"features": {"kind": "ab_magnitude", "noise": {"depth_5sigma_ab": 29.0}}},
                                "amortized": {"a": {"prior": {"from_library": True}, **block},
                                              "unused": {"prior": {"from_library": True}}},
                                "catalogues": {"f": {"path": "f.csv", "estimator": "a"}}})

    rng = np.random.default_rng(0)
    k = len(config()["galaxy"]["filters"])  # 8

    def catalogue(depths, missing=None):
        flux, error = np.full(depths.shape, 50.0), sigma_from_depth(depths, 5)
        if missing is not None:
            flux, error = np.where(missing, np.nan, flux), np.where(missing, np.nan, error)
        return {"f": Catalogue("f.csv", np.arange(len(depths)).astype(str), (), flux, error)}

    plain = config()
    reasons = resolve_auto_inputs(plain, catalogue(np.full((200, k), 29.3)))  # within 0.5 mag, every band
    assert plain["amortized"]["a"]["training_depth_range_ab"] is None and plain["amortized"]["a"][
        "training_missing_bands"] is None
    assert reasons["a"]["training_depth_range_ab"].startswith("0.0% of the catalogues' band depths lie over 0.5 mag")
    assert reasons["unused"]["training_depth_range_ab"] == "null: it serves no catalogue"
    # simulations: auto follows the resolved inputs: 20,000 for the features alone, 50,000 with depths or masks.
    assert plain["amortized"]["a"]["simulations"] == 20000
    assert reasons["a"]["simulations"] == "the network takes the features alone"
    missing = np.zeros((200, k), dtype=bool)
    missing[:30, 0] = missing[30:40, :3] = True  # 20% of rows, at most 3 bands
    mixed = config()
    resolve_auto_inputs(mixed, catalogue(rng.uniform(27.2, 29.8, (200, k)), missing))
    assert mixed["amortized"]["a"]["training_depth_range_ab"] == [27.0, 30.0]
    assert mixed["amortized"]["a"]["training_missing_bands"] == {"share": 0.5, "max_bands": 3}
    assert mixed["amortized"]["a"]["simulations"] == 50000 and mixed["amortized"]["unused"]["simulations"] == 20000
    missing[:150, 1] = True  # 75% of rows; one row with 6 of 8 missing: over half the filters, refined
    missing[0, :6] = True
    many = config()
    reasons = resolve_auto_inputs(many, catalogue(np.full((200, k), 29.0), missing))
    assert many["amortized"]["a"]["training_missing_bands"] == {"share": 0.75, "max_bands": 3}
    assert "share 0.75, their share rounded up; max_bands 3, the most missing in a row missing at most half the " \
           "bands (1 row(s) missing more are refined)" in reasons["a"][
        "training_missing_bands"]
    only = np.zeros((200, k), dtype=bool)
    only[0, :7] = True
    unhelped = config()
    assert resolve_auto_inputs(unhelped, catalogue(np.full((200, k), 29.0), only))["a"][
        "training_missing_bands"].startswith("every row with bands missing misses over half of them: none")
    assert unhelped["amortized"]["a"]["training_missing_bands"] is None
    # Explicit values stay; the network must take the features alone for warm_start and a run's round 0.
    explicit = config(training_depth_range_ab=[26.0, 31.0], training_missing_bands=None)
    reasons = resolve_auto_inputs(explicit, catalogue(rng.uniform(27.2, 29.8, (200, k)), missing))
    assert explicit["amortized"]["a"]["training_depth_range_ab"] == [26.0, 31.0]
    assert explicit["amortized"]["a"]["training_missing_bands"] is None
    assert explicit["amortized"]["a"]["simulations"] == 50000
    assert reasons["a"]["simulations"] == "the network also takes training_depth_range_ab"
    sized = config(training_depth_range_ab=[26.0, 31.0], simulations=3000)
    assert "simulations" not in resolve_auto_inputs(sized, catalogue(np.full((200, k), 29.0)))["a"]
    assert sized["amortized"]["a"]["simulations"] == 3000
    library = config(source="library")
    assert resolve_auto_inputs(library, catalogue(np.full((200, k), 27.0), missing))["a"]["simulations"].startswith(
        "unused")
    warm = config()
    warm["catalogues"]["f"]["refine"] = {"warm_start": True}
    reasons = resolve_auto_inputs(warm, catalogue(rng.uniform(27.2, 29.8, (200, k)), missing))
    assert warm["amortized"]["a"]["training_depth_range_ab"] is None
    assert reasons["a"]["training_missing_bands"] == "null: catalogue 'f' continues its network (refine.warm_start)"
    run = config()
    run["runs"] = {"r": {"round0_amortized": "a"}}
    assert resolve_auto_inputs(run, catalogue(np.full((200, k), 27.0), missing))["a"][
        "training_depth_range_ab"] == "null: a run's round0_amortized"
    # A job's params hold the resolved value, a resolved null left out: filled back as auto, read as null.
    assert complete_block("a", {"prior": {"from_library": True}})["training_depth_range_ab"] is None
    for block, size in (({}, 20000), ({"training_missing_bands": {"share": 0.5}}, 50000), ({"simulations": 400}, 400)):
        completed = complete_block("a", {"prior": {"from_library": True}, **block})
        assert amortized.settings_for("a", completed, config()["galaxy"]).simulations_per_round == size
    assert complete_block("a", {"prior": {"from_library": True}, "training_missing_bands": {"share": 0.5}})[
        "training_missing_bands"] == {"share": 0.5, "max_bands": 2}


@pytest.mark.parametrize("depths, expected, clipped", [
    ((8.0, 42.0), (10.0, 40.0), "8.00 and 42.00 AB"),  # both percentiles past the limits
    ((8.0, 29.8), (10.0, 30.0), "8.00 and 29.80 AB"),  # the bright one only
    ((27.2, 29.8), (27.0, 30.0), None),  # within the limits: rounded out to 0.5 mag, not clipped
])
def test_auto_depth_range_says_when_the_catalogue_depths_were_clipped_to_the_limits(depths, expected, clipped):
    """``training_depth_range_ab: auto`` over catalogue depths past DEPTH_RANGE_LIMITS_AB (10-40 AB) gives the
    limits, and its reason (printed at parse time) says the catalogues' percentiles went past them."""
    import dataclasses

    from seqsbi.units import sigma_from_depth

    config = toy_block()
    settings = dataclasses.replace(amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"]),
                                   simulator_settings={"noise": {"depth_5sigma_ab": 29.0}})
    depth = np.repeat(np.array(depths), 100)[:, None] * np.ones((1, 3))  # half the rows at each depth, 3 bands
    value, reason = amortized.auto_depth_range(settings, sigma_from_depth(depth, 5))
    assert value == expected
    assert reason.startswith("100.0% of the catalogues' band depths lie over 0.5 mag from galaxy.features.noise's: "
                             "depth inputs over their 1st-99th percentiles")
    if clipped:
        assert reason.endswith(f", {clipped}, which go past the accepted 10-40 AB and were clipped to them (check "
                               f"the catalogues' error columns and units)")
    else:
        assert "clipped" not in reason


def test_rows_with_bands_missing_the_estimator_cannot_take_name_band_masks_that_would(tmp_path, trained, caplog):
    import dataclasses

    settings = stand_in_galaxy(tmp_path, trained[0], "theta")
    missing = np.zeros((40, 3), dtype=bool)
    missing[:5, 0] = missing[5:7, 1:] = True  # 7 of 40 rows (17.5%): share 0.5 (the least); 2 of 3 bands: refined
    amortized.advise_band_masks(settings, missing, ~missing.any(axis=1))
    assert "7 of 40 galaxies have bands missing that estimator toy cannot take (it has no band masks)" in caplog.text
    assert "amortized.toy.training_missing_bands: {share: 0.50, max_bands: 1}" in caplog.text
    caplog.clear()
    many = np.zeros((40, 3), dtype=bool)
    many[:29, 2] = True  # 72.5% of rows: the catalogue's share, rounded up
    amortized.advise_band_masks(settings, many, np.zeros(40, dtype=bool))
    assert "{share: 0.75, max_bands: 1}" in caplog.text
    caplog.clear()
    one = dataclasses.replace(settings, missing_bands=(0.2, 1))  # takes the 5 one-band rows, not the 2 others ...
    amortized.advise_band_masks(one, missing, missing.sum(axis=1) <= 1)
    assert caplog.text == ""  # ... which miss over half the bands: no masks would take them
    amortized.advise_band_masks(one, missing, missing.sum(axis=1) == 0)  # an estimator that took none of them
    assert "5 of 40 galaxies" not in caplog.text and "7 of 40 galaxies" in caplog.text
    assert "(it takes at most 1 missing (training_missing_bands))" in caplog.text
    caplog.clear()
    amortized.advise_band_masks(one, missing[:5], np.ones(5, dtype=bool))
    assert caplog.text == ""


def test_rows_missing_bands_the_estimator_cannot_take_are_flagged_and_the_rest_fitted(tmp_path, trained):
    """The catalogue flags of rows with bands missing: a row missing more bands than the estimator's band masks take
    (max_bands), or any band when it has none, is flagged missing_bands and gets NaN samples (refined without those
    bands); a row missing at most max_bands is fitted by a masked estimator (finite samples, no flag); a non-finite
    feature of a band that is there is invalid_x, never missing_bands."""
    import dataclasses

    import torch

    settings, result = trained
    plain = stand_in_galaxy(tmp_path, settings, "theta")  # 3 bands, no band masks
    features = result.held_out_x[:5].copy()
    error = np.ones_like(features)
    error[1, 0] = error[2, :2] = error[4, :] = np.nan  # rows 1, 2 and 4 miss 1, 2 and all 3 bands
    missing = np.isnan(error)  # the catalogue's missing fluxes (and errors)
    features[missing] = np.nan
    features[3, 2] = np.nan  # a band that is there with a non-finite feature: invalid, not missing

    class FeaturesOnly:
        """The trained flow behind a masked estimator's x ([features, masks] (n, 6)): only finite rows reach it."""
        input_shape = result.estimator.input_shape

        def sample(self, shape, condition):
            assert condition.shape[1] == 6 and torch.isfinite(condition).all()
            return result.estimator.sample(shape, condition=condition[:, :3])

    ood = amortized.OODScore.calibrate(np.hstack([result.held_out_x, np.zeros_like(result.held_out_x)]),
                                       np.hstack([result.held_out_x, np.zeros_like(result.held_out_x)]), 10)
    for masks, estimator, score, taken in ((None, result.estimator, result.ood, [0]),
                                           ((0.3, 1), FeaturesOnly(), ood, [0, 1]),
                                           ((0.3, 2), FeaturesOnly(), ood, [0, 1, 2])):
        chosen = dataclasses.replace(plain, missing_bands=masks)
        x = amortized.estimator_x(chosen, features, error)
        out = amortized.catalogue_posteriors(estimator, score, x, settings.prior, 50, 3, FLAGS, missing=missing)
        fitted = np.isfinite(out.samples).all(axis=(1, 2))
        assert fitted.tolist() == [i in taken for i in range(4)] + [False], masks  # row 4 misses every band
        assert np.isnan(out.samples[~fitted]).all()
        assert out.columns["flag_missing_bands"].tolist() == [i in (1, 2, 4) and i not in taken for i in range(5)]
        assert out.columns["flag_invalid_x"].tolist() == [False, False, False, True, False], masks
        assert out.columns["n_missing_bands"].tolist() == [0, 1, 2, 0, 3]
        assert ["missing_bands" in flags for flags in out.flags] == out.columns["flag_missing_bands"].tolist()


@pytest.mark.parametrize("depths, masks, width", [((27.0, 30.0), None, 6), ((27.0, 30.0), (0.3, 2), 9),
                                                   (None, (0.3, 2), 6)])
def test_galaxy_training_blocks_with_depths_or_masks_do_not_depend_on_chunks(tmp_path, trained, monkeypatch, depths,
                                                                            masks, width):
    """The galaxy branch of the training blocks with depth inputs and/or band masks (a stand-in flux model in place
    of the SPS model): x is [features, depths, masks] as configured, the same whichever chunk simulates a block."""
    import dataclasses

    settings = dataclasses.replace(stand_in_galaxy(tmp_path, trained[0], "theta"), simulator_name="galaxy",
                                   depth_inputs=depths, missing_bands=masks)
    monkeypatch.setattr(amortized, "galaxy_flux_simulator", lambda s: lambda theta, rng: 50.0 * (2.5 + theta))
    whole = amortized.simulate_training_blocks(settings, slice(0, 600))
    parts = [amortized.simulate_training_blocks(settings, scatter.chunk_rows(600, 100, 3, chunk)) for chunk in range(3)]
    for i in range(3):
        np.testing.assert_array_equal(whole[i], np.concatenate([p[i] for p in parts]))
    theta, x, flux = whole
    assert x.shape == (600, width) and np.isfinite(x).all()
    np.testing.assert_allclose(flux, 50.0 * (2.5 + theta))
    missing = x[:, -3:].astype(bool) if masks is not None else np.zeros((600, 3), dtype=bool)
    if depths is not None:
        assert np.all((x[:, 3:6] >= 27) & (x[:, 3:6] <= 30))
        drawn = x[:, 3:6][~missing]
        assert len(np.unique(drawn)) == drawn.size  # a depth per row and band
        np.testing.assert_array_equal(x[:, 3:6][missing], 28.5)  # a missing band's stand-in: the range's middle
    if masks is not None:
        assert 0.2 < np.any(missing, axis=1).mean() < 0.4 and missing.sum(axis=1).max() == 2
        fill = amortized.missing_band_fill(settings)[0]
        np.testing.assert_array_equal(x[:, :3][missing], np.broadcast_to(fill, (600, 3))[missing])


def test_depth_inputs_draw_depths_per_row_and_band_and_read_them_from_errors(tmp_path, trained):
    """With depth inputs the training noise is a depth per row and band, uniform in the range, and the network's x
    is [features, depths]; a catalogue row's depths come from its own errors (NaN where a band is missing)."""
    import dataclasses

    from seqsbi.units import njy_to_ab, sigma_from_depth

    settings = stand_in_galaxy(tmp_path, trained[0], "np.ones((len(theta), len(filters)))")
    fixed = amortized.training_noise(settings, 4, np.random.default_rng(0))
    np.testing.assert_allclose(fixed.sigma_njy, sigma_from_depth(np.full(3, 29.0), 5))
    assert fixed.max_snr == 20.0
    deep = dataclasses.replace(settings, depth_inputs=(27.0, 30.0))
    noise = amortized.training_noise(deep, 5000, np.random.default_rng(1))
    depths = njy_to_ab(5 * noise.sigma_njy)
    assert noise.sigma_njy.shape == (5000, 3) and noise.max_snr == 20.0
    assert depths.min() >= 27.0 and depths.max() <= 30.0 and abs(depths.mean() - 28.5) < 0.03
    np.testing.assert_array_equal(noise.sigma_njy, amortized.training_noise(deep, 5000, np.random.default_rng(1))
                                  .sigma_njy)  # seeded
    features = np.array([[24.0, 25.0, 26.0], [20.0, np.nan, 21.0]])
    error = np.stack([sigma_from_depth(np.array([27.5, 28.0, 29.0]), 5), [1.0, np.nan, 1.0]])
    np.testing.assert_array_equal(amortized.estimator_x(settings, features, error), features)  # no depth inputs
    x = amortized.estimator_x(deep, features, error)
    np.testing.assert_allclose(x[:, 3:], [[27.5, 28.0, 29.0], [31.4 - 2.5 * np.log10(5), np.nan, 31.4 - 2.5 * np.log10(
        5)]])
    np.testing.assert_array_equal(x[:, :3], features)
    # The model-fit score's held-out rows get the training noise: one depth per row and band.
    training = {"theta": trained[1].held_out_theta, "flux": np.ones((len(trained[1].held_out_theta), 3))}
    score, _, _ = amortized.galaxy_model_fit(deep, training, trained[1].held_out_theta, 0.05, 7, features, error)
    held_depths = njy_to_ab(5 * score.held_out_sigma_njy)
    assert held_depths.min() >= 27.0 and held_depths.max() <= 30.0 and len(np.unique(held_depths)) == held_depths.size


def test_depth_offset_with_depth_inputs_is_the_distance_outside_the_range(tmp_path, trained, caplog):
    import dataclasses

    from seqsbi.units import sigma_from_depth

    settings = dataclasses.replace(stand_in_galaxy(tmp_path, trained[0], "theta"), depth_inputs=(27.0, 30.0))
    error = sigma_from_depth(np.array([[27.5, 28.0, 29.5], [26.0, 26.0, 28.0], [31.0, 31.0, 31.0]]), 5)
    np.testing.assert_allclose(amortized.galaxy_depth_offset(settings, error), [0.0, -1.0, 1.0], atol=1e-9)
    assert "2 of 3 galaxies (67%) are measured over 0.5 mag off the depth range estimator toy was trained over " \
           "(amortized.toy.training_depth_range_ab: [27, 30]" in caplog.text and "Widen the range to [26.0, 31.0]" \
           in caplog.text
    caplog.clear()
    amortized.galaxy_depth_offset(settings, sigma_from_depth(np.full((4, 3), 30.8), 5))  # only deeper: never narrower
    assert "Widen the range to [27.0, 31.0]" in caplog.text
    caplog.clear()
    amortized.galaxy_depth_offset(settings, error[[0] * 10])
    assert "galaxies" not in caplog.text


def test_every_refine_flag_is_in_the_schema():
    from seqsbi.refine import REFINE_FLAGS

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("description", "").startswith("A galaxy with any of these flags raised is refined"):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert len(found) == 1
    assert found[0]["items"]["enum"] == list(REFINE_FLAGS) and found[0]["default"] == list(REFINE_FLAGS)


def test_catalogue_posteriors_raise_the_fit_flag(trained):
    settings, result = trained
    rng = np.random.default_rng(5)
    prior, theta, model = power_law_models(500, rng)
    sigma = np.full((100, 5), 5.0)
    _, _, held_model = power_law_models(100, rng)
    score = amortized.ModelFitScore.calibrate(model, theta, prior, 0.05, held_model + sigma * rng.standard_normal(
        sigma.shape), sigma)
    flux = np.vstack([model[:3], 300.0 * np.linspace(1.0, 3.0, 5) ** 3])
    x = result.held_out_x[:4]
    flags = {**FLAGS, "fit_min_p_value": 0.02}
    whole = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 20, 11, flags,
                                           model_fit=(score, flux, np.full(flux.shape, 5.0)))
    np.testing.assert_array_equal(whole.columns["flag_fit"], [False, False, False, True])
    assert whole.flags[3].split(",").count("fit") == 1 and whole.columns["fit_p_value"][3] == 1 / 101
    # Without a score the columns are NaN and the flag is never raised.
    plain = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 20, 11, flags)
    assert np.isnan(plain.columns["fit_chi2"]).all() and not plain.columns["flag_fit"].any()


def test_galaxy_predictive_simulator_gives_each_galaxy_its_own_noise(tmp_path, trained):
    """The noise and features part of the galaxy predictive simulator, on a stand-in flux model (the batched
    galaxy model needs an SPS grid; the CLI test runs it)."""

    from seqsbi.units import njy_to_ab

    settings = stand_in_galaxy(tmp_path, trained[0], "np.repeat(100.0 * (2.0 + theta[:, :1]), len(filters), axis=1)")
    errors = np.array([[1.0, 1.0, 1.0], [30.0, 30.0, 30.0], [1000.0, 1000.0, 1000.0]])  # nJy, per galaxy
    simulate = amortized.galaxy_predictive_simulator(settings, errors)
    theta = np.zeros((2, 4000, 3))  # every draw: flux 200 nJy in every band
    x = simulate(theta, np.array([0, 2]), np.random.default_rng(0))
    assert x.shape == (2, 4000, 3)
    # Galaxy 0 (1 nJy errors): max_snr's floor 200 / 20 = 10 nJy sets its noise; magnitudes near 31.4 - 2.5 log 200.
    flux = 10 ** ((31.4 - x[0]) / 2.5)
    np.testing.assert_allclose(flux.std(axis=0), 10.0, rtol=0.05)
    np.testing.assert_allclose(flux.mean(axis=0), 200.0, rtol=0.01)
    # Galaxy 2 (rows index 2: 1000 nJy errors): mostly below its 1-sigma error, i.e. on its own AB floor.
    floor = njy_to_ab(1000.0)
    assert np.all(x[1] <= floor + 1e-9) and 0.75 < np.mean(np.isclose(x[1], floor)) < 0.9  # P(200 + 1000 N < 1000)


def test_prior_edge_share_counts_samples_near_either_bound():
    from seqsbi.priors import ParameterSpace

    prior = ParameterSpace(("a", "b"), ("", ""), np.array([0.0, -1.0]), np.array([10.0, 1.0]))
    samples = np.zeros((2, 100, 2))
    samples[1, :, 0] = 5.0
    samples[0, :, 0] = np.r_[np.full(30, 0.1), np.full(10, 9.85), np.full(60, 5.0)]  # 0.2 = 2% of 10 from a bound
    samples[1, :, 1] = np.r_[np.full(99, 0.97), [0.5]]  # b within 0.04 (2% of 2) of its upper bound 1
    shares = amortized.prior_edge_shares(samples, prior, 0.02)
    np.testing.assert_allclose(shares, [[0.4, 0.0], [0.0, 0.99]])


def test_summary_table_and_samples_file(tmp_path, trained):
    settings, result = trained
    x = result.held_out_x[:5]
    chunk = amortized.catalogue_posteriors(result.estimator, result.ood, x, settings.prior, 200, 2, FLAGS)
    ids = np.array([f"g{i}" for i in range(5)])
    table = summary_table(ids, chunk.samples, settings.prior.names, settings.prior.units, result.summary["method"],
                          chunk.columns, chunk.flags)
    write_table(table, tmp_path / "summary.fits")
    write_table(table, tmp_path / "summary.csv")
    for path in ("summary.fits", "summary.csv"):
        back = Table.read(tmp_path / path)
        assert list(back["id"]) == ids.tolist()
        np.testing.assert_allclose(back["t1_p16"], np.percentile(chunk.samples[:, :, 1], 16, axis=1), rtol=1e-6)
        np.testing.assert_allclose(back["t2_p97_5"], np.percentile(chunk.samples[:, :, 2], 97.5, axis=1), rtol=1e-6)
        assert {"ood_p_value", "prior_edge_share", "flag_prior_edge", "flags", "method"} <= set(back.colnames)
    write_samples(tmp_path / "samples.hdf5", ids, chunk.samples, settings.prior.names, settings.prior.units,
                  result.summary["method"])
    with h5py.File(tmp_path / "samples.hdf5") as hf:
        assert hf["samples"].shape == (5, 200, 3) and list(hf["samples"].attrs["parameter_units"]) == ["m"] * 3
        assert [v.decode() for v in hf["ids"][...]] == ids.tolist() and "coupling" in hf.attrs["method"]
        whole = hf["samples"][...]
    np.testing.assert_array_equal(whole, chunk.samples)
    # Written in parts (one chunk file at a time), the file holds the same.
    write_samples_in_parts(tmp_path / "parts.hdf5", [(ids[:2], chunk.samples[:2], x[:2]), (ids[2:], chunk.samples[2:],
                                                                                           x[2:])],
                           settings.prior.names, settings.prior.units, result.summary["method"])
    with h5py.File(tmp_path / "parts.hdf5") as hf:
        np.testing.assert_array_equal(hf["samples"][...], whole)
        np.testing.assert_array_equal(hf["x"][...], x)
        assert [v.decode() for v in hf["ids"][...]] == ids.tolist()


@pytest.mark.slow
@pytest.mark.workflow
def galaxy_catalogue_workdir(path) -> tuple:
    """The tiny galaxy workdir of test_galaxy_workflow without its run, and a 20-row catalogue `field.ecsv` in its
    filters: (workdir, config dict, filters)."""
    from test_galaxy_workflow import galaxy_workdir

    workdir = galaxy_workdir(path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    del config["runs"]
    filters = validate_config(config)["galaxy"]["filters"]
    catalogue_table(filters=filters).write(workdir / "field.ecsv")
    return workdir, config, filters


def test_catalogue_runs_through_the_cli(tmp_path, monkeypatch):
    workdir, config, filters = galaxy_catalogue_workdir(tmp_path)
    config["amortized"] = {"galaxy_npe": {
        "prior": {"from_library": True}, "simulations": 400, "simulation_block_size": 100, "simulation_chunks": 2,
        "test_fraction": 0.3,  # 120 held out: OOD p-values reach 1/121, below the default ood_min_p_value 0.01
        "network": {"hidden_features": 16, "num_transforms": 2}, "training": {"max_num_epochs": 3}},
        # Depth inputs: each training row's depths drawn in [27, 30] AB and given to the network, and band masks,
        # resolved from auto: TSNPE's field, the only catalogue it serves, has row 1 without a band.
        "depth_npe": {"prior": {"from_library": True}, "simulations": 400, "simulation_block_size": 100,
                      "test_fraction": 0.3, "training_depth_range_ab": [27.0, 30.0],  # (auto: band masks)
                      "network": {"hidden_features": 16, "num_transforms": 2}, "training": {"max_num_epochs": 3}},
        # The 12-row library's own rows and features as the training set (rule features).
        "library_npe": {"prior": {"from_library": True}, "source": "library", "test_fraction": 0.5,
                        "network": {"hidden_features": 8, "num_transforms": 1}, "training": {"max_num_epochs": 2}}}
    config["catalogues"] = {"field": {"path": str(workdir / "field.ecsv"), "estimator": "galaxy_npe",
                                      "posterior_samples": 50, "chunks": 2, "sampling_block_size": 8}}
    # The same rows refined by each engine family (ood_min_p_value 1 flags nearly every row): round 0 from the
    # amortized estimator's 280 training rows, one new round of 100 simulations.
    tiny = {"simulations_per_round": 100, "rounds": 2, "training": {"max_num_epochs": 3},
            "network": {"hidden_features": 8, "num_transforms": 1},
            "mcmc": {"num_chains": 4, "warmup_steps": 5, "thin": 1}}
    # Row 1 lacks F444W: no amortized posterior from galaxy_npe (flag missing_bands), so SNPE's refinement fits it
    # without the band from round 0; depth_npe (band masks) fits it, and TSNPE's round 0 is that posterior.
    gaps = catalogue_table(filters=filters)
    gaps["F444W"][1] = np.nan
    gaps.write(workdir / "gaps.ecsv")
    # SNPE's round 1 continues the amortized network (refine.warm_start), except for row 1 (a band missing: the
    # network its round 0 trained), so one batch mixes methods; TSNPE's and SNLE's build a new one.
    for engine, limit in (("SNPE", 3), ("TSNPE", 2), ("SNLE", 1)):
        run = {**tiny, "engine": engine} if engine != "SNPE" else {
            **{k: v for k, v in tiny.items() if k != "network"}, "engine": engine}
        config["catalogues"][f"field_{engine.lower()}"] = {
            **config["catalogues"]["field"], "chunks": 1, "flags": {"ood_min_p_value": 1.0},
            "refine": {"max_galaxies": limit, "galaxies_per_job": 2, "run": run, "warm_start": engine == "SNPE"}}
    config["catalogues"]["field_snpe"]["path"] = config["catalogues"]["field_tsnpe"]["path"] = str(workdir /
                                                                                                  "gaps.ecsv")
    config["catalogues"]["field_tsnpe"]["estimator"] = "depth_npe"
    # config/examples/catalogue.yaml's catalogue and refinement on tiny budgets, beside them (its galaxy block is
    # the demo's, checked below; the test's tiny library has the same filters and parameters).
    example = yaml.safe_load((ROOT / "config/examples/catalogue.yaml").read_text())
    config["catalogues"]["example"] = {
        **example["catalogues"]["field"], "path": str(ROOT / example["catalogues"]["field"]["path"]),
        "posterior_samples": 50, "refine": {**example["catalogues"]["field"]["refine"], "max_galaxies": 2,
                                            "run": {**example["catalogues"]["field"]["refine"]["run"], **tiny}}}
    # A run whose round 0 is the amortized estimator at library row 3 (runs.<run>.round0_amortized).
    (workdir / "observations.tsv").write_text("observation\tx_o\tlibrary_index\nrow3\t\t3\n")
    config["runs"] = {"warm": {"simulator": "galaxy", "prior": {"from_library": True}, "engine": "SNLE", "rounds": 2,
                               "simulations_per_round": 100, "posterior_samples": 50, "round0_amortized": "galaxy_npe",
                               **{k: v for k, v in tiny.items() if k != "simulations_per_round" and k != "rounds"}}}
    bad = {**config, "runs": {"warm": {**config["runs"]["warm"], "engine": "NPE"}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(bad))
    refused = snakemake(workdir, "-n", check=False)
    assert "runs.warm.round0_amortized: engine 'NPE' cannot continue" in refused.stdout + refused.stderr
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--cores", "2")
    warm = workdir / "results/runs/warm/row3"
    round0 = json.loads((warm / "round_0/round.json").read_text())
    assert round0["source"] == "amortized estimator" and round0["new_simulations"] == 0 and round0["epochs"] == 0
    np.testing.assert_array_equal(np.load(warm / "round_0/simulations.npz")["theta"], np.load(
        workdir / "results/amortized/galaxy_npe/training_set.npz")["theta"][:100])
    assert json.loads((warm / "round_1/round.json").read_text())["simulations_this_round"] == 100
    assert (warm / "pairplot.png").exists() and (warm / "training_curves.png").exists()
    assert "round 0 from amortized estimator galaxy_npe: 100 of its training rows, no simulations" in (
        workdir / "results/logs/train_round/warm/row3/round_0.log").read_text()
    assert example["galaxy"] == yaml.safe_load((ROOT / "config/config.yaml").read_text())["galaxy"]
    assert set(example["amortized"]["galaxy_npe"]) <= set(config["amortized"]["galaxy_npe"])
    mock = Table.read(ROOT / example["catalogues"]["field"]["path"], format="ascii.csv")
    merged = Table.read(workdir / "results/catalogues/example/merged_summary.csv", format="ascii.csv")
    assert list(merged["id"]) == list(mock["id"]) and (np.asarray(merged["refined"]).astype(str) == "True").sum() == 2
    # No training model (mass fitted within its prior) comes near a stellar nu^2 slope or 10x the brightest model:
    # each fits worse than all 120 held-out rows or all but one (280 training models only; a stellar row is
    # flagged). With so few training rows the held-out neighbour distances spread wide and `ood` flags none of
    # them; on the 20,000-simulation estimator both flag every such row (benchmarks/README.md).
    kinds = np.asarray(mock["injected"].filled("")).astype(str)
    unfit, stellar = (kinds == "bright") | (kinds == "stellar"), kinds == "stellar"
    assert unfit.sum() == 4 and np.all(np.asarray(merged["fit_p_value"])[unfit] <= 2 / 121 + 1e-12)
    assert (np.asarray(merged["flag_fit"]).astype(str) == "True")[stellar].all()  # CSV text
    out = workdir / "results/catalogues/field"
    with h5py.File(out / "samples.hdf5") as hf:
        assert hf["samples"].shape == (20, 50, 6)
        assert list(hf.attrs["parameter_names"])[:2] == ["redshift", "log_mass"]
    table = Table.read(out / "summary.fits")
    assert len(table) == 20 and "log_mass_median" in table.colnames and "flag_ood" in table.colnames
    assert np.isfinite(table["noise_depth_offset"]).all() and np.isfinite(table["fit_p_value"]).all()
    assert len(Table.read(out / "summary.csv")) == 20
    summary = json.loads((workdir / "results/amortized/galaxy_npe/amortized.json").read_text())
    assert summary["training_rows"] == 280 and summary["held_out_rows"] == 120
    assert (workdir / "results/logs/amortized_simulate/galaxy_npe/chunk_1.log").exists()
    library = json.loads((workdir / "results/amortized/library_npe/amortized.json").read_text())
    assert library["training_rows"] == 6 and library["held_out_rows"] == 6
    assert not (out / "merged_summary.fits").exists()  # no refine block: no refinement
    training = np.load(workdir / "results/amortized/galaxy_npe/training_set.npz")
    assert training["theta"].shape == (280, 6) and training["flux"].shape == (280, len(filters))
    # Depth inputs: the network's x is the features and each band's 5-sigma depth; the catalogue's errors (5 nJy:
    # 27.9 AB) lie inside [27, 30], so no depth offset.
    depth_summary = json.loads((workdir / "results/amortized/depth_npe/amortized.json").read_text())
    assert depth_summary["training_depth_range_ab"] == [27.0, 30.0]
    assert depth_summary["training_missing_bands"] == {"share": 0.5, "max_bands": 1}  # auto: 1 of 20 rows, 1 band
    assert depth_summary["features"]["noise"].startswith("depth inputs: 5-sigma depths drawn uniformly in [27, 30]")
    assert "band masks: 50% of rows miss 1-1 bands" in depth_summary["features"]["noise"]
    assert summary["training_depth_range_ab"] is None and summary["training_missing_bands"] is None  # a run's round 0
    assert summary["features"]["kind"] == "ab_magnitude" and "ab_floor_share" in summary["features"]  # one depth
    held_x = np.load(workdir / "results/amortized/depth_npe/held_out.npz")["x"]  # [features, depths, masks]
    k = len(filters)
    assert held_x.shape == (120, 3 * k) and np.all((held_x[:, k:2 * k] >= 27) & (held_x[:, k:2 * k] <= 30))
    assert set(held_x[:, 2 * k:].sum(axis=1)) == {0.0, 1.0}
    depth_table = Table.read(workdir / "results/catalogues/field_tsnpe/summary.fits")
    np.testing.assert_array_equal(depth_table["noise_depth_offset"], 0.0)
    # Row 1's missing band: fitted by the estimator (band masks), its predictive check and fit over the others.
    assert np.isfinite(depth_table["ppc_p_value"]).all() and np.isfinite(depth_table["fit_p_value"]).all()
    assert not depth_table["flag_missing_bands"].any() and depth_table["n_missing_bands"][1] == 1
    assert np.isfinite(depth_table["log_mass_median"][1]) and depth_table["method"][1] == depth_table["method"][0]

    for engine, limit in (("SNPE", 3), ("TSNPE", 2), ("SNLE", 1)):
        out = workdir / f"results/catalogues/field_{engine.lower()}"
        amortized_table, merged = Table.read(out / "summary.fits"), Table.read(out / "merged_summary.fits")
        gap = engine == "SNPE"  # row 1 (flagged missing_bands, not ood) has no F444W
        masked = engine == "TSNPE"  # row 1 has no F444W either, but the estimator takes it (band masks)
        flagged = np.flatnonzero(np.asarray(amortized_table["flag_ood"]) | np.asarray(
            amortized_table["flag_missing_bands"]))
        assert len(flagged) > limit and (1 in flagged[:limit]) == (gap or masked)
        assert list(amortized_table["n_missing_bands"]) == [0, int(gap or masked)] + [0] * 18
        refined = np.flatnonzero(np.asarray(merged["refined"]))
        np.testing.assert_array_equal(refined, flagged[:limit])  # the first flagged rows, in table order
        assert [merged["refine_note"][r] for r in refined] == [f"refined for {amortized_table['flags'][r]}"
                                                                for r in refined]
        if gap:
            # (the table's fluxes are random per band, no model's: fit may flag the row too)
            assert "missing_bands" in amortized_table["flags"][1].split(",") and merged["refine_note"][1] == \
                f"refined for {amortized_table['flags'][1]}" and amortized_table["method"][1].startswith(
                    "none: bands missing")
        assert all("beyond refine.max_galaxies = " + str(limit) in note for note in merged["refine_note"][
            flagged[limit:]])
        assert all(m.startswith(engine) for m in merged["method"][refined])
        continued = [("continuing the amortized network" in str(merged["method"][r])) for r in refined]
        assert continued == [engine == "SNPE" and r != 1 for r in refined]
        assert set(np.delete(np.asarray(merged["method"]).astype(str), refined)) == {amortized_table["method"][2]}
        batches = sorted((out / "refined").glob("batch_*.npz"))
        assert len(batches) == -(-limit // 2)  # galaxies_per_job 2
        rounds = [r for path in batches for r in json.loads(str(np.load(path)["rounds"]))]
        ids = [str(i) for path in batches for i in np.load(path)["ids"]]
        for galaxy_id, galaxy in zip(ids, rounds):
            # Round 1 trains on round 0's 100 re-noised training rows and its own 100: nothing new for round 0.
            assert galaxy[1]["training_simulations"] == 200 and galaxy[1]["new_simulations"] == 100
            assert galaxy[1]["proposal"].startswith("truncated_prior" if engine == "TSNPE" else "posterior")
            if galaxy_id == "gal001" and masked:  # its round 0: the amortized posterior at [x_o, depths, mask]
                assert galaxy[0]["source"] == "amortized estimator" and galaxy[0]["epochs"] == 0
            if galaxy_id == "gal001" and gap:  # round 0 trained on the training rows without F444W
                assert galaxy[0]["source"].startswith("amortized training rows, missing bands dropped")
                assert galaxy[0]["training_simulations"] == 100 and galaxy[0]["epochs"] >= 1
                assert "amortized" not in galaxy[1]["proposal"]
                assert galaxy[0]["round1_network"] == "round 0's, continued"
                continue
            assert galaxy[0]["source"] == "amortized estimator" and galaxy[0]["new_simulations"] == 0
            assert galaxy[0]["round1_network"] == ("amortized, continued" if engine == "SNPE" else "new")
            assert (galaxy[1]["density_estimator"] == "amortized network, continued") == (engine == "SNPE")
            assert galaxy[1]["proposal"].endswith("(amortized estimator at x_o)")
        with h5py.File(out / "merged_samples.hdf5") as hf, h5py.File(out / "samples.hdf5") as amortized_hf:
            merged_samples, amortized_samples = hf["samples"][...], amortized_hf["samples"][...]
            assert merged_samples.shape == (20, 50, 6) and engine in hf.attrs["method"]
            assert ("continuing the amortized network" in hf.attrs["method"]) == (engine == "SNPE")
            assert hf.attrs["method"].count(f"{engine} (") == (2 if engine == "SNPE" else 1)  # each method once
            assert list(hf["ids"].asstr()[...]) == list(amortized_table["id"])
        np.testing.assert_array_equal(np.delete(merged_samples, refined, axis=0),
                                      np.delete(amortized_samples, refined, axis=0))
        assert not np.array_equal(merged_samples[refined], amortized_samples[refined])
        assert np.isfinite(merged_samples[refined]).all() and np.isnan(amortized_samples[1]).all() == gap
        np.testing.assert_allclose(merged["log_mass_median"][refined],
                                   np.median(merged_samples[refined, :, 1], axis=1), rtol=1e-5)

    # The training set's noise-free fluxes do not change x: a block is what the simulator makes from its seed.
    monkeypatch.chdir(workdir)
    settings = amortized.settings_for("galaxy_npe", validate_config(config)["amortized"]["galaxy_npe"],
                                      validate_config(config)["galaxy"])
    theta, x, flux = amortized.simulate_training_blocks(settings, slice(0, 100))
    rng = np.random.default_rng(block_seed(amortized.base_seed(settings), 0))
    np.testing.assert_array_equal(theta, settings.prior.draw(100, rng))
    np.testing.assert_array_equal(x, settings.simulator()(theta, rng))
    np.testing.assert_array_equal(flux, amortized.galaxy_flux_simulator(settings)(theta, rng))
