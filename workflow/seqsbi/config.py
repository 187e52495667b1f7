"""Typed, validated view of the workflow configuration.

Everything here is cheap (numpy, pandas, jsonschema; no torch) because Snakemake runs it at parse
time: a bad config must stop the workflow before any job starts, with one message that names the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

from seqsbi.priors import ParameterSpace
from seqsbi.simulators import Simulator, resolve_simulator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

#: Config engine names (synference's and sbi's) -> seqsbi's method names.
ENGINE_ALIASES = {
    "SNPE": "SNPE",
    "NPE_C": "SNPE",
    "TSNPE": "TSNPE",
    "NPE": "NPE",
    "SNLE": "SNLE",
    "NLE_A": "SNLE",
    "SNRE": "SNRE",
    "NRE_B": "SNRE",
}
#: seqsbi method -> the sbi 0.27 trainer class that implements it.
SBI_TRAINERS = {"SNPE": "NPE_C", "TSNPE": "NPE_C", "NPE": "NPE_C", "SNLE": "NLE_A", "SNRE": "NRE_B"}
DENSITY_ESTIMATORS = ("maf", "nsf", "mdn", "made")
CLASSIFIERS = ("resnet", "mlp", "linear")
#: Estimators with a zuko version that sbi can put behind a logit map of the prior (constrain_to_prior).
BOUNDED_ESTIMATORS = ("maf", "nsf")


class ConfigError(ValueError):
    """Invalid configuration or observation sheet; the message says what to change."""


@dataclass(frozen=True)
class Observation:
    """One observed data vector x_o (shape (k,)) and, when known, the true parameters (shape (d,)).

    A galaxy observation may instead name a model-library row (``library_index``): its x_o and
    theta_true are read from the library's feature array once the workflow has built it.
    """

    name: str
    x_o: np.ndarray | None
    theta_true: np.ndarray | None = None
    library_index: int | None = None
    catalogue_id: str | None = None


@dataclass(frozen=True)
class RunSettings:
    """One named run: simulator, prior, engine and budgets, with defaults filled in."""

    name: str
    simulator_name: str
    simulator_settings: dict[str, Any]
    prior: ParameterSpace
    engine: str  # SNPE, TSNPE, NPE, SNLE or SNRE (see ENGINE_ALIASES)
    density_estimator: str
    constrain_to_prior: bool  # NPE methods: flow behind a logit map of the prior box (no leakage)
    network: dict[str, Any]  # hidden_features, num_transforms
    rounds: int | None  # None inside a round job, which must not depend on the total
    simulations_per_round: int
    simulation_block_size: int  # simulations per seeded block (see seqsbi.scatter)
    # Jobs a round's simulations are scattered over (1 = inside the round job); None inside a round's
    # jobs, whose results must not depend on it.
    simulation_chunks: int | None
    posterior_samples: int
    seed: int
    device: str
    training: dict[str, Any]
    mcmc: dict[str, Any]
    truncation: dict[str, Any]
    observation_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sbi_trainer(self) -> str:
        """Name of the sbi 0.27 trainer class: NPE_C, NLE_A or NRE_B."""
        return SBI_TRAINERS[self.engine]

    def simulator(self) -> Simulator:
        return resolve_simulator(self.simulator_name, self.simulator_settings, key=f"runs.{self.name}.simulator")


def _schema() -> dict:
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def _validator_filling_defaults() -> type:
    """A Draft-07 validator that also writes schema defaults into the instance."""
    base = jsonschema.Draft7Validator
    validate_properties = base.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": fill_defaults})


def _format_schema_error(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(part) for part in error.absolute_path) or "<config root>"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    hint = f" ({' '.join(description.split())})" if description and error.validator != "additionalProperties" else ""
    return f"{key}: {error.message}{hint}"


def validate_config(config: dict) -> dict:
    """Validate ``config`` against the schema and return a deep copy with defaults filled in.

    Raises:
        ConfigError: listing every violation as ``key.path: message``.
    """
    filled = copy.deepcopy(dict(config))
    validator = _validator_filling_defaults()(_schema())
    errors = sorted(validator.iter_errors(filled), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {_format_schema_error(e)}" for e in errors)
        raise ConfigError(f"config does not match {SCHEMA_PATH.name}:\n{lines}")
    return filled


def _parse_vector(text: str, where: str, column: str) -> np.ndarray:
    values = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"{where} column {column}: {item!r} is not a number; give comma-separated numbers") from None
        if not math.isfinite(value):
            raise ConfigError(
                f"{where} column {column}: value {item!r} is not finite; observations must be finite numbers"
            )
        values.append(value)
    return np.asarray(values, dtype=float)


def read_observations(path: str | Path) -> dict[str, Observation]:
    """Read the observation sheet: TSV with columns observation, x_o and optional theta_true.

    ``x_o`` and ``theta_true`` are comma-separated numbers; an empty theta_true means unknown.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"observations: sheet {str(path)!r} does not exist; create it or point 'observations' at one")
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    missing = {"observation"} - set(table.columns)
    if missing or not {"x_o", "library_index", "catalogue_id"} & set(table.columns):
        raise ConfigError(
            f"observations: sheet {str(path)!r} lacks column(s) {sorted(missing | {'x_o'})}; "
            f"required: observation, x_o (or library_index or catalogue_id; optional: theta_true); "
            f"found {list(table.columns)}"
        )
    observations: dict[str, Observation] = {}
    for _, row in table.iterrows():
        name = row["observation"].strip()
        where = f"{path} row {name!r}"
        if not name or not all(c.isalnum() or c in "_.-" for c in name):
            raise ConfigError(f"{path}: observation name {name!r} must be non-empty letters, digits, '_', '.', '-'")
        if name in observations:
            raise ConfigError(f"{path}: observation {name!r} appears twice; names must be unique")
        theta_text = row.get("theta_true", "").strip()
        theta = _parse_vector(theta_text, where, "theta_true") if theta_text else None
        index_text, x_text = row.get("library_index", "").strip(), row.get("x_o", "").strip()
        catalogue_text = row.get("catalogue_id", "").strip()
        given = [column for column, text in (("x_o", x_text), ("library_index", index_text),
                                             ("catalogue_id", catalogue_text)) if text]
        if len(given) != 1:
            raise ConfigError(f"{where}: give exactly one of x_o, library_index and catalogue_id (got "
                              f"{', '.join(given) if given else 'none'})")
        if catalogue_text:
            observations[name] = Observation(name, None, theta, catalogue_id=catalogue_text)
        elif index_text:
            if not index_text.isdigit():
                raise ConfigError(f"{where} column library_index: {index_text!r} is not a row number (0, 1, ...)")
            observations[name] = Observation(name, None, theta, int(index_text))
        else:
            observations[name] = Observation(name, _parse_vector(x_text, where, "x_o"), theta)
    if not observations:
        raise ConfigError(f"observations: sheet {str(path)!r} has no rows")
    return observations


