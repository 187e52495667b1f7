"""Seeds derived from (base seed, run, observation, round[, block]): reruns reproduce, rounds differ."""

from __future__ import annotations

import zlib

import numpy as np

#: spawn-key tag of the seed that trains a round (blocks use their index, 0, 1, ...).
_TRAINING_KEY = 2**31 - 1


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; crc32 is the same everywhere.
    return zlib.crc32(text.encode("utf-8"))


def _as_seed(sequence: np.random.SeedSequence) -> int:
    # 63 bits: fits torch.manual_seed and numpy Generators.
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def round_seed(seed: int, run: str, observation: str, round_index: int) -> int:
    """The seed of one round: it draws the round's parameters from the proposal."""
    return _as_seed(np.random.SeedSequence([seed, _stable_hash(run), _stable_hash(observation), round_index]))


def block_seed(round_seed_value: int, block: int) -> int:
    """The seed of simulation block ``block`` of a round (its noise): the same whichever job runs it."""
    return _as_seed(np.random.SeedSequence(round_seed_value, spawn_key=(block,)))


def training_seed(round_seed_value: int) -> int:
    """The seed torch is reset to before a round trains, so training does not depend on whether the
    round simulated in its own job or gathered chunk jobs' simulations."""
    return _as_seed(np.random.SeedSequence(round_seed_value, spawn_key=(_TRAINING_KEY,)))


def dequantization_seed(round_seed_value: int) -> int:
    """The seed of a round's dequantization of censored features (:mod:`seqsbi.censoring`)."""
    return _as_seed(np.random.SeedSequence(round_seed_value, spawn_key=(_TRAINING_KEY, 1)))


def reference_seed(seed: int, run: str, observation: str) -> int:
    """The seed of a reference run's nested sampler and resampling at one observation."""
    return _as_seed(np.random.SeedSequence([seed, _stable_hash(run), _stable_hash(observation), _TRAINING_KEY]))
