"""Seeds derived from (base seed, run, observation, round): reruns reproduce, rounds differ."""

from __future__ import annotations

import zlib

import numpy as np


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; crc32 is the same everywhere.
    return zlib.crc32(text.encode("utf-8"))


def round_seed(seed: int, run: str, observation: str, round_index: int) -> int:
    """A 63-bit seed for one round (fits torch.manual_seed and numpy Generators)."""
    sequence = np.random.SeedSequence([seed, _stable_hash(run), _stable_hash(observation), round_index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
