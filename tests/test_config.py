"""Config and observation-sheet validation: every bad input names key, value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import ROOT, tiny_run, write_workdir
from seqsbi.config import plan_workflow, validate_config
from seqsbi.engines import ENGINES, REFERENCE_ENGINES
from seqsbi.errors import ConfigError
from seqsbi.observations import read_observations


def plan(tmp_path, sheet=None, **run_overrides):
    config_path = write_workdir(tmp_path, {"r": tiny_run(**run_overrides)}, sheet)
    return plan_workflow(yaml.safe_load(config_path.read_text()))


def test_defaults_are_filled_in(tmp_path):
    run = tiny_run()
    del run["training"], run["engine"], run["constrain_to_prior"]
    config = validate_config({"runs": {"r": run}})
    assert config["observations"] == "config/observations.tsv"
    filled = config["runs"]["r"]
    assert filled["engine"] == "SNLE" and filled["constrain_to_prior"] is True
    assert (filled["mcmc"]["num_chains"], filled["mcmc"]["warmup_steps"]) == (100, 10)
    assert filled["training"]["training_batch_size"] == 200
    assert filled["mcmc"]["method"] == "slice_np_vectorized"


def test_valid_plan_maps_engine_names_and_targets(tmp_path):
    result = plan(tmp_path, engine="SNLE")
    settings = result.runs["r"]
    assert (settings.engine, ENGINES[settings.engine].trainer) == ("SNLE", "NLE_A")
    assert settings.density_estimator == "maf"
    assert result.targets() == [("r", "zero"), ("r", "shifted")]
    assert settings.prior.labels() == ["theta_1 [m]", "theta_2 [m]", "theta_3 [m]"]


def test_snre_defaults_to_a_classifier(tmp_path):
    run = tiny_run(engine="SNRE")
    del run["density_estimator"]
    config_path = write_workdir(tmp_path, {"r": run})
    settings = plan_workflow(yaml.safe_load(config_path.read_text())).runs["r"]
    trainer = ENGINES[settings.engine].trainer
    assert (settings.engine, trainer, settings.density_estimator) == ("SNRE", "NRE_B", "resnet")


SCHEMA_ENGINES = ["'SNPE'", "'TSNPE'", "'NPE'", "'SNLE'", "'SNRE'"]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"engine": "SNXE"}, ["runs.r.engine: 'SNXE' is not one of [", *SCHEMA_ENGINES]),
        ({"rounds": "two"}, ["runs.r.rounds: 'two' is not of type 'integer'"]),
        ({"rounds": 0}, ["runs.r.rounds: 0 is less than the minimum of 1"]),
        ({"simulations_per_round": 1}, ["runs.r.simulations_per_round: 1 is less than the minimum of 2"]),
        ({"seed": "seven"}, ["runs.r.seed: 'seven' is not of type 'integer'"]),
        ({"density_estimator": "gan"}, ["runs.r.density_estimator: 'gan' is not one of ['maf', 'nsf', "]),
        ({"training": {"learning_rte": 0.1}},
         ["runs.r.training: Additional properties are not allowed ('learning_rte' was unexpected)"]),
    ],
)
def test_schema_violations_name_key_value_and_allowed(tmp_path, overrides, expected):
    with pytest.raises(ConfigError) as error:
        plan(tmp_path, **overrides)
    header, *violations = str(error.value).splitlines()
    assert header == "config does not match config.schema.yaml:"
    assert len(violations) == 1 and violations[0].startswith(f"  - {expected[0]}"), violations
    for fragment in expected[1:]:
        assert fragment in violations[0]


def test_classifier_rejected_for_density_engines(tmp_path):
    expected = r"runs\.r\.density_estimator: 'resnet' does not work with engine SNPE; allowed: maf"
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, density_estimator="resnet")


def test_unknown_simulator(tmp_path):
    expected = (r"^runs\.r\.simulator: 'linear_gausian' is neither a built-in \(linear_gaussian, two_moons, galaxy\) "
                r"nor a custom path; give 'module:function' \(module importable from the working directory\) "
                r"or 'path/to/file\.py:function'$")
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, simulator="linear_gausian")


def test_custom_simulator_that_does_not_import(tmp_path):
    expected = (r"^runs\.r\.simulator: cannot import 'no_such_module' from 'no_such_module:simulate' "
                r"\(ModuleNotFoundError: No module named 'no_such_module'\); give 'module:function'")
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, simulator="no_such_module:simulate")


def test_custom_simulator_missing_function(tmp_path):
    (tmp_path / "mysim.py").write_text("def other(theta, rng):\n    return theta\n")
    with pytest.raises(ConfigError, match=r"has no function 'simulate'"):
        plan(tmp_path, simulator=f"{tmp_path / 'mysim.py'}:simulate")


def test_custom_simulator_from_file_sets_output_length(tmp_path):
    (tmp_path / "mysim.py").write_text(
        "import numpy as np\n\ndef simulate(theta, rng, scale=1.0):\n"
        "    return np.concatenate([theta, scale * theta.sum(axis=1, keepdims=True)], axis=1)\n"
    )
    sheet = "observation\tx_o\nfour\t0,0,0,0\n"
    result = plan(tmp_path, sheet=sheet, simulator=f"{tmp_path / 'mysim.py'}:simulate",
                  simulator_settings={"scale": 2.0})
    simulator = result.runs["r"].simulator()
    x = simulator(np.ones((5, 3)), np.random.default_rng(0))
    assert x.shape == (5, 4) and np.all(x[:, 3] == 6.0)


def test_more_chunks_than_simulation_blocks(tmp_path):
    expected = (r"^runs\.r\.simulation_chunks: 5 chunks but a round has only 4 block\(s\) of simulation_block_size=50 "
                r"\(200 simulations\); a chunk is whole blocks, so use at most 4 chunks or a smaller "
                r"simulation_block_size$")
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, simulation_chunks=5, simulation_block_size=50)
    assert plan(tmp_path, simulation_chunks=4, simulation_block_size=50).runs["r"].simulation_chunks == 4


def test_bad_simulator_setting_is_named(tmp_path):
    expected = r"runs\.r\.simulator_settings: .*rejected its settings \{'nosie_std': 0\.1\}"
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, simulator_settings={"nosie_std": 0.1})


def test_observation_length_mismatch(tmp_path):
    sheet = "observation\tx_o\nshort\t0,0\n"
    expected = (r"observations\.tsv row 'short' column x_o: has 2 values but run 'r' \(simulator 'linear_gaussian'\) "
                r"returns 3; give 3 comma-separated values$")
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, sheet=sheet)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_observation(tmp_path, bad):
    sheet = f"observation\tx_o\nbroken\t0,{bad},0\n"
    expected = (rf"observations\.tsv row 'broken' column x_o: value '{bad}' is not finite; "
                r"observations must be finite numbers \(nan marks a missing band in galaxy runs\)$")
    if bad == "nan":  # a missing band, which only galaxy runs have
        expected = (r"observations\.tsv row 'broken' column x_o: nan marks a missing band, which only galaxy runs "
                    r"understand, but run 'r' uses simulator")
    with pytest.raises(ConfigError, match=expected):
        plan(tmp_path, sheet=sheet)


def test_theta_true_length_mismatch(tmp_path):
    sheet = "observation\tx_o\ttheta_true\nzero\t0,0,0\t1,2\n"
    with pytest.raises(ConfigError, match=r"column theta_true: has 2 values but run 'r' has 3 parameters"):
        plan(tmp_path, sheet=sheet)


def test_unknown_observation_name_in_run(tmp_path):
    with pytest.raises(ConfigError, match=r"runs\.r\.observations: 'missing' is not in .*available: zero, shifted"):
        plan(tmp_path, observations=["missing"])


def test_reversed_prior_bounds(tmp_path):
    prior = {"parameters": [{"name": "a", "low": 1, "high": 0}, {"name": "b", "low": 0, "high": 1},
                            {"name": "c", "low": 0, "high": 1}]}
    with pytest.raises(ConfigError, match=r"runs\.r\.prior\.parameters\[0\] \(a\): low=1 must be below high=0"):
        plan(tmp_path, prior=prior)


def test_sheet_requires_columns(tmp_path):
    (tmp_path / "s.tsv").write_text("name\tvalues\nx\t1\n")
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['observation', 'x_o'\]"):
        read_observations(tmp_path / "s.tsv")


def test_missing_sheet(tmp_path):
    with pytest.raises(ConfigError, match=r"observations: sheet '.*nowhere.tsv' does not exist"):
        read_observations(tmp_path / "nowhere.tsv")


def test_library_index_past_the_library_is_named(tmp_path):
    (tmp_path / "obs.tsv").write_text("observation\tlibrary_index\nrow\t100\n")
    config = {"observations": str(tmp_path / "obs.tsv"), "galaxy": {"library": {"n_galaxies": 100}},
              "runs": {"g": {"simulator": "galaxy", "prior": {"from_library": True}}}}
    with pytest.raises(ConfigError, match=r"row 'row' column library_index: 100 is past the library's last row \(99; "
                                          r"the library has 100 galaxies\)"):
        plan_workflow(config)
    (tmp_path / "obs.tsv").write_text("observation\tlibrary_index\nrow\t99\n")
    settings = plan_workflow(config).runs["g"]
    assert settings.prior.names[4] == "peak_age" and settings.simulator_settings["filters"][0] == "JWST/NIRCam.F070W"


def test_engine_table_names_are_the_schema_engines():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    engine_enum = schema["definitions"]["run"]["properties"]["engine"]["enum"]
    table = [name for engine in ENGINES.values() for name in (engine.name, *engine.aliases)]
    assert sorted(table + list(REFERENCE_ENGINES)) == sorted(engine_enum)


@pytest.mark.parametrize("galaxy, expected", [
    ({"filters": ["JWST/NIRCam.F070W", "JWST/NIRCam.F999W"]},
     ["galaxy.filters", "'JWST/NIRCam.F999W'", "JWST/NIRCam.F444W"]),
    ({"library": {"prior": {"parameters": [{"name": "log10metallicity", "low": -5.0, "high": -1.4}]}}},
     ["galaxy.library.prior.parameters[0] (log10metallicity)", "[-5, -1.4]", "leaves the SPS grid's range [-4, -1]"]),
    ({"library": {"prior": {"parameters": [{"name": "tau_v", "low": 3.0, "high": 0.01}]}}},
     ["galaxy.library.prior.parameters[0] (tau_v): low=3.0 must be below high=0.01"]),
    ({"features": {"noise": {"depth_5sigma_ab": [29.0, 28.5]}}},
     ["galaxy.features.noise.depth_5sigma_ab: 2 depths for 8 filters"]),
    ({"emission": {"model": "incident"}}, ["(tau_v): has no effect with galaxy.emission.model 'incident'"]),
    ({"library": {"prior": {"parameters": [{"name": "redshift", "low": 0, "high": 5}]}}},
     ["galaxy.library.prior.parameters: the model needs ['log10metallicity', 'log_mass', 'peak_age', 'tau']"]),
])
def test_bad_galaxy_block_names_key_and_value(tmp_path, galaxy, expected):
    """Checked at Snakefile parse time (test_workflow.py shows such a message reaching the user)."""
    config = yaml.safe_load(write_workdir(tmp_path, {"tiny": tiny_run()}).read_text())
    config["galaxy"] = galaxy
    with pytest.raises(ConfigError) as error:
        plan_workflow(config)
    for fragment in expected:
        assert fragment in str(error.value)


def _catalogue_example_with(estimator_keys: dict) -> dict:
    config = yaml.safe_load((ROOT / "config" / "examples" / "catalogue.yaml").read_text())
    config["amortized"]["galaxy_npe"].update(estimator_keys)
    return config


@pytest.mark.parametrize("config, expected", [
    # The closest alternative's reason at its own key, then the accepted forms at the anyOf's key.
    (_catalogue_example_with({"training_missing_bands": {"share": 2}}),
     "amortized.galaxy_npe.training_missing_bands.share: 2 is greater than or equal to the maximum of 1 (Share of "
     "training simulations with bands missing (0.5 measured well).); accepted at "
     "amortized.galaxy_npe.training_missing_bands: {share, max_bands}, null or auto"),
    (_catalogue_example_with({"training_missing_bands": {"share": 0.5, "max": 2}}),
     "amortized.galaxy_npe.training_missing_bands: Additional properties are not allowed ('max' was unexpected); "
     "accepted: {share, max_bands}, null or auto"),
    (_catalogue_example_with({"training_missing_bands": 3}),
     "amortized.galaxy_npe.training_missing_bands: 3 (int) is none of the accepted forms: {share, max_bands}, null "
     "or auto"),
    (_catalogue_example_with({"training_depth_range_ab": [27]}),
     "amortized.galaxy_npe.training_depth_range_ab: [27] is too short (give exactly 2 items); accepted: "
     "[bright, faint], null or auto"),
    (_catalogue_example_with({"training_depth_range_ab": [27, "deep"]}),
     "amortized.galaxy_npe.training_depth_range_ab.1: 'deep' is not of type 'number'; accepted at "
     "amortized.galaxy_npe.training_depth_range_ab: [bright, faint], null or auto"),
    (_catalogue_example_with({"training_depth_range_ab": "deep"}),
     "amortized.galaxy_npe.training_depth_range_ab: 'deep' is not one of ['auto']; accepted: [bright, faint], null "
     "or auto"),
    ({"galaxy": {"features": {"flux_scale_njy": -1}}, "runs": {"r": tiny_run()}},
     "galaxy.features.flux_scale_njy: -1 is less than or equal to the minimum of 0; accepted: a number > 0 or a list "
     "of 1 or more numbers > 0"),
    ({"galaxy": {"features": {"noise": {"depth_5sigma_ab": []}}}, "runs": {"r": tiny_run()}},
     "galaxy.features.noise.depth_5sigma_ab: [] should be non-empty (give at least 1 item); accepted: a number or a "
     "list of 1 or more numbers"),
    ({"galaxy": {"filter_files": {"My/Cam.F1": {"wavelength_unit": "nm"}}}, "runs": {"r": tiny_run()}},
     "galaxy.filter_files.My/Cam.F1: 'path' is a required property; accepted: a non-empty string or {path, "
     "wavelength_unit}"),
    ({"runs": {"r": tiny_run(prior={})}},
     "runs.r.prior: 'parameters' is a required property; accepted: a mapping with parameters or a mapping with "
     "from_library"),
])
def test_a_value_fitting_no_alternative_names_the_closest_ones_reason_and_the_accepted_forms(config, expected):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert str(error.value).splitlines()[1:] == [f"  - {expected}"]


def test_every_alternative_in_the_schema_has_a_brief_form():
    """Each anyOf/oneOf alternative of the schema is named by a form a config error can list (its title, else one
    made from its enum, type and bounds), not the catch-all."""
    from seqsbi.config import _schema, _schema_form

    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for keyword in ("anyOf", "oneOf"):
                for alternative in node.get(keyword, []):
                    found.append((path, _schema_form(alternative)))
            for name, child in node.items():
                walk(child, f"{path}.{name}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")

    walk(_schema(), "")
    assert len(found) >= 14  # 6 anyOf/oneOf with 2-3 alternatives each (grep anyOf/oneOf in the schema)
    for path, form in found:
        assert form and form != "any value" and len(form) <= 40, (path, form)
