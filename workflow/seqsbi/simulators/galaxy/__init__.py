"""Galaxy SED model pieces: SPS grid building, offline filters (numpy, astropy, h5py; synthesizer
only where its own machinery is the point)."""

from __future__ import annotations

import os
from pathlib import Path

#: Where synthesizer keeps its data directory and SVO filter cache: inside the project, never in ~.
PROJECT_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_SYNTHESIZER_DIR = PROJECT_ROOT / ".synthesizer"


def configure_synthesizer(svo_filter_cache: str | Path | None = None) -> None:
    """Point synthesizer's data directory (and, if given, its SVO filter cache) inside the project.

    Must run before the first ``import synthesizer``: that import creates the data directory.
    """
    os.environ.setdefault("SYNTHESIZER_DIR", str(DEFAULT_SYNTHESIZER_DIR))
    Path(os.environ["SYNTHESIZER_DIR"]).mkdir(parents=True, exist_ok=True)
    if svo_filter_cache is not None:
        os.environ["SYNTHESIZER_SVO_FILTER_CACHE"] = str(Path(svo_filter_cache).resolve())
