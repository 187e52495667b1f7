"""The built-in ``galaxy`` simulator: rebuilt from a model library's metadata, with the configured
features and noise, so online simulations look exactly like the library's feature array."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_BUILT: dict[tuple[str, float], Any] = {}


def rebuilt_spec(library, path: str, grid_dir: str | None = None):
    """A read library's model spec (LibraryError without one), its grid in ``grid_dir`` when given (config
    ``galaxy.library.grid_dir``) instead of the directory the library records."""
    import dataclasses

    from seqsbi.simulators.galaxy.library import require_model

    spec = require_model(library, path)
    return spec if grid_dir is None else dataclasses.replace(spec, grid_dir=str(grid_dir))


def _rebuilt_simulator(library: str, svo_filter_cache: str, backend: str, grid_dir: str | None = None):
    """The simulator described by ``library``'s Model group (built once per process and backend), with
    the filter curves the library stores, or those in ``svo_filter_cache`` for a library without them."""
    from seqsbi.simulators.galaxy.library import read_library
    from seqsbi.simulators.galaxy.model import build_simulator

    key = (str(Path(library).resolve()), Path(library).stat().st_mtime, backend, grid_dir)
    if key not in _BUILT:
        read = read_library(library, arrays=False)  # the model and curves only: a large library's rows stay on disk
        _BUILT[key] = build_simulator(rebuilt_spec(read, library, grid_dir), svo_filter_cache, backend,
                                      read.filter_curves)
    return _BUILT[key]


def galaxy(theta: np.ndarray, rng: np.random.Generator, library: str, svo_filter_cache: str, filters: list[str],
           features: str = "ab_magnitude", noise: dict | None = None, backend: str = "batched",
           grid_dir: str | None = None) -> np.ndarray:
    """Features (n, n_filters) for galaxy parameters theta (n, 6) in the library's parameter order."""
    from seqsbi.simulators.galaxy.features import DepthNoise, simulate_features

    flux = _rebuilt_simulator(library, svo_filter_cache, backend, grid_dir)(theta)
    return simulate_features(flux, features, DepthNoise.from_config(noise, len(filters)), rng)


def declared_output_dim(settings: dict[str, Any]) -> int:
    """One feature per filter: known from config, without building the simulator at parse time."""
    return len(settings["filters"])


galaxy.declared_output_dim = declared_output_dim
