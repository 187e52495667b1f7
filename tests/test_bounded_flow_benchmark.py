"""benchmarks/bounded_flow.py (the prior-bounded flow at tiny budgets) on one seed."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "bounded_flow.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_one_fit_reports_its_posterior_and_the_tally():
    result = run_script("--seeds", "8", "--flows", "zuko-unbounded")
    assert result.returncode == 0, result.stderr[-2000:]
    line = re.search(r"zuko-unbounded seed=8 mean=\[(.*?)\] std=\[(.*?)\]", result.stdout)
    mean, std = (np.array([float(v) for v in group.split(",")]) for group in line.groups())
    assert np.all(np.abs(mean + 1) < 0.3) and np.all(std < 0.5), (mean, std)  # truth: -1, std 0.1
    assert re.search(r"^zuko-unbounded: missed=\d/1 over_2x_wide=\d/1$", result.stdout, re.M)


def test_an_unknown_flow_is_named():
    result = run_script("--seeds", "8", "--flows", "zuko")
    assert result.returncode != 0 and "unknown flow 'zuko'" in result.stderr
