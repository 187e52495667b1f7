# Config validation (workflow/schemas/config.schema.yaml + semantic checks in seqsbi.config) and
# input functions. Validation runs at parse time, so a bad config stops before any job starts.
import json
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from seqsbi.artifacts import ROUND_FILES
from seqsbi.config import check_device, plan_workflow, with_schema_defaults
from seqsbi.errors import ConfigError
from seqsbi.simulators import simulator_source
from seqsbi.simulators.galaxy import config as galaxy_config

try:
    # Devices are checked where jobs run: in onstart below for local runs, in each round job on a cluster.
    PLAN = plan_workflow(config, check_devices=False)
    # A custom simulator's source file per run (None for built-ins): see simulator_inputs.
    SIMULATOR_SOURCES = {
        name: simulator_source(run.simulator_name, key=f"runs.{name}.simulator") for name, run in PLAN.runs.items()
    }
except ConfigError as error:
    raise WorkflowError(f"seqsbi: invalid configuration\n{error}") from None


onstart:
    # The executor is known only now: a local run must find every run's device on this machine.
    if workflow.local_exec:
        try:
            for settings in PLAN.runs.values():
                check_device(settings)
            # Amortized estimators and catalogue refinements (catalogue_common.smk) train here too.
            for settings in CATALOGUES.estimators.values():
                check_device(settings)
            for catalogue in CATALOGUES.catalogues.values():
                if catalogue.refinement is not None:
                    check_device(catalogue.refinement)
        except ConfigError as error:
            raise WorkflowError(f"seqsbi: invalid configuration\n{error}") from None


ROUND_DIR = "results/runs/{run}/{obs}/round_{round}"
# A reference run's (engine 'likelihood') exact-likelihood posterior: no rounds (workflow/rules/reference.smk).
REFERENCE_DIR = "results/runs/{run}/{obs}/reference"
REFERENCE_FILES = {"samples": ROUND_FILES["samples"], "report": "reference.json"}
PROPOSAL_FILE = "proposal.npz"  # theta drawn for a scattered round (temporary)
CHUNK_FILE = "chunks/chunk_{chunk}.npz"  # x of one chunk of a scattered round (temporary)
GALAXY = PLAN.config["galaxy"]


wildcard_constraints:
    run="[A-Za-z0-9][A-Za-z0-9_.-]*",
    obs="[A-Za-z0-9][A-Za-z0-9_.-]*",
    round="[0-9]+",
    chunk="[0-9]+",
    grid="[A-Za-z0-9][A-Za-z0-9_.-]*",
    library="[A-Za-z0-9][A-Za-z0-9_-]*",
    # synthesizer's SVO-cache file stem: the filter code, slash replaced by underscore (HST_ACS_WFC.F606W)
    filter_key="[A-Za-z0-9][A-Za-z0-9_+-]*[.][A-Za-z0-9][A-Za-z0-9_+-]*",


def canonical(value):
    """Keys sorted at every level: Snakemake compares params by their text, so reordering keys in a
    config file must not look like a change (and rerun finished rounds)."""
    return json.loads(json.dumps(value, sort_keys=True))


def run_config(wildcards):
    """The validated runs.<run> block (defaults filled) for a job's params, specialised for the job's
    observation when it has its own prior columns, noise or bands (PLAN.run_config)."""
    return canonical(PLAN.run_config(wildcards.run, wildcards.obs))


def round_config(wildcards):
    """runs.<run> without the keys a single round does not depend on: adding rounds or observations
    to a run must not invalidate (rerun) the rounds already on disk."""
    run = dict(PLAN.run_config(wildcards.run, wildcards.obs))
    # simulation_chunks only says where the simulations run: the results are the same for any value.
    # diagnostics and reference only shape the plots and tables made from the rounds; nested_sampling is for
    # reference runs: none of them changes a round.
    for key in ("rounds", "observations", "simulation_chunks", "diagnostics", "reference", "nested_sampling"):
        run.pop(key, None)
    return canonical(run)


