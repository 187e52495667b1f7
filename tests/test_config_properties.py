"""Property: every value the schema accepts either runs or is refused at validation (issue 15, item 6).

Configs are drawn over the schema's keys, boundary and out-of-range values included: budgets, engine and
estimator combinations, training, MCMC, truncation and rejection settings, devices, priors, observation
sheets and galaxy catalogues with malformed rows. Each one either fails validation (``plan_workflow``, what
the Snakefile runs at parse time) with a ConfigError naming a key or file, or passes it. A few of them go
through ``snakemake -n`` (no traceback), and a few passing ones through a tiny real round 0.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import snakemake
from seqsbi.config import _schema, plan_workflow
from seqsbi.engines import REFERENCE_ENGINES
from seqsbi.errors import ConfigError

RUN_SCHEMA = _schema()["definitions"]["run"]["properties"]
# SBI engines only: a reference run (engine likelihood) has no round to dry-run or train
# (tests/test_reference.py covers it).
ENGINES = [name for name in RUN_SCHEMA["engine"]["enum"] if name not in REFERENCE_ENGINES]
ESTIMATORS = RUN_SCHEMA["density_estimator"]["enum"]
CATALOGUE_FILTERS = ["JWST/NIRCam.F070W", "JWST/NIRCam.F444W"]
#: What a ConfigError must name: a config key, the sheet or the catalogue (the files are named by path).
NAMED = ("runs.", "galaxy.", "observations", "config does not match", ".tsv", ".csv")

#: Examples and time: about 40 s for the property on two cores; derandomized, so CI sees the same examples.
PROFILE = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

edge_floats = st.floats(allow_nan=True, allow_infinity=True)


def odd_one(draw, kinds: int, percent: int = 3) -> int | None:
    """Which of ``kinds`` kinds of bad input to make (each about ``percent``% of draws), or None.

    Hypothesis favours the ends of an integer range, so the bad kinds sit in its middle.
    """
    k = draw(st.integers(0, 99)) - 40
    return k // percent if 0 <= k < kinds * percent else None


@st.composite
def mostly(draw, valid, *bad):
    """Usually a ``valid`` draw, about one in ten one of the ``bad`` values (boundaries, out of range)."""
    return draw(valid) if not bad or odd_one(draw, 1, 10) is None else draw(st.sampled_from(bad))


def fraction(low: float = 0.05, high: float = 0.5):
    """Shares: usually inside (low, high), else a boundary, a value just inside one, or one outside [0, 1]."""
    return mostly(st.floats(low, high), 0.0, 1e-20, 1e-4, 0.99, 1.0, 1 - 1e-16, -0.1, 1.1, math.nan)


def optional(**entries):
    """A dict holding any subset of ``entries`` (key -> strategy)."""
    return st.fixed_dictionaries({}, optional=entries)


@st.composite
def priors(draw, dim: int):
    parameters = []
    for i in range(dim):
        low, high = -2.0, 2.0
        if odd_one(draw, 1, 5) is not None:  # now and then a bad bound: reversed, infinite, NaN, huge
            low, high = draw(st.sampled_from([(2.0, -2.0), (1.0, 1.0), (-math.inf, 2.0), (0.0, math.nan),
                                              (-1e308, 1e308)]))
        parameters.append({"name": f"t{i}", "low": low, "high": high})
    if dim > 1 and odd_one(draw, 1) is not None:
        parameters[1]["name"] = "t0"  # repeated name
    return {"parameters": parameters}


@st.composite
def vectors(draw, length: int) -> str:
    """x_o / theta_true text: usually ``length`` numbers, sometimes the wrong count, a word, NaN, or nothing."""
    kind = odd_one(draw, 2)
    values = [f"{draw(st.floats(-3, 3)):.3g}" for _ in range(length)]
    if kind == 0:
        values = values[:-1] or ["1", "2"]
    elif kind == 1:
        values[0] = draw(st.sampled_from(["abc", "nan", "inf", "", "1e999"]))
    return ",".join(values)


@st.composite
def sheets(draw, length: int, galaxy: bool):
    """(sheet text, observation names, catalogue ids used): valid rows, with malformed ones mixed in."""
    header = ["observation", "catalogue_id" if galaxy else "x_o", "theta_true"]
    rows, names = [], []
    for i in range(draw(st.integers(1, 3))):
        name = f"obs{i}"
        kind = odd_one(draw, 5)
        if kind == 0 and names:
            name = names[0]  # duplicate name
        elif kind == 1:
            name = draw(st.sampled_from(["", "bad name", "ok/slash"]))
        value = f"g{draw(st.integers(0, 3))}" if galaxy else draw(vectors(length))
        row = [name, value, ""]
        if kind == 2:
            row.append("extra")  # more fields than the header
        elif kind == 3:
            row = row[:1]  # fewer fields than the header
        elif kind == 4 and not galaxy:
            row[2] = draw(vectors(length))
        rows.append("\t".join(row))
        names.append(name)
    text = "\t".join(header) + "\n" + "\n".join(rows) + "\n"
    if odd_one(draw, 1) is not None:
        text = draw(st.sampled_from(["", "\n", "observation\n", "x_o\tfoo\n1,2\tbar\n"]))
    return text, names


@st.composite
def catalogues(draw) -> str:
    """A CSV of galaxies g0..g3 with fluxes and errors for CATALOGUE_FILTERS, some rows malformed."""
    columns = ["id"]
    for code in CATALOGUE_FILTERS:
        band = code.rsplit(".", 1)[1]
        columns += [band, f"{band}_err"]
    if odd_one(draw, 1, 5) is not None:
        columns = columns[:-1]  # an error column missing
    lines = [",".join(columns)]
    for i in range(draw(st.integers(1, 4))):
        values = [f"g{i}"] + [f"{draw(st.floats(1, 1000)):.4g}" for _ in columns[1:]]
        kind = odd_one(draw, 3)
        if kind == 0:
            values[draw(st.integers(1, len(values) - 1))] = draw(st.sampled_from(["abc", "", "-1", "0", "inf"]))
        elif kind == 1:
            values[0] = draw(st.sampled_from(["g0", ""]))  # duplicate or empty id
        elif kind == 2:
            values.append("99")  # one field too many
        lines.append(",".join(values))
    return "\n".join(lines) + "\n"


@st.composite
def runs(draw, dim: int, galaxy: bool, names: list[str]):
    run = {
        "simulator": "galaxy" if galaxy else ("two_moons" if dim == 2 and draw(st.booleans()) else
                                              draw(mostly(st.just("linear_gaussian"), "two_moons", "nowhere:f"))),
        "prior": {"from_library": True} if galaxy else draw(priors(dim)),
        "engine": draw(st.sampled_from(ENGINES)),
        # every generated run is tiny (these keys are always there): few simulations, samples and epochs
        "simulations_per_round": draw(mostly(st.integers(20, 60), 0, 1, 2, 3, 5, 8, 11)),
        "posterior_samples": draw(mostly(st.integers(1, 40), 0, -5)),
        "training": {"max_num_epochs": draw(mostly(st.integers(1, 3), 0, -1)), **draw(optional(
            training_batch_size=mostly(st.integers(2, 40), 0, 1),
            learning_rate=mostly(st.floats(1e-4, 1e-2), 0.0, -1e-3, math.inf),
            validation_fraction=fraction(),
            stop_after_epochs=mostly(st.integers(1, 3), 0),
            clip_max_norm=mostly(st.floats(0.1, 10.0), 0.0, -1.0),
            num_atoms=mostly(st.integers(2, 12), 0, 1),
            first_round_restarts=mostly(st.integers(1, 2), 0),
            max_invalid_fraction=fraction(0.0, 1.0),
        ))},
    }
    run.update(draw(optional(
        density_estimator=st.sampled_from(ESTIMATORS),
        constrain_to_prior=st.booleans(),
        rounds=mostly(st.integers(1, 3), 0, -1),
        simulation_block_size=mostly(st.integers(1, 50), 0),
        simulation_chunks=mostly(st.integers(1, 2), 0, 5, 100),
        seed=mostly(st.integers(0, 10), -1, 2**70),
        device=mostly(st.just("cpu"), "cuda", "cuda:7", "mps", "gpu", "CPU"),
        network=optional(hidden_features=mostly(st.integers(1, 8), 0),
                         num_transforms=mostly(st.integers(1, 3), 0)),
        mcmc=optional(method=mostly(st.sampled_from(["slice_np_vectorized", "slice_np"]), "hmc_pyro"),
                      num_chains=mostly(st.integers(1, 4), 0), thin=mostly(st.integers(1, 3), 0),
                      warmup_steps=mostly(st.integers(0, 3), -1),
                      init_strategy=mostly(st.sampled_from(["resample", "sir", "proposal"]), "latest_sample")),
        truncation=optional(quantile=fraction(1e-4, 0.5), support_samples=mostly(st.integers(100, 300), 50),
                            sample_with=mostly(st.sampled_from(["rejection", "sir"]), "mcmc")),
        rejection=optional(min_acceptance=fraction(1e-3, 1.0), pilot_draws=mostly(st.integers(100, 300), 50)),
        observations=mostly(st.lists(st.sampled_from(names), min_size=1, max_size=2), [], ["nowhere"]),
        simulator_settings=st.just({}) if galaxy else mostly(optional(noise_std=st.floats(0.01, 1.0)),
                                                             {"bogus": 1}),
    )))
    if run["simulator"] == "two_moons":
        run.pop("simulator_settings", None)
    return run


@st.composite
def cases(draw):
    """(config, files): a config over one run and the sheet (and catalogue) it names."""
    galaxy = odd_one(draw, 1, 20) is not None
    dim = 2 if galaxy else draw(st.integers(1, 3))
    sheet, names = draw(sheets(8 if galaxy else dim, galaxy))
    files = {"observations.tsv": sheet}
    config = {"observations": "observations.tsv", "runs": {"r": draw(runs(dim, galaxy, names))}}
    if galaxy:
        files["catalogue.csv"] = draw(catalogues())
        config["galaxy"] = {"filters": CATALOGUE_FILTERS, "catalogue": "catalogue.csv",
                            **draw(optional(features=optional(kind=st.sampled_from(["ab_magnitude", "flux_njy"]))))}
    return config, files


def write_case(workdir: Path, config: dict, files: dict[str, str]) -> dict:
    """The case's files in ``workdir``, and its config with paths made absolute."""
    for name, text in files.items():
        (workdir / name).write_text(text)
    config = {**config, "observations": str(workdir / config["observations"])}
    if "galaxy" in config:
        config["galaxy"] = {**config["galaxy"], "catalogue": str(workdir / config["galaxy"]["catalogue"])}
    return config