def _check_estimator(run: str, engine: str, estimator: str | None, constrain_to_prior: bool) -> str:
    allowed = CLASSIFIERS if engine == "SNRE" else DENSITY_ESTIMATORS
    if estimator is None:
        return allowed[0]
    if estimator not in allowed:
        raise ConfigError(
            f"runs.{run}.density_estimator: {estimator!r} does not work with engine {engine}; allowed: {', '.join(allowed)}"
        )
    if constrain_to_prior and SBI_TRAINERS[engine] == "NPE_C" and estimator not in BOUNDED_ESTIMATORS:
        raise ConfigError(
            f"runs.{run}.density_estimator: {estimator!r} cannot be bounded to the prior (constrain_to_prior: true); "
            f"use {' or '.join(BOUNDED_ESTIMATORS)}, or set constrain_to_prior: false"
        )
    return estimator


def observation_from_params(params: dict, features_path: str | Path | None = None) -> Observation:
    """Rebuild an :class:`Observation` inside a job from its params (see common.smk), reading a
    library row's x_o and theta_true from the features file when the observation names one."""
    if params.get("library_index") is not None:
        from seqsbi.artifacts import read_npz

        if features_path is None:
            raise ValueError(f"observation {params['name']!r} names library row {params['library_index']} "
                             f"but the job got no features file")
        data, index = read_npz(features_path), int(params["library_index"])
        return Observation(params["name"], data["x"][index], data["theta"][index], index)
    theta = params.get("theta_true")
    return Observation(params["name"], np.asarray(params["x_o"], dtype=float),
                       None if theta is None else np.asarray(theta, dtype=float))


