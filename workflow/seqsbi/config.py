"""Typed, validated view of the workflow configuration: schema defaults, runs, the workflow plan.

Everything here is cheap (numpy, pandas, jsonschema; no torch) because Snakemake runs it at parse
time: a bad config must stop the workflow before any job starts, with one message that names the
key, the bad value and what is allowed. The observation sheet is read by :mod:`seqsbi.observations`;
the galaxy block is checked and galaxy runs are resolved by :mod:`seqsbi.simulators.galaxy.config`.
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

from seqsbi import censoring
from seqsbi.engines import BOUNDED_ESTIMATORS, engine_named, is_reference_engine
from seqsbi.errors import ConfigError
from seqsbi.observations import Observation, read_observations
from seqsbi.priors import ParameterSpace
from seqsbi.scatter import block_count
from seqsbi.simulators import Simulator, resolve_simulator
from seqsbi.simulators.galaxy import config as galaxy_config
from seqsbi.simulators.galaxy.catalogue import catalogue_observations
from seqsbi.simulators.galaxy.photometry import (
    feature_observations,
    observation_simulator_settings,
    photometry_observations,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

@dataclass(frozen=True)
class RunSettings:
    """One named run: simulator, prior, engine and budgets, with defaults filled in."""

    name: str
    simulator_name: str
    simulator_settings: dict[str, Any]
    prior: ParameterSpace
    engine: str  # SNPE, TSNPE, NPE, SNLE or SNRE (a key of seqsbi.engines.ENGINES), or 'likelihood' (a reference run)
    density_estimator: str
    constrain_to_prior: bool  # NPE methods: flow behind a map of the prior box (no leakage; see bounding)
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
    # Bounds of rejection sampling (config 'rejection'; defaults in seqsbi.engines.REJECTION_DEFAULTS).
    rejection: dict[str, Any] = field(default_factory=dict)
    # engine 'likelihood': nautilus settings (config 'nested_sampling'; defaults in seqsbi.reference.SAMPLER_DEFAULTS).
    nested_sampling: dict[str, Any] = field(default_factory=dict)
    # SBI runs: the name of the reference (engine 'likelihood') run of the same simulator and prior, or None.
    reference: str | None = None
    # Amortized galaxy estimators: (bright, faint) 5-sigma AB range of the per-band training depths, which the
    # network takes as inputs beside the features (amortized.<name>.training_depth_range_ab); None: one depth.
    depth_inputs: tuple[float, float] | None = None
    # Amortized galaxy estimators: (share of training rows with bands missing, most bands missing in a row); the
    # network takes a missing-band mask beside the features (amortized.<name>.training_missing_bands); None: none.
    missing_bands: tuple[float, int] | None = None
    # With constrain_to_prior, the map of the prior box in front of the flow: "logit" (sbi's) or "probit"
    # (seqsbi.bounding: a posterior equal to the prior is the identity flow; amortized estimators).
    bounding: str = "logit"

    @property
    def is_reference(self) -> bool:
        """A reference run (engine 'likelihood'): exact-likelihood posterior, no rounds, no training."""
        return is_reference_engine(self.engine)

    def simulator(self) -> Simulator:
        return resolve_simulator(self.simulator_name, self.simulator_settings, key=f"runs.{self.name}.simulator",
                                 space=self.prior)


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
    """One ``key.path: message`` line for a schema violation, with the key's description as a hint; for a value
    that fits none of an anyOf/oneOf's alternatives, the reason from the closest alternative and the accepted
    forms instead (:func:`_alternatives_message`)."""
    key = ".".join(str(part) for part in error.absolute_path) or "<config root>"
    if error.validator in ("anyOf", "oneOf") and isinstance(error.validator_value, list):
        return _alternatives_message(key, error)
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    hint = f" ({' '.join(description.split())})" if description and error.validator != "additionalProperties" else ""
    if error.validator in ("minItems", "maxItems") and isinstance(error.schema, dict):
        hint = f" ({_item_count(error.schema)})" + hint
    return f"{key}: {error.message}{hint}"


def _item_count(schema: dict) -> str:
    """How many items an array schema takes, as an instruction (``give exactly 2 items``)."""
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    count = f"exactly {low}" if low == high else f"{low} to {high}" if high is not None and low else \
        f"at most {high}" if high is not None else f"at least {low}"
    return f"give {count} item{'' if (high if high is not None else low) == 1 else 's'}"


def _alternatives_message(key: str, error: jsonschema.ValidationError) -> str:
    """``key``'s value fits none of an anyOf/oneOf's alternatives (``error``): the reason, from the closest
    alternative (:func:`_closest_alternative`: its errors at their own key paths), then the accepted forms
    (:func:`_schema_form`), e.g. ``amortized.a.training_missing_bands.share: 2 is greater than or equal to the
    maximum of 1 (...); accepted at amortized.a.training_missing_bands: {share, max_bands}, null or auto``."""
    forms = _join_forms([_schema_form(alternative) for alternative in error.validator_value])
    if not error.context:  # oneOf: more than one alternative fits
        return f"{key}: {error.message}; accepted: exactly one of {forms}"
    closest = _closest_alternative(error)
    if not closest:
        return f"{key}: {error.instance!r} ({type(error.instance).__name__}) is none of the accepted forms: {forms}"
    reasons = [_format_schema_error(sub) for sub in closest]
    where = "" if all(not sub.relative_path for sub in closest) else f" at {key}"
    return "; ".join(reasons) + f"; accepted{where}: {forms}"


def _closest_alternative(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors of the anyOf/oneOf alternative that ``error``'s value comes closest to: among the alternatives
    whose type (and enum's types) the value has, the one holding the most relevant error (jsonschema's
    ``relevance``, deepest first); [] when the value's type fits none."""
    by_alternative: dict[int, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        by_alternative.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [i for i, alternative in enumerate(error.validator_value)
               if i in by_alternative and _type_fits(error.instance, alternative)]
    if not fitting:
        return []
    relevance = jsonschema.exceptions.relevance  # (-depth, path, keyword ranks...): the ranks, paths left out
    best = max(fitting, key=lambda i: max((len(sub.path), *relevance(sub)[2:]) for sub in by_alternative[i]))
    return sorted(by_alternative[best], key=lambda sub: [str(part) for part in sub.path])


def _type_fits(instance: Any, schema: Any) -> bool:
    """Whether ``instance`` has a type ``schema`` accepts (its ``type``, or its enum values' types; True when it
    names neither, as a ``required``-only alternative)."""
    if not isinstance(schema, dict):
        return True
    checker = jsonschema.Draft7Validator.TYPE_CHECKER
    types = schema.get("type")
    if types is not None:
        return any(checker.is_type(instance, t) for t in ([types] if isinstance(types, str) else types))
    if "enum" in schema:
        return any(type(instance) is type(value) for value in schema["enum"])
    return True


def _schema_form(schema: Any) -> str:
    """One accepted form of an anyOf/oneOf alternative, briefly: its ``title`` if it has one, else from its enum
    (e.g. ``auto``), type and bounds (e.g. ``null``, ``a number > 0``, ``a list of 2 numbers``, ``{share,
    max_bands}``, ``a mapping with parameters``)."""
    if not isinstance(schema, dict):
        return "any value"
    if "title" in schema:
        return schema["title"]
    if "enum" in schema:
        return " | ".join("null" if v is None else str(v) for v in schema["enum"])
    types = schema.get("type")
    if isinstance(types, list):
        return _join_forms([_schema_form({**schema, "type": t}) for t in types])
    if types == "null":
        return "null"
    if types == "boolean":
        return "true or false"
    if types in ("number", "integer"):
        bounds = [f"{sign} {schema[bound]:g}" for bound, sign in (
            ("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
            if isinstance(schema.get(bound), (int, float)) and not isinstance(schema.get(bound), bool)]
        return f"{'an integer' if types == 'integer' else 'a number'}{' ' + ' and '.join(bounds) if bounds else ''}"
    if types == "string":
        return "a non-empty string" if schema.get("minLength", 0) > 0 else "a string"
    if types == "array":
        low, high = schema.get("minItems"), schema.get("maxItems")
        count = (f"{low} " if low is not None and low == high else
                 f"{low} or more " if low else f"at most {high} " if high is not None else "")
        items = _schema_form(schema.get("items", {}))
        items = items[2:] if items.startswith("a ") else items[3:] if items.startswith("an ") else items
        return f"a list of {count}{items.replace('number', 'numbers', 1).replace('string', 'strings', 1)}"
    if types == "object" or "properties" in schema or "required" in schema:
        if schema.get("properties"):
            return "{" + ", ".join(schema["properties"]) + "}"
        if schema.get("required"):
            return f"a mapping with {' and '.join(schema['required'])}"
        return "a mapping"
    return "any value"


def _join_forms(forms: list[str]) -> str:
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


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
    _check_finite(filled, "")
    return filled


def with_schema_defaults(run: dict, keys: tuple[str, ...]) -> dict:
    """A validated ``runs.<name>`` block with ``keys`` reset to their schema defaults (dropped where the schema
    has none), every other key unchanged. A reference run's job params use it so that keys only SBI engines
    read do not rerun the reference when edited."""
    reset = {key: value for key, value in copy.deepcopy(run).items() if key not in keys}
    schema = _schema()
    validator = _validator_filling_defaults()({**schema["definitions"]["run"], "definitions": schema["definitions"]})
    for _ in validator.iter_errors(reset):  # fills the defaults; the block was validated at parse time
        pass
    return reset


def _check_finite(value: Any, key: str) -> None:
    """No NaN or infinity anywhere (YAML's .nan and .inf pass the schema's number type and its bounds,
    since NaN fails every comparison); simulator_settings, the simulator's own arguments, are left alone."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name != "simulator_settings":
                _check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number; give a finite value")


def _check_estimator(run: str, engine_name: str, estimator: str | None, constrain_to_prior: bool) -> str:
    engine = engine_named(engine_name)
    allowed = engine.estimators
    if estimator is None:
        return allowed[0]
    if estimator not in allowed:
        raise ConfigError(
            f"runs.{run}.density_estimator: {estimator!r} does not work with engine {engine.name}; "
            f"allowed: {', '.join(allowed)}"
        )
    if constrain_to_prior and engine.network == "posterior" and estimator not in BOUNDED_ESTIMATORS:
        raise ConfigError(
            f"runs.{run}.density_estimator: {estimator!r} cannot be bounded to the prior (constrain_to_prior: true); "
            f"use {' or '.join(BOUNDED_ESTIMATORS)}, or set constrain_to_prior: false"
        )
    return estimator


def run_settings(name: str, run: dict, all_observations: list[str]) -> RunSettings:
    """Build :class:`RunSettings` from one validated (defaults-filled) ``runs.<name>`` entry."""
    if is_reference_engine(run["engine"]):
        engine, estimator = run["engine"], ""
        if run.get("density_estimator") is not None:
            raise ConfigError(f"runs.{name}.density_estimator: engine {engine!r} trains no network; drop "
                              f"density_estimator (or use an SBI engine)")
    else:
        engine = engine_named(run["engine"]).name
        estimator = _check_estimator(name, engine, run.get("density_estimator"), run["constrain_to_prior"])
    from seqsbi.reference import SAMPLER_DEFAULTS

    prior = ParameterSpace.from_config(run["prior"], key=f"runs.{name}.prior")
    _check_training_box(name, engine, run)
    problem = censoring.check_settings(f"runs.{name}", engine, run)
    if problem is not None:
        raise ConfigError(problem)
    return RunSettings(
        name=name,
        simulator_name=run["simulator"],
        simulator_settings=dict(run["simulator_settings"]),
        prior=prior,
        engine=engine,
        density_estimator=estimator,
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
        rejection=dict(run.get("rejection", {})),
        nested_sampling={**SAMPLER_DEFAULTS, **run.get("nested_sampling", {})},
        reference=run.get("reference"),
    )


def _check_training_box(name: str, engine: str, run: dict) -> None:
    """``training.discard_prior_samples`` needs an engine that records rounds >= 1 as such (sbi's NPE files every
    round drawn from the (truncated) prior as round 0: TSNPE and NPE would silently keep them all);
    ``mcmc.restrict_to_training_box`` an MCMC-sampled engine (SNLE, SNRE) and ``discard_prior_samples`` (without
    it the box spans round 0's prior draws: the prior)."""
    key = f"runs.{name}"
    if run.get("training", {}).get("discard_prior_samples") and not is_reference_engine(engine):
        if engine_named(engine).first_round_loss:
            raise ConfigError(f"{key}.training.discard_prior_samples: true, but engine {engine} draws every round from "
                              f"the (truncated) prior and sbi trains it on all of them; it applies to SNPE, SNLE and "
                              f"SNRE: drop the key or change the engine")
    if not run.get("mcmc", {}).get("restrict_to_training_box"):
        return
    if is_reference_engine(engine) or not engine_named(engine).samples_by_mcmc:
        raise ConfigError(f"{key}.mcmc.restrict_to_training_box: true, but engine {engine} does not sample its "
                          f"posterior by MCMC; it applies to SNLE and SNRE: drop the key or change the engine")
    if not run.get("training", {}).get("discard_prior_samples"):
        raise ConfigError(f"{key}.mcmc.restrict_to_training_box: true needs training.discard_prior_samples: true "
                          f"(otherwise the network also trains on round 0's prior draws and their box is the prior): "
                          f"set it, or drop restrict_to_training_box")


def _check_simulation_chunks(settings: RunSettings) -> None:
    blocks = block_count(settings.simulations_per_round, settings.simulation_block_size)
    if settings.simulation_chunks > blocks:
        raise ConfigError(
            f"runs.{settings.name}.simulation_chunks: {settings.simulation_chunks} chunks but a round has only "
            f"{blocks} block(s) of simulation_block_size={settings.simulation_block_size} "
            f"({settings.simulations_per_round} simulations); a chunk is whole blocks, so use at most {blocks} "
            f"chunks or a smaller simulation_block_size"
        )


def _check_flux_rows_have_galaxy_runs(runs: dict, observations: dict[str, Observation], sheet: str) -> None:
    """A sheet row with ``x_err`` or a catalogue row (fluxes and errors per filter), or an x_o with nan (a band
    missing: seqsbi.simulators.galaxy.photometry.feature_observations), fitted by a run of another simulator is
    refused before the galaxy photometry checks read it (they would complain about the galaxy block instead)."""
    for name, run in runs.items():
        if run["simulator"] == "galaxy":
            continue
        for obs_name in run.get("observations", list(observations)):
            obs = observations.get(obs_name)
            if obs is not None and obs.flux_njy is not None:
                column = "x_err" if obs.catalogue_id is None else "catalogue_id"
                raise ConfigError(f"{sheet} row {obs_name!r} column {column}: per-band fluxes and errors are for "
                                  f"galaxy runs, but run {name!r} uses simulator {run['simulator']!r}; give x_o alone "
                                  f"(or list only other rows under runs.{name}.observations)")
            if obs is not None and obs.x_o is not None and np.isnan(obs.x_o).any():
                raise ConfigError(f"{sheet} row {obs_name!r} column x_o: nan marks a missing band, which only galaxy "
                                  f"runs understand, but run {name!r} uses simulator {run['simulator']!r}; give every "
                                  f"value (or list only other rows under runs.{name}.observations)")


def _check_run_observations(run: RunSettings, observations: dict[str, Observation], sheet: str,
                            galaxy: dict, plan: WorkflowPlan) -> None:
    for obs_name in run.observation_names:
        if obs_name not in observations:
            raise ConfigError(
                f"runs.{run.name}.observations: {obs_name!r} is not in {sheet}; "
                f"available: {', '.join(observations)}"
            )
        obs = observations[obs_name]
        settings = plan.settings(run.name, obs_name)
        output_dim = settings.simulator().output_dim(settings.prior)
        if obs.library_index is not None:
            galaxy_config.check_library_row(settings.name, settings.simulator_name, obs_name, obs.library_index,
                                            sheet, galaxy)
            continue
        if obs.x_o.shape != (output_dim,):
            raise ConfigError(
                f"{sheet} row {obs_name!r} column x_o: has {obs.x_o.size} values but run {settings.name!r} "
                f"(simulator {settings.simulator_name!r}) returns {output_dim}; "
                f"give {output_dim} comma-separated values"
            )
        full = settings.prior.all_names or settings.prior.names
        if obs.theta_true is not None and obs.theta_true.size not in (settings.prior.dim, len(full)):
            raise ConfigError(
                f"{sheet} row {obs_name!r} column theta_true: has {obs.theta_true.size} values but run "
                f"{settings.name!r} has {len(full)} parameters ({', '.join(full)})"
            )


def check_device(settings: RunSettings) -> None:
    """A device other than cpu must exist on this machine; torch is imported only then (parse time stays
    cheap for cpu).

    Raises:
        ConfigError: naming ``runs.<name>.device``, the device and what torch finds.
    """
    device = settings.device
    if device == "cpu" or settings.is_reference:  # a reference run trains nothing: its device is unused
        return
    import torch

    key = f"runs.{settings.name}.device"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA device"
            raise ConfigError(f"{key}: {device!r} but torch {torch.__version__} finds {found} on this machine; "
                              f"use device: cpu, or run where that GPU and a CUDA build of torch are")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}: 'mps' but torch {torch.__version__} finds no Apple MPS device on this machine; "
                          f"use device: cpu")


def check_training_budget(settings: RunSettings) -> None:
    """The round with the fewest simulations must fill sbi 0.27's training and validation batches.

    sbi (base.py get_dataloaders) trains on int((1 - validation_fraction) * n) of n simulations and validates
    on the rest, in batches of min(training_batch_size, that count) with drop_last. A network needs two
    training rows (z-scoring takes their standard deviation) and one validation row; a contrastive loss (SNRE
    in every round, SNPE's atomic loss from round 1 on, when the data are two rounds' simulations) needs
    batches of two rows in both sets, since each row's atoms are drawn from the other rows of its batch.
    """
    if settings.is_reference:
        return
    key, training = f"runs.{settings.name}", settings.training
    fraction, batch = training["validation_fraction"], training["training_batch_size"]
    engine = engine_named(settings.engine)
    budgets = [(settings.simulations_per_round, False)]
    if engine.network == "classifier":
        budgets = [(settings.simulations_per_round, True)]
    elif engine.records_proposal and (settings.rounds is None or settings.rounds > 1):
        # round 1 trains on both rounds' simulations, or on its own alone with training.discard_prior_samples
        rounds_trained = 1 if training.get("discard_prior_samples") else 2
        budgets.append((rounds_trained * settings.simulations_per_round, True))
    for n, contrastive in budgets:
        n_train = int((1 - fraction) * n)
        n_validation = n - n_train
        need = 2 if contrastive else 1
        problems = []
        if n_train < 2 or (contrastive and min(batch, n_train) < 2):
            problems.append(f"{n_train} training row(s)")
        if n_validation < need:
            problems.append(f"{n_validation} validation row(s)")
        if contrastive and batch < 2:
            problems.append(f"batches of {batch}")
        if problems:
            loss = f"engine {engine.name}'s contrastive loss" if contrastive else "training"
            raise ConfigError(
                f"{key}.training: validation_fraction={fraction:g} of {n} simulations leaves {' and '.join(problems)}"
                f"; {loss} needs at least 2 training rows, {need} validation row(s)"
                f"{' and training_batch_size >= 2' if contrastive else ''}: raise {key}.simulations_per_round "
                f"(now {settings.simulations_per_round}) or move validation_fraction toward 0.5"
            )


@dataclass(frozen=True)
class WorkflowPlan:
    """Everything the Snakefile needs: validated config, runs, and their observations."""

    config: dict
    runs: dict[str, RunSettings]
    observations: dict[str, Observation]
    # runs.<run> specialised for one observation (its own prior columns, noise and bands), only where it differs
    observation_runs: dict[tuple[str, str], dict] = field(default_factory=dict)

    def run_config(self, run: str, observation: str) -> dict:
        """The validated runs.<run> block for one observation: the run's own unless the observation specialises it."""
        return self.observation_runs.get((run, observation), self.config["runs"][run])

    def settings(self, run: str, observation: str) -> RunSettings:
        """RunSettings of ``run`` at ``observation`` (see :meth:`run_config`)."""
        if (run, observation) not in self.observation_runs:
            return self.runs[run]
        return run_settings(run, self.observation_runs[(run, observation)], list(self.runs[run].observation_names))

    def targets(self) -> list[tuple[str, str]]:
        """All (run, observation) pairs to fit."""
        return [(run.name, obs) for run in self.runs.values() for obs in run.observation_names]


def plan_workflow(config: dict, check_devices: bool = True) -> WorkflowPlan:
    """Validate config and observation sheet together; raise :class:`ConfigError` on the first problem.

    Custom simulators are imported and called once on the prior's centre to learn their output length.
    ``check_devices``: also require every run's ``device`` on this machine (:func:`check_device`). The
    Snakefile checks devices only when jobs run on this machine (a cluster's login node may have no GPU).
    """
    filled = validate_config(config)
    if not any(filled.get(key) for key in ("runs", "amortized", "catalogues")):
        raise ConfigError("config has no runs, amortized estimators or catalogues; give at least one (config/README)")
    filled.setdefault("runs", {})
    galaxy_config.check_galaxy_config(filled["galaxy"])
    # A catalogue-only config (no runs) needs no observation sheet.
    observations = read_observations(filled["observations"]) if filled["runs"] else {}
    if any(obs.catalogue_id is not None for obs in observations.values()):
        observations.update(catalogue_observations(observations, filled["galaxy"]))
    _check_flux_rows_have_galaxy_runs(filled["runs"], observations, filled["observations"])
    if any(obs.flux_njy is not None and obs.catalogue_id is None for obs in observations.values()):
        sheet_rows = {name: obs for name, obs in observations.items()
                      if obs.flux_njy is not None and obs.catalogue_id is None}
        observations.update(photometry_observations(sheet_rows, filled["galaxy"], filled["observations"]))
    observations.update(feature_observations(observations, filled["galaxy"], filled["observations"]))
    for name, run in filled["runs"].items():
        filled["runs"][name] = galaxy_config.resolve_galaxy_run(name, run, filled["galaxy"])
    runs = {name: run_settings(name, run, list(observations)) for name, run in filled["runs"].items()}
    observation_runs = {}
    for settings in runs.values():
        _check_simulation_chunks(settings)
        check_training_budget(settings)
        if check_devices:
            check_device(settings)
        _check_reference(settings, runs)  # before the observations: a custom simulator is called there
        for obs_name in settings.observation_names:
            if obs_name in observations:
                specialised = observation_run_config(settings.name, filled["runs"][settings.name],
                                                     observations[obs_name], filled["observations"])
                if specialised is not None:
                    observation_runs[(settings.name, obs_name)] = specialised
    plan = WorkflowPlan(filled, runs, observations, observation_runs)
    for settings in runs.values():
        _check_run_observations(settings, observations, filled["observations"], filled["galaxy"], plan)
    return plan


def observation_prior(parameters: list[dict], obs: Observation, where: str) -> list[dict] | None:
    """The run's prior entries with ``obs``'s own prior columns applied, or None when it has none.

    Per parameter ``p``: column ``p`` alone holds it fixed at that value (a spectroscopic redshift);
    ``p`` with ``p_err`` makes it a Gaussian (mean, std) truncated to the range; ``p_low`` and ``p_high``
    narrow the range. Every value must lie inside the run's range (what the simulator, or the library,
    covers).

    Raises:
        ConfigError: naming ``where``, the column and the run's range: a value that is not a number,
            outside the range, a reversed range, ``p_err`` without ``p`` or not positive.
    """
    names = [p["name"] for p in parameters]
    used = {c for c in obs.columns if c in names or c.rsplit("_", 1)[0] in names
            and c.rsplit("_", 1)[1] in ("err", "low", "high")}
    if not used:
        return None

    def number(column: str) -> float:
        text = obs.columns[column]
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where} column {column}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where} column {column}: {text!r} is not finite; leave it empty for the run's prior")
        return value

    out = copy.deepcopy(parameters)
    for entry in out:
        p = entry["name"]
        given = {suffix: number(f"{p}{suffix}") for suffix in ("", "_err", "_low", "_high") if f"{p}{suffix}" in used}
        if not given:
            continue
        low, high, unit = entry["low"], entry["high"], entry.get("unit", "")
        span = f"the run's range [{low:g}, {high:g}]{f' {unit}' if unit else ''}"

        def inside(value: float, column: str, low=low, high=high, span=span) -> float:
            if not low <= value <= high:
                raise ConfigError(f"{where} column {column}: {value:g} lies outside {span} (the prior the library and "
                                  f"simulator cover); drop the row from this run, or widen the run's prior "
                                  f"(prior.override_prior_ranges) within the SPS grid")
            return value

        if ("_low" in given) != ("_high" in given):
            raise ConfigError(f"{where}: give both {p}_low and {p}_high (a per-observation range), or neither")
        if "_low" in given:
            entry["low"], entry["high"] = inside(given["_low"], f"{p}_low"), inside(given["_high"], f"{p}_high")
            if not entry["low"] < entry["high"]:
                raise ConfigError(f"{where}: {p}_low={given['_low']:g} must be below {p}_high={given['_high']:g}")
        if "_err" in given:
            if "" not in given:
                raise ConfigError(f"{where} column {p}_err: needs {p} (the Gaussian's mean) on the same row")
            if not given["_err"] > 0:
                raise ConfigError(f"{where} column {p}_err: {given['_err']:g} must be positive (a Gaussian's std)")
            entry.update(distribution="gaussian", mean=inside(given[""], p), std=given["_err"])
            entry.pop("value", None)
        elif "" in given:
            if "_low" in given:
                raise ConfigError(f"{where}: {p} with {p}_low/{p}_high but no {p}_err; give {p} alone (fixed), "
                                  f"{p} and {p}_err (Gaussian), or {p}_low and {p}_high (range)")
            entry.update(distribution="fixed", value=inside(given[""], p))
            entry.pop("mean", None), entry.pop("std", None)
    return out