#: Keys of a run that only SBI engines read: a reference run's params carry their schema defaults instead of
#: the configured values, so editing them does not rerun its exact-likelihood posterior.
SBI_ONLY_KEYS = (
    "constrain_to_prior",
    "network",
    "simulations_per_round",
    "simulation_block_size",
    "training",
    "truncation",
    "rejection",
    "mcmc",
)


def reference_config(wildcards):
    """runs.<run> of a reference run at this observation without the keys its posterior does not depend on
    (round_config's, nested_sampling kept); SBI_ONLY_KEYS at their schema defaults (run_settings reads them)."""
    run = dict(PLAN.run_config(wildcards.run, wildcards.obs))
    for key in ("rounds", "observations", "simulation_chunks", "diagnostics"):
        run.pop(key, None)
    return canonical(with_schema_defaults(run, SBI_ONLY_KEYS))


def observation_params(wildcards):
    """x_o and, if known, theta_true of a job's observation, as plain lists."""
    obs = PLAN.observations[wildcards.obs]
    params = {
        "name": obs.name,
        "x_o": None if obs.x_o is None else obs.x_o.tolist(),
        "theta_true": None if obs.theta_true is None else obs.theta_true.tolist(),
        "library_index": obs.library_index,
    }
    prior = PLAN.settings(wildcards.run, wildcards.obs).prior
    if prior.fixed:  # theta_true (sheet or library row) keeps only the inferred parameters
        params["inferred"] = [prior.all_names.index(name) for name in prior.names]
        params["n_parameters"] = len(prior.all_names)
    return params


def galaxy_inputs(wildcards):
    """A galaxy run's model files: the library (its simulator proven by rebuild_simulator), the
    features (x_o of library-row observations), the SPS grid and the filter curves."""
    if PLAN.runs[wildcards.run].simulator_name != "galaxy":
        return {}
    return {
        "library": galaxy_config.library_file(GALAXY),
        "reconstruction": galaxy_config.library_file(GALAXY, ".reconstruction.tsv"),
        "features": galaxy_config.library_file(GALAXY, ".features.npz"),
        "grid": galaxy_config.model_grid_file(GALAXY),
        "filters": galaxy_config.filter_cache_files(GALAXY),
    }


def simulator_inputs(wildcards):
    """A custom simulator's source file, for the jobs that run it (train_round, simulate_chunk): editing
    it reruns the rounds built with it and everything after them. A scattered round's train_round needs
    it too: its chunk files are temporary, gone once it ran. Built-ins add nothing (seqsbi's code)."""
    source = SIMULATOR_SOURCES[wildcards.run]
    return {"simulator": source} if source else {}


def observation_inputs(wildcards):
    """The features file when the observation is a library row (its x_o and truth live there)."""
    if PLAN.observations[wildcards.obs].library_index is None:
        return {}
    return {"features": galaxy_config.library_file(GALAXY, ".features.npz")}


def train_round_inputs(wildcards):
    return {
        **previous_round(wildcards),
        **galaxy_inputs(wildcards),
        **simulator_inputs(wildcards),
        **scattered_simulations(wildcards),
        **amortized_round_zero_inputs(wildcards),
    }


def round_zero_estimator(wildcards):
    """The amortized estimator round 0 of this run starts from (runs.<run>.round0_amortized), else None."""
    if int(wildcards.round) != 0:
        return None
    return PLAN.config["runs"][wildcards.run].get("round0_amortized")


def amortized_round_zero_inputs(wildcards):
    """Round 0 from an amortized estimator: its posterior and training set (amortized_round_zero_files)."""
    estimator = round_zero_estimator(wildcards)
    return {} if estimator is None else amortized_round_zero_files(estimator)


def scattered_simulations(wildcards):
    """A scattered round's proposal and chunk files; nothing when the round simulates itself or is an
    amortized estimator's round 0 (no simulations)."""
    chunks = PLAN.runs[wildcards.run].simulation_chunks
    if chunks == 1 or round_zero_estimator(wildcards) is not None:
        return {}
    round_dir = ROUND_DIR.format(run=wildcards.run, obs=wildcards.obs, round=wildcards.round)
    return {
        "proposal": f"{round_dir}/{PROPOSAL_FILE}",
        "chunks": [f"{round_dir}/{CHUNK_FILE.format(chunk=chunk)}" for chunk in range(chunks)],
    }


