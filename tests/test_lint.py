"""`make lint` is clean: ruff (lint + import order), snakefmt --check and snakemake --lint, with the
settings in pyproject.toml. It runs with the interpreter running the tests (no reinstall)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_make_lint_is_clean():
    venv = Path(sys.prefix)
    result = subprocess.run(["make", "-C", str(ROOT), "lint", f"VENV={venv}", "-o", f"{venv}/.seqsbi-installed"],
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "All checks passed!" in output  # ruff
    assert "would be left unchanged" in output and "would be changed" not in output  # snakefmt
    assert output.count("Congratulations, your workflow is in a good condition!") == 2  # workflow and .test/