def run_settings(name: str, run: dict, all_observations: list[str]) -> RunSettings:
    """Build :class:`RunSettings` from one validated (defaults-filled) ``runs.<name>`` entry."""
    engine = ENGINE_ALIASES[run["engine"]]
    return RunSettings(
        name=name,
        simulator_name=run["simulator"],
        simulator_settings=dict(run["simulator_settings"]),
        prior=ParameterSpace.from_config(run["prior"], key=f"runs.{name}.prior"),
        engine=engine,
        density_estimator=_check_estimator(name, engine, run.get("density_estimator"), run["constrain_to_prior"]),
        constrain_to_prior=run["constrain_to_prior"],
        network=dict(run["network"]),
        rounds=run.get("rounds"),
        simulations_per_round=run["simulations_per_round"],
        simulation_block_size=run["simulation_block_size"],
        simulation_chunks=run.get("simulation_chunks"),
        posterior_samples=run["posterior_samples"],
        seed=run["seed"],
        device=run["device"],
        training=dict(run["training"]),
        mcmc=dict(run["mcmc"]),
        truncation=dict(run["truncation"]),
        observation_names=tuple(run.get("observations", all_observations)),
    )


def _check_simulation_chunks(settings: RunSettings) -> None:
    from seqsbi.scatter import block_count

    blocks = block_count(settings.simulations_per_round, settings.simulation_block_size)
    if settings.simulation_chunks > blocks:
        raise ConfigError(
            f"runs.{settings.name}.simulation_chunks: {settings.simulation_chunks} chunks but a round has only "
            f"{blocks} block(s) of simulation_block_size={settings.simulation_block_size} "
            f"({settings.simulations_per_round} simulations); a chunk is whole blocks, so use at most {blocks} "
            f"chunks or a smaller simulation_block_size"
        )


def _check_run_observations(settings: RunSettings, observations: dict[str, Observation], sheet: str,
                            galaxy: dict) -> None:
    simulator = settings.simulator()
    output_dim = simulator.output_dim(settings.prior)
    for obs_name in settings.observation_names:
        if obs_name not in observations:
            raise ConfigError(
                f"runs.{settings.name}.observations: {obs_name!r} is not in {sheet}; available: {', '.join(observations)}"
            )
        obs = observations[obs_name]
        if obs.library_index is not None:
            _check_library_observation(settings, obs, sheet, galaxy)
            continue
        if obs.x_o.shape != (output_dim,):
            raise ConfigError(
                f"{sheet} row {obs_name!r} column x_o: has {obs.x_o.size} values but run {settings.name!r} "
                f"(simulator {settings.simulator_name!r}) returns {output_dim}; give {output_dim} comma-separated values"
            )
        if obs.theta_true is not None and obs.theta_true.shape != (settings.prior.dim,):
            raise ConfigError(
                f"{sheet} row {obs_name!r} column theta_true: has {obs.theta_true.size} values but run "
                f"{settings.name!r} has {settings.prior.dim} parameters ({', '.join(settings.prior.names)})"
            )