def previous_round(wildcards):
    """Round k-1's trainer, posterior (round k's proposal) and its samples; nothing for round 0."""
    round_index = int(wildcards.round)
    if round_index == 0:
        return {}
    previous = ROUND_DIR.format(run=wildcards.run, obs=wildcards.obs, round=round_index - 1)
    files = {key: f"{previous}/{ROUND_FILES[key]}" for key in ("inference", "posterior", "samples")}
    if round_index == 1 and PLAN.config["runs"][wildcards.run].get("round0_amortized"):
        files["round0_simulations"] = f"{previous}/{ROUND_FILES['simulations']}"  # its trainer is rebuilt
    return files


def reference_file(run, obs, key):
    """A reference run's output ``key`` (samples, report) at observation ``obs``."""
    return os.path.join(REFERENCE_DIR, REFERENCE_FILES[key]).format(run=run, obs=obs)


def round_samples(wildcards):
    """Every round's posterior samples of one (run, observation), round 0 first; a reference run's
    one set of samples."""
    if PLAN.runs[wildcards.run].is_reference:
        return [reference_file(wildcards.run, wildcards.obs, "samples")]
    rounds = PLAN.runs[wildcards.run].rounds
    samples = os.path.join(ROUND_DIR, ROUND_FILES["samples"])
    return [samples.format(run=wildcards.run, obs=wildcards.obs, round=index) for index in range(rounds)]


def final_samples(wildcards):
    return round_samples(wildcards)[-1]


def final_round_summary(wildcards):
    """The final round's round.json (x_o's coverage by its simulations goes into the summary table); a
    reference run's reference.json (no coverage)."""
    if PLAN.runs[wildcards.run].is_reference:
        return reference_file(wildcards.run, wildcards.obs, "report")
    return os.path.join(os.path.dirname(final_samples(wildcards)), ROUND_FILES["summary"])


#: Per (run, observation), beside the pair plot and summary table: seqsbi.diagnostics' outputs.
PREDICTIVE_FILES = ("predictive_check.png", "predictive_check.tsv")
DIAGNOSTIC_FILES = (
    *PREDICTIVE_FILES,
    "convergence.csv",
    "convergence.png",
    "training_curves.png",
    "training_summary.tsv",
)


def reference_input(wildcards):
    """The reference run's samples at this observation when runs.<run>.reference names one; else nothing."""
    reference = PLAN.config["runs"][wildcards.run].get("reference")
    if not reference:
        return {}
    return {"reference": reference_file(reference, wildcards.obs, "samples")}


def round_files(key):
    """An input function: ROUND_FILES[key] of every round of one (run, observation), round 0 first."""

    def files(wildcards):
        path = os.path.join(ROUND_DIR, ROUND_FILES[key])
        settings = PLAN.runs[wildcards.run]
        rounds = range(0 if settings.is_reference else settings.rounds)  # a reference run has no rounds
        return [path.format(run=wildcards.run, obs=wildcards.obs, round=index) for index in rounds]

    return files


def final_targets():
    """Every round's artifacts (so a deleted round is recomputed, with the rounds after it), the pair
    plot, summary table and diagnostics (DIAGNOSTIC_FILES), for every (run, observation) pair."""
    targets = []
    for run, obs in PLAN.targets():
        if PLAN.runs[run].is_reference:
            targets.extend(reference_file(run, obs, key) for key in REFERENCE_FILES)
        for index in range(0 if PLAN.runs[run].is_reference else PLAN.runs[run].rounds):
            round_dir = ROUND_DIR.format(run=run, obs=obs, round=index)
            targets.extend(os.path.join(round_dir, name) for name in ROUND_FILES.values())
        targets.append(f"results/runs/{run}/{obs}/pairplot.png")
        targets.append(f"results/runs/{run}/{obs}/posterior_summary.tsv")
        # A reference run has no rounds to compare or training to plot: its predictive check only.
        names = PREDICTIVE_FILES if PLAN.runs[run].is_reference else DIAGNOSTIC_FILES
        targets.extend(f"results/runs/{run}/{obs}/{name}" for name in names)
    return targets
