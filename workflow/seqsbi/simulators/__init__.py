"""Simulators: numpy in, numpy out; never torch or sbi.

Protocol: ``function(theta, rng, **settings) -> x`` with theta of shape (n, d), a
``numpy.random.Generator`` and x of shape (n, k). Built-ins live in :mod:`seqsbi.simulators.toy`;
custom ones are named in config as ``module:function`` or ``path/to/file.py:function``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi.errors import ConfigError
from seqsbi.priors import ParameterSpace, full_theta
from seqsbi.simulators.galaxy.simulator import galaxy
from seqsbi.simulators.toy import BUILTIN_SIMULATORS as TOY_SIMULATORS

BUILTIN_SIMULATORS = {**TOY_SIMULATORS, "galaxy": galaxy}


class Simulator:
    """A simulator function bound to its settings, with shape checks at the boundary."""

    def __init__(self, name: str, function: Callable[..., np.ndarray], settings: dict[str, Any], key: str,
                 space: ParameterSpace | None = None):
        self.name = name
        # A prior with fixed parameters: the function gets theta with their values inserted.
        self.space = space if space is not None and space.fixed else None
        self.function = function
        self.settings = dict(settings)
        self.key = key
        self._takes_rng = "rng" in inspect.signature(function).parameters

    def __call__(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulate x (n, k) for parameters theta (n, d)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if self.space is not None:
            theta = full_theta(theta, self.space)
        kwargs = dict(self.settings)
        if self._takes_rng:
            kwargs["rng"] = rng
        x = np.asarray(self.function(theta, **kwargs), dtype=float)
        if x.ndim == 1 and theta.shape[0] == x.shape[0]:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] != theta.shape[0]:
            raise ValueError(
                f"{self.key}: simulator {self.name!r} returned shape {x.shape} for theta of shape {theta.shape}; "
                f"it must return (n, k) for n parameter vectors"
            )
        return x

    def output_dim(self, prior) -> int:
        """Length k of one simulation: declared by the simulator if it can (the galaxy model, whose
        library may not exist yet), otherwise found by simulating the prior's centre once."""
        declared = getattr(self.function, "declared_output_dim", None)
        if declared is not None:
            return declared(self.settings)
        try:
            x = self(prior.centre[None, :], np.random.default_rng(0))
        except TypeError as error:
            raise ConfigError(
                f"{self.key}_settings: simulator {self.name!r} rejected its settings {self.settings} ({error})"
            ) from None
        except Exception as error:  # user code: report what failed, where
            raise ConfigError(
                f"{self.key}: simulator {self.name!r} failed on the prior centre {prior.centre.tolist()}: "
                f"{type(error).__name__}: {error}"
            ) from None
        return x.shape[1]


def _load_custom(path: str, key: str) -> Callable[..., np.ndarray]:
    module_name, _, function_name = path.rpartition(":")
    how = "give 'module:function' (module importable from the working directory) or 'path/to/file.py:function'"
    if not module_name or not function_name:
        raise ConfigError(
            f"{key}: {path!r} is neither a built-in ({', '.join(BUILTIN_SIMULATORS)}) nor a custom path; {how}"
        )
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise FileNotFoundError(f"no file {str(file.resolve())!r}")
            spec = importlib.util.spec_from_file_location(f"seqsbi_custom_{file.stem}", file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(
            f"{key}: cannot import {module_name!r} from {path!r} ({type(error).__name__}: {error}); {how}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"{key}: module {module_name!r} has no function {function_name!r}; {how}")
    return function


def simulator_source(name: str, key: str = "simulator") -> str | None:
    """The source file a custom simulator's code lives in, for Snakemake to watch: ``path/to/file.py``
    as written, or the module file of ``module:function`` (found with :func:`importlib.util.find_spec`,
    which imports only the module's parent packages), relative to the working directory when inside it.

    None for built-ins: they are seqsbi's own code, not an input of the jobs (Snakemake itself reruns a
    rule whose script file changed). Only this one file is watched, not the helpers it imports.
    """
    if name in BUILTIN_SIMULATORS:
        return None
    module_name = name.rpartition(":")[0]
    if module_name.endswith(".py"):
        return os.path.normpath(module_name)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception as error:
        raise ConfigError(f"{key}: cannot find module {module_name!r} of {name!r} ({type(error).__name__}: {error})"
                          ) from None
    origin = spec.origin if spec is not None and spec.has_location else None
    if origin is None or not Path(origin).is_file():
        return None  # a namespace package or a compiled-in module: no file to watch
    relative = os.path.relpath(origin)
    return origin if relative.split(os.sep)[0] == os.pardir else relative


def resolve_simulator(name: str, settings: dict[str, Any], key: str = "simulator",
                      space: ParameterSpace | None = None) -> Simulator:
    """Turn a config simulator name (built-in or custom path) into a :class:`Simulator`; with ``space``,
    its fixed parameters are inserted into every theta (the function always sees every parameter)."""
    function = BUILTIN_SIMULATORS.get(name) or _load_custom(name, key)
    return Simulator(name, function, settings, key, space)


__all__ = ["Simulator", "resolve_simulator", "simulator_source", "BUILTIN_SIMULATORS"]