def observation_run_config(name: str, run: dict, obs: Observation, sheet: str) -> dict | None:
    """runs.<name> (validated, resolved) specialised for ``obs``, or None when nothing differs: the
    observation's prior columns (:func:`observation_prior`) and, for galaxy runs, its own flux errors and
    bands (seqsbi.simulators.galaxy.photometry)."""
    where = (f"galaxy.catalogue id {obs.catalogue_id!r} (observation {obs.name!r})" if obs.catalogue_id is not None
             else f"{sheet} row {obs.name!r}")
    parameters = observation_prior(run["prior"]["parameters"], obs, where) if "parameters" in run["prior"] else None
    settings = run["simulator_settings"]
    if run["simulator"] == "galaxy":
        settings = observation_simulator_settings(settings, obs)
    if parameters is None and settings is run["simulator_settings"]:
        return None
    specialised = copy.deepcopy(run)
    specialised["simulator_settings"] = copy.deepcopy(settings)
    if parameters is not None:
        specialised["prior"] = {**run["prior"], "parameters": parameters}
        ParameterSpace.from_config(specialised["prior"], key=where)
    return specialised


def _check_reference(settings: RunSettings, runs: dict[str, RunSettings]) -> None:
    """A reference run's simulator has a likelihood; an SBI run's ``reference`` names a reference run of the
    same simulator and parameters that fits every observation this run fits.

    Raises:
        ConfigError: naming ``runs.<name>.engine`` or ``runs.<name>.reference``, the value and the fix.
    """
    from seqsbi.reference import check_likelihood_available

    key = f"runs.{settings.name}"
    if settings.is_reference:
        check_likelihood_available(settings.name, settings.simulator_name, settings.simulator_settings)
        if settings.reference is not None:
            raise ConfigError(f"{key}.reference: {settings.reference!r} given for a reference run (engine "
                              f"{settings.engine!r}); only SBI runs name a reference, drop the key")
        return
    name = settings.reference
    if name is None:
        return
    if name not in runs:
        raise ConfigError(f"{key}.reference: {name!r} is not a run; runs: {', '.join(runs)}")
    reference = runs[name]
    if not reference.is_reference:
        raise ConfigError(f"{key}.reference: run {name!r} has engine {reference.engine!r}; a reference run has engine "
                          f"'likelihood'")
    if reference.simulator_name != settings.simulator_name or reference.prior.names != settings.prior.names:
        raise ConfigError(f"{key}.reference: run {name!r} fits simulator {reference.simulator_name!r} with parameters "
                          f"{list(reference.prior.names)}, this run {settings.simulator_name!r} with "
                          f"{list(settings.prior.names)}; name a reference run of the same simulator and parameters")
    ours, theirs = settings.prior, reference.prior
    same_prior = (ours.kinds == theirs.kinds and ours.fixed == theirs.fixed and np.array_equal(ours.low, theirs.low)
                  and np.array_equal(ours.high, theirs.high)
                  and all(np.array_equal(a, b, equal_nan=True) if a is not None and b is not None else a is b
                          for a, b in ((ours.mean, theirs.mean), (ours.std, theirs.std))))
    if not same_prior:
        raise ConfigError(f"{key}.reference: run {name!r} has another prior than this run ({theirs.describe()} vs "
                          f"{ours.describe()}); a reference is the same posterior: give both runs the same prior "
                          f"(ranges, overrides, distributions, fixed values)")
    if reference.simulator_settings != settings.simulator_settings:
        raise ConfigError(f"{key}.reference: run {name!r} has other simulator_settings "
                          f"({reference.simulator_settings}) than this run ({settings.simulator_settings}); give both "
                          f"the same")
    missing = [obs for obs in settings.observation_names if obs not in reference.observation_names]
    if missing:
        raise ConfigError(f"{key}.reference: run {name!r} does not fit observation(s) {missing} that this run fits; "
                          f"add them to runs.{name}.observations (or drop that key)")
