"""The sbibm engine benchmark: its plan (seqsbi runs per task x engine x budget), C2ST rows, table
and plot. The fits themselves are ordinary seqsbi runs with a custom simulator (sbibm_tasks.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sbibm_tasks

SIMULATOR = "benchmarks/sbibm/sbibm_tasks.py:simulate"
CSV_COLUMNS = ["task", "engine", "budget", "rounds", "observation", "seed", "c2st", "wall_s"]
#: sbibm paper (Lueckmann et al. 2021), mean C2ST over 10 observations at 10^3 / 10^4 / 10^5 simulations.
PUBLISHED = {
    "two_moons": {"SNPE": (0.64, 0.55, 0.53), "NPE": (0.73, 0.61, 0.54)},
    "slcp": {"SNPE": (0.97, 0.84, 0.67), "SNLE": (0.92, 0.71, 0.58)},
    # The paper's gaussian_linear has a Gaussian prior; ours (gaussian_linear_uniform) a box one.
    "gaussian_linear_uniform": {"SNPE (gaussian_linear)": (0.65, 0.54, 0.51)},
}
PUBLISHED_BUDGETS = (1_000, 10_000, 100_000)


@dataclass(frozen=True)
class Fit:
    """One seqsbi run of the benchmark: ``engine`` on ``task`` with ``budget`` simulations in ``rounds``.

    ``engine`` is a label from the config's ``engines``: a seqsbi engine name, or a variant defined in
    ``engine_settings`` with its own ``engine:`` key (e.g. ``SNLE-nsf: {engine: SNLE, density_estimator: nsf}``)
    and optionally its own ``rounds_per_budget``. ``seed`` seeds the run's simulations, training and
    sampling, and the C2ST classifier.
    """

    task: str
    engine: str
    budget: int
    rounds: int
    seed: int = 0

    @property
    def run(self) -> str:
        # Seed 0 keeps the name it had before the benchmark took several seeds (its fits stay valid).
        suffix = f"-seed{self.seed}" if self.seed else ""
        return f"sbibm-{self.task}-{self.engine}-{self.budget}{suffix}"


def observation_name(task: str, number: int) -> str:
    return f"{task}-{number}"


def engine_of(bench: dict, label: str) -> str:
    """The seqsbi engine behind an ``engines`` label (the label itself unless a variant names one)."""
    return bench.get("engine_settings", {}).get(label, {}).get("engine", label)


def rounds_of(bench: dict, label: str, budget: int) -> int:
    """Rounds for ``budget`` total simulations: 1 for NPE, else the label's own ``rounds_per_budget``
    (a variant in ``engine_settings``, for a sweep over rounds) or the benchmark's."""
    if engine_of(bench, label) == "NPE":
        return 1
    table = bench.get("engine_settings", {}).get(label, {}).get("rounds_per_budget", bench["rounds_per_budget"])
    rounds = {int(b): int(r) for b, r in table.items()}
    if budget not in rounds:
        raise ValueError(f"engine {label!r} has no rounds for budget {budget}: add {budget} to its rounds_per_budget")
    if budget % rounds[budget]:
        raise ValueError(f"budget {budget} does not split into {rounds[budget]} equal rounds; "
                         f"change rounds_per_budget")
    return rounds[budget]


def seeds_of(bench: dict) -> list[int]:
    """The benchmark's seeds: ``seeds`` (a list, each a separate fit of every cell) or the single ``seed`` (0)."""
    if "seeds" in bench and "seed" in bench:
        raise ValueError("give either seed (one) or seeds (a list), not both")
    seeds = bench["seeds"] if "seeds" in bench else [bench.get("seed", 0)]
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    return list(seeds)


def plan_fits(bench: dict) -> list[Fit]:
    """Every (task, engine, budget, seed); NPE trains once on the whole budget, the others in the budget's rounds."""
    budgets = sorted(int(b) for b in bench["rounds_per_budget"])
    return [Fit(task, engine, budget, rounds_of(bench, engine, budget), seed)
            for task in bench["tasks"] for engine in bench["engines"] for budget in budgets
            for seed in seeds_of(bench)]


def fit_files(fit: Fit, observation: str) -> dict:
    """A fit's final posterior samples and every round's summary (for wall_s), as the workflow writes them."""
    base = f"results/runs/{fit.run}/{observation}"
    return {
        "samples": f"{base}/round_{fit.rounds - 1}/samples.npz",
        "summaries": [f"{base}/round_{k}/round.json" for k in range(fit.rounds)],
    }