def _check_library_observation(settings: RunSettings, obs: Observation, sheet: str, galaxy: dict) -> None:
    from seqsbi.simulators.galaxy import plan

    if settings.simulator_name != "galaxy":
        raise ConfigError(f"{sheet} row {obs.name!r} column library_index: only galaxy runs have a model library, "
                          f"but run {settings.name!r} uses simulator {settings.simulator_name!r}; give x_o instead")
    n_galaxies = plan.library_size(galaxy)
    if obs.library_index >= n_galaxies:
        raise ConfigError(f"{sheet} row {obs.name!r} column library_index: {obs.library_index} is past the library's "
                          f"last row ({n_galaxies - 1}; the library has {n_galaxies} galaxies)")


def resolve_galaxy_run(name: str, run: dict, galaxy: dict) -> dict:
    """A galaxy run with everything made explicit: the prior (library ranges with overrides) and the
    simulator settings (library, filters, features, noise), so round jobs need nothing else."""
    from seqsbi.simulators.galaxy import plan

    key = f"runs.{name}"
    if run["simulator"] != "galaxy":
        if run["prior"].get("from_library"):
            raise ConfigError(f"{key}.prior.from_library: only the galaxy simulator has a library; "
                              f"give prior.parameters for simulator {run['simulator']!r}")
        return run
    if run["simulator_settings"]:
        raise ConfigError(f"{key}.simulator_settings: {run['simulator_settings']} not allowed for the galaxy "
                          f"simulator; it takes its settings from the galaxy block (library, filters, features)")
    resolved = copy.deepcopy(run)
    prior = run["prior"]
    if prior.get("from_library"):
        parameters = plan.library_prior_config(galaxy)
        names = [p["name"] for p in parameters]
        for parameter, bounds in prior.get("override_prior_ranges", {}).items():
            if parameter not in names:
                raise ConfigError(f"{key}.prior.override_prior_ranges: {parameter!r} is not a library parameter; "
                                  f"library parameters: {', '.join(names)}")
            parameters[names.index(parameter)].update(low=bounds[0], high=bounds[1])
        resolved["prior"] = {"type": "box_uniform", "parameters": parameters}
    else:
        library_names = list(plan.library_prior(galaxy).names)
        given = [p["name"] for p in prior["parameters"]]
        if given != library_names:
            raise ConfigError(f"{key}.prior.parameters: names {given} must be the library's, in order: {library_names}")
    resolved["simulator_settings"] = {
        "library": plan.library_file(galaxy),
        "svo_filter_cache": plan.SVO_FILTER_CACHE,
        "filters": list(galaxy["filters"]),
        "features": galaxy["features"]["kind"],
        "noise": galaxy["features"]["noise"],
        "backend": galaxy["backend"],
    }
    return resolved


@dataclass(frozen=True)
class WorkflowPlan:
    """Everything the Snakefile needs: validated config, runs, and their observations."""

    config: dict
    runs: dict[str, RunSettings]
    observations: dict[str, Observation]

    def targets(self) -> list[tuple[str, str]]:
        """All (run, observation) pairs to fit."""
        return [(run.name, obs) for run in self.runs.values() for obs in run.observation_names]


def plan_workflow(config: dict) -> WorkflowPlan:
    """Validate config and observation sheet together; raise :class:`ConfigError` on the first problem.

    Custom simulators are imported and called once on the prior's centre to learn their output length.
    """
    filled = validate_config(config)
    from seqsbi.simulators.galaxy.plan import check_galaxy_config

    check_galaxy_config(filled["galaxy"])
    observations = read_observations(filled["observations"])
    if any(obs.catalogue_id is not None for obs in observations.values()):
        from seqsbi.simulators.galaxy.catalogue import catalogue_observations

        observations.update(catalogue_observations(observations, filled["galaxy"]))
    for name, run in filled["runs"].items():
        filled["runs"][name] = resolve_galaxy_run(name, run, filled["galaxy"])
    runs = {name: run_settings(name, run, list(observations)) for name, run in filled["runs"].items()}
    for settings in runs.values():
        _check_simulation_chunks(settings)
        _check_run_observations(settings, observations, filled["observations"], filled["galaxy"])
    return WorkflowPlan(filled, runs, observations)
