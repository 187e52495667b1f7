"""Round artifacts on disk: file names, atomic writes, readers.

Every file is written under a temporary name in the same directory and renamed into place, so a
killed job leaves either nothing or a complete file; Snakemake never sees half a file as done. A job
killed by SIGKILL while writing cannot remove its temporary file: the next write of the same file
removes it (the process id in its name no longer runs).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi.errors import ArtifactError

#: One round's outputs, under results/runs/{run}/{obs}/round_{round}/.
ROUND_FILES = {
    "simulations": "simulations.npz",  # theta (n, d) and x (n, k) simulated in this round
    "estimator": "estimator.pt",  # trained network (torch module)
    "posterior": "posterior.pt",  # sbi posterior, default x set to x_o
    "inference": "inference.pt",  # sbi trainer with all rounds' data: the next round continues it
    "samples": "samples.npz",  # posterior samples at x_o (N, d) with parameter names and units
    "training_log": "training_log.tsv",  # per epoch: training and validation loss
    "summary": "round.json",  # seed, timings, counts, posterior mass inside the prior
}


#: This machine in temporary file names: on a shared filesystem a writer on another node is not ours to judge.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())


def temporary_path(path: str | Path, pid: int | None = None) -> Path:
    """The temporary sibling :func:`atomic_path` writes ``path`` through: ``.<stem>.tmp<host>-<pid><suffix>``
    (this host; ``pid`` this process unless given)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{_HOST}-{os.getpid() if pid is None else pid}{path.suffix}")


def _writer_alive(temporary: Path, path: Path) -> bool:
    """Whether the process that writes ``temporary`` (see :func:`temporary_path`) may still run: only a
    temporary of this host whose process is gone was left by a kill mid-write."""
    host, _, pid = temporary.name[len(f".{path.stem}.tmp"):len(temporary.name) - len(path.suffix)].rpartition("-")
    if host != _HOST or not pid.isdigit():
        return True  # another machine's, or not one of ours: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix); rename it to ``path`` on success. Temporaries
    of ``path`` left by killed writers on this host are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    for stale in path.parent.glob(f".{path.stem}.tmp*{path.suffix}"):
        if not _writer_alive(stale, path):
            stale.unlink(missing_ok=True)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)


def read_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an .npz file; ArtifactError naming the file when it cannot be read or lacks a
    ``required`` array (a damaged file: delete it and rerun, and Snakemake rebuilds it)."""
    import zipfile

    remake = "delete it and run snakemake again to rebuild it"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"{str(path)!r} cannot be read as .npz ({type(error).__name__}: {error}); "
                            f"{remake}") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ArtifactError(f"{str(path)!r} lacks array(s) {missing} (has {sorted(arrays)}); {remake}")
    return arrays


def attribute_text(value: Any) -> str:
    """An HDF5 attribute as str: h5py returns variable-length strings as str or bytes (UTF-8) depending
    on how the file was written (ours or synference's)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def attribute_texts(values: Any) -> tuple[str, ...]:
    """An HDF5 string-array attribute (or a single string) as a tuple of str, see :func:`attribute_text`."""
    return tuple(attribute_text(v) for v in np.atleast_1d(values))


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_torch(path: str | Path, obj: Any) -> None:
    import torch

    with atomic_path(path) as temporary:
        torch.save(obj, temporary)