def write_observation_sheet(bench: dict, path: str | Path) -> None:
    """sbibm's observations (x_o and true parameters) of every task as a seqsbi observation sheet."""
    lines = ["observation\tx_o\ttheta_true"]
    for task in bench["tasks"]:
        for number in bench["observations"]:
            x_o, theta = sbibm_tasks.observation(task, number)
            lines.append(f"{observation_name(task, number)}\t{','.join(map(repr, x_o.tolist()))}\t"
                         f"{','.join(map(repr, theta.tolist()))}")
    text = "\n".join(lines) + "\n"
    path = Path(path)
    if not path.exists() or path.read_text() != text:  # rewriting would make every fit look out of date
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def seqsbi_config(bench: dict, sheet: str | Path) -> dict:
    """The seqsbi config (observations + runs) that fits every :func:`plan_fits` entry."""
    runs = {}
    for fit in plan_fits(bench):
        run = copy.deepcopy(bench.get("run_settings", {}))
        variant = bench.get("engine_settings", {}).get(fit.engine, {})
        run.update(copy.deepcopy({k: v for k, v in variant.items() if k != "rounds_per_budget"}))
        run.update(
            simulator=SIMULATOR,
            simulator_settings={"task": fit.task},
            prior={"parameters": sbibm_tasks.box_prior(fit.task)},
            engine=engine_of(bench, fit.engine),
            rounds=fit.rounds,
            simulations_per_round=fit.budget // fit.rounds,
            posterior_samples=bench["posterior_samples"],
            seed=fit.seed,
            observations=[observation_name(fit.task, n) for n in bench["observations"]],
        )
        runs[fit.run] = run
    return {"observations": str(sheet), "runs": runs}


def c2st_score(reference: np.ndarray, samples: np.ndarray, seed: int) -> float:
    """sbibm's C2ST (MLP classifier, 5 folds) between ``samples`` (N, d) and as many ``reference`` rows:
    0.5 when the classifier cannot tell them apart, 1.0 when it always can."""
    import torch
    from sbibm.metrics import c2st

    n = min(len(reference), len(samples))
    return float(c2st(torch.as_tensor(reference[:n], dtype=torch.float32),
                      torch.as_tensor(samples[:n], dtype=torch.float32), seed=seed)[0])


def c2st_row(fit: Fit, number: int, seed: int, samples: np.ndarray, round_summaries: list[dict]) -> dict:
    """One c2st.csv row: :func:`c2st_score` between ``samples`` and sbibm's reference samples; wall_s
    sums the rounds' proposal, simulation, training and sampling."""
    score = c2st_score(sbibm_tasks.reference_samples(fit.task, number), samples, seed)
    wall_s = sum(sum(v for k, v in summary["timings"].items() if k.endswith("_s")) for summary in round_summaries)
    return {"task": fit.task, "engine": fit.engine, "budget": fit.budget, "rounds": fit.rounds,
            "observation": number, "seed": seed, "c2st": round(score, 4), "wall_s": round(wall_s, 1)}


def write_json(path: str | Path, row: dict) -> None:
    Path(path).write_text(json.dumps(row) + "\n")


def write_table(rows: list[dict], path: str | Path) -> None:
    import pandas as pd

    table = pd.DataFrame(rows, columns=CSV_COLUMNS).sort_values(["task", "engine", "budget", "observation", "seed"])
    table.to_csv(path, index=False)


def plot_c2st(table_path: str | Path, figure_path: str | Path) -> None:
    """C2ST vs total simulations, one panel per task, our engines (mean over observations and seeds) beside the
    published values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(table_path)
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        for engine, rows in table[table["task"] == task].groupby("engine"):
            mean = rows.groupby("budget")["c2st"].mean()
            ax.plot(mean.index, mean.values, "o-", label=engine)
        for label, values in PUBLISHED.get(task, {}).items():
            ax.plot(PUBLISHED_BUDGETS, values, "k--" if label.startswith("SNPE") else "k:", lw=1,
                    label=f"published {label}")
        ax.set(xscale="log", title=task, xlabel="simulations", ylim=(0.45, 1.02))
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("C2ST (0.5 = matches reference)")
    fig.tight_layout()
    fig.savefig(figure_path, dpi=120)
    plt.close(fig)


def markdown_table(table_path: str | Path) -> str:
    """C2ST (mean over observations and seeds) per task and engine, budgets as columns, published rows beside."""
    import pandas as pd

    table = pd.read_csv(table_path)
    budgets = sorted(table["budget"].unique())
    lines = ["| task | engine | " + " | ".join(f"{b:,}" for b in budgets) + " | wall s (all fits) |",
             "|---|---|" + "---|" * (len(budgets) + 1)]
    for (task, engine), rows in table.groupby(["task", "engine"]):
        scores = rows.groupby("budget")["c2st"].mean()
        cells = [f"{scores[b]:.3f}" if b in scores else "" for b in budgets]
        lines.append(f"| {task} | {engine} | " + " | ".join(cells) + f" | {rows['wall_s'].sum():.0f} |")
        for label, values in PUBLISHED.get(task, {}).items():
            if label.split(" ")[0] == engine:
                published = dict(zip(PUBLISHED_BUDGETS, values))
                cells = [f"{published[b]:.2f}" if b in published else "" for b in budgets]
                lines.append(f"| {task} | published {label} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(markdown_table(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks/sbibm/c2st.csv"))
