"""sbibm tasks as seqsbi custom simulators: ``simulator: benchmarks/sbibm/sbibm_tasks.py:simulate`` with
``simulator_settings: {task: two_moons}``. Nothing sbibm-specific lives in the seqsbi package.

sbibm draws its noise from torch's global generator; each call reseeds it from the numpy Generator
seqsbi passes, so a block of simulations is a function of its seed like any other simulator's.
"""

from __future__ import annotations

import numpy as np


def _task(name: str):
    import sbibm

    return sbibm.get_task(name)


def simulate(theta: np.ndarray, rng: np.random.Generator, task: str) -> np.ndarray:
    """x (n, dim_data) from sbibm task ``task`` at parameters theta (n, dim_parameters)."""
    import torch

    torch.manual_seed(int(rng.integers(2**62)))
    with torch.no_grad():
        x = _task(task).get_simulator()(torch.as_tensor(theta, dtype=torch.float32))
    return x.numpy().astype(float)


def declared_output_dim(settings: dict) -> int:
    return int(_task(settings["task"]).dim_data)


simulate.declared_output_dim = declared_output_dim


def box_prior(task: str) -> list[dict]:
    """The task's uniform prior as seqsbi prior.parameters (low/high per parameter).

    Raises:
        ValueError: for tasks whose prior is not a box (seqsbi priors are boxes).
    """
    params = _task(task).prior_params
    if set(params) != {"low", "high"}:
        raise ValueError(f"sbibm task {task!r} has prior parameters {sorted(params)}, not a uniform box "
                         f"(low, high); seqsbi runs need box priors: pick a task with a uniform prior")
    low, high = (np.asarray(params[key], dtype=float) for key in ("low", "high"))
    return [{"name": f"theta_{i + 1}", "low": float(lo), "high": float(hi)}
            for i, (lo, hi) in enumerate(zip(low, high))]


def observation(task: str, number: int) -> tuple[np.ndarray, np.ndarray]:
    """(x_o (dim_data,), theta_true (dim_parameters,)) of sbibm observation ``number`` (1-10)."""
    t = _task(task)
    return t.get_observation(number)[0].numpy().astype(float), t.get_true_parameters(number)[0].numpy().astype(float)


def reference_samples(task: str, number: int) -> np.ndarray:
    """sbibm's 10,000 reference posterior samples (10000, dim_parameters) for observation ``number``."""
    return _task(task).get_reference_posterior_samples(number).numpy().astype(float)