def check(config: dict) -> bool:
    """plan_workflow(config): True when it passes, False on a ConfigError naming a key or file; any other
    exception propagates (and fails the property)."""
    try:
        plan_workflow(config)
    except ConfigError as error:
        message = str(error)
        assert message.strip() and "Traceback" not in message
        assert any(part in message for part in NAMED), message
        return False
    return True


def test_every_config_is_refused_at_validation_or_runs(tmp_path):
    logging.disable(logging.WARNING)
    passed, refused = [], []

    @PROFILE
    @given(case=cases())
    def property_holds(case):
        config, files = case
        with tempfile.TemporaryDirectory() as scratch:
            ok = check(write_case(Path(scratch), config, files))
        (passed if ok else refused).append(case)

    start = time.perf_counter()
    property_holds()
    elapsed = time.perf_counter() - start
    print(f"{len(passed) + len(refused)} examples in {elapsed:.1f} s: {len(passed)} pass, {len(refused)} refused")
    # The strategy reaches both sides: otherwise the property says nothing.
    assert len(passed) >= 5 and len(refused) >= 20, (len(passed), len(refused))

    start = time.perf_counter()
    # snakemake -n through the CLI: two passing configs plan their jobs, a refused one prints the message
    # (no traceback) and fails.
    distinct = [case for i, case in enumerate(passed) if case not in passed[:i]]
    # The Snakefile checks devices when jobs start (onstart), not at parse time: the refused example for
    # the dry run is one refused for something else (test_workflow.py shows the device refusal).
    refused_at_parse = next(case for case in refused if all(run.get("device", "cpu") == "cpu"
                                                              for run in case[0]["runs"].values()))
    for i, ((config, files), ok) in enumerate([(distinct[0], True), (distinct[1], True), (refused_at_parse, False)]):
        workdir = tmp_path / f"dry_{i}"
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(write_case(workdir, config, files)))
        result = snakemake(workdir, "-n", "--cores", "1", check=False, timeout=300)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output[-3000:]
        if ok:
            assert result.returncode == 0 and "train_round" in output, output[-3000:]
        else:
            assert result.returncode != 0 and "seqsbi: invalid configuration" in output, output[-3000:]

    print(f"3 snakemake -n in {time.perf_counter() - start:.1f} s")
    # A tiny real round 0 for passing toy configs: the first of a posterior engine and of an MCMC one
    # (sampled by the strategy, not chosen), and one more.
    from seqsbi.engines import ENGINES as ENGINE_TABLE
    from seqsbi.engines import engine_named
    from seqsbi.rounds import train_round

    def mcmc_chains(case) -> int:
        run = case[0]["runs"]["r"]
        if not ENGINE_TABLE[engine_named(run["engine"]).name].samples_by_mcmc:
            return 0
        return run.get("mcmc", {}).get("num_chains", 100)

    # Distinct passing toy configs in the order drawn; MCMC ones with at most 4 chains (the default 100
    # chains' slice sampling is the slow part of a round, and is covered by the rest of the suite).
    toy = []
    for case in passed:
        if case[0]["runs"]["r"]["simulator"] != "galaxy" and mcmc_chains(case) <= 4 and case not in toy:
            toy.append(case)
    by_kind = {}
    for case in toy:
        by_kind.setdefault(mcmc_chains(case) > 0, case)
    chosen = list(by_kind.values()) + [case for case in toy if case not in by_kind.values()][:1]
    assert len(chosen) >= 2
    for i, (config, files) in enumerate(chosen[:3]):
        workdir = tmp_path / f"real_{i}"
        workdir.mkdir()
        plan = plan_workflow(write_case(workdir, config, files))
        settings_, observation = plan.runs["r"], plan.observations[plan.runs["r"].observation_names[0]]
        start = time.perf_counter()
        result = train_round(settings_, observation, 0)
        assert result.samples.shape == (settings_.posterior_samples, settings_.prior.dim)
        print(f"round 0 of {config['runs']['r']} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q", "-s"])
