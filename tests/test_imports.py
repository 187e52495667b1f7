"""Every module of the package imports on its own in a fresh interpreter (catches import cycles),
and no module imports an exception anywhere but at its top (sbi keeps a test like the first)."""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = ROOT / "workflow" / "seqsbi"


def package_modules() -> list[str]:
    names = ["seqsbi"]
    for module in pkgutil.walk_packages([str(PACKAGE)], prefix="seqsbi."):
        names.append(module.name)
    return sorted(names)


def test_the_package_has_the_modules_this_test_expects():
    modules = package_modules()
    assert {"seqsbi.errors", "seqsbi.config", "seqsbi.engines", "seqsbi.simulators.galaxy.config"} <= set(modules)


@pytest.mark.parametrize("module", package_modules())
def test_module_imports_alone_in_a_fresh_interpreter(module):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "SYNTHESIZER_DIR": str(ROOT / ".synthesizer")}
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, f"import {module} failed:\n{result.stderr[-3000:]}"


def test_errors_module_imports_nothing():
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_exceptions_are_imported_at_module_top_only():
    """A function-level import of an exception hides a cycle (it was how config.py's cycle lived)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and any(alias.name.endswith("Error") for alias in node.names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"exceptions imported inside functions: {found}"
