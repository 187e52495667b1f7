# Config validation (workflow/schemas/config.schema.yaml + semantic checks in seqsbi.config) and
# input functions. Validation runs at parse time, so a bad config stops before any job starts.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from seqsbi.artifacts import ROUND_FILES
from seqsbi.config import ConfigError, plan_workflow

try:
    PLAN = plan_workflow(config)
except ConfigError as error:
    raise WorkflowError(f"seqsbi: invalid configuration\n{error}") from None

RESULTS = "results"
ROUND_DIR = RESULTS + "/runs/{run}/{obs}/round_{k}"


wildcard_constraints:
    run="[A-Za-z0-9][A-Za-z0-9_.-]*",
    obs="[A-Za-z0-9][A-Za-z0-9_.-]*",
    k="[0-9]+",


def run_config(wildcards):
    """The validated runs.<run> block (defaults filled) for a job's params."""
    return PLAN.config["runs"][wildcards.run]


def observation_params(wildcards):
    """x_o and, if known, theta_true of a job's observation, as plain lists."""
    obs = PLAN.observations[wildcards.obs]
    return {
        "name": obs.name,
        "x_o": obs.x_o.tolist(),
        "theta_true": None if obs.theta_true is None else obs.theta_true.tolist(),
    }


def previous_round(wildcards):
    """Round k-1's trainer and posterior (round k's proposal); nothing for round 0."""
    k = int(wildcards.k)
    if k == 0:
        return {}
    previous = ROUND_DIR.format(run=wildcards.run, obs=wildcards.obs, k=k - 1)
    return {key: f"{previous}/{ROUND_FILES[key]}" for key in ("inference", "posterior")}


def round_samples(wildcards):
    """Every round's posterior samples of one (run, observation), round 0 first."""
    rounds = PLAN.runs[wildcards.run].rounds
    return [
        ROUND_DIR.format(run=wildcards.run, obs=wildcards.obs, k=k) + "/" + ROUND_FILES["samples"]
        for k in range(rounds)
    ]


def final_samples(wildcards):
    return round_samples(wildcards)[-1]


def final_targets():
    """Pair plot and summary table for every (run, observation) pair."""
    targets = []
    for run, obs in PLAN.targets():
        targets.append(f"{RESULTS}/runs/{run}/{obs}/pairplot.png")
        targets.append(f"{RESULTS}/runs/{run}/{obs}/posterior_summary.tsv")
    return targets
