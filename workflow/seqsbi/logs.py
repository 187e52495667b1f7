"""Per-job logging: everything a rule's script prints (Python, tqdm, C libraries) goes to its log."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _LinePerUpdate(io.TextIOBase):
    """Text stream that turns carriage returns (progress-bar redraws) into new lines, so a log file
    shows each update of sbi's epoch counter and tqdm bars on its own line instead of one huge line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text.replace("\r", "\n"))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def progress_bars() -> bool:
    """Whether to draw progress bars (simulation blocks, sbi's training epochs and sampling): only on a
    terminal. Inside a job :func:`log_to_file` points stderr at the log, so a log file gets one timing
    line per stage instead of a bar redrawn thousands of times."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def log_to_file(path: str | Path, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Redirect stdout/stderr (file descriptors 1 and 2) and Python logging to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(path, "w", buffering=1) as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        sys.stdout = _LinePerUpdate(saved_streams[0])
        sys.stderr = _LinePerUpdate(saved_streams[1])
        logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr, force=True)
        logging.captureWarnings(True)
        logger = logging.getLogger("seqsbi")
        logger.info("host %s, pid %d%s", socket.gethostname(), os.getpid(),
                    f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else "")
        try:
            yield logger
        except BaseException:
            logging.getLogger("seqsbi").exception("job failed")
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
