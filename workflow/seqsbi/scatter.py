"""A round's simulations in fixed-size blocks, so they can be scattered over chunk jobs.

Block b holds simulations [b * block_size, (b + 1) * block_size) of the round and is simulated by
one simulator call with its own seed (:func:`seqsbi.seeds.block_seed`). A chunk is a run of whole
blocks. The gathered set is therefore bit-identical for any number of chunks: every block is the same
computation on the same rows with the same seed, whichever job runs it. numpy only (no torch): chunk
jobs start fast.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from seqsbi.logs import progress_bars
from seqsbi.seeds import block_seed
from seqsbi.simulators import Simulator

logger = logging.getLogger("seqsbi.scatter")


def block_count(n_simulations: int, block_size: int) -> int:
    """Number of blocks for ``n_simulations`` (the last one may be short)."""
    return -(-n_simulations // block_size)


def chunk_blocks(n_blocks: int, n_chunks: int, chunk: int) -> range:
    """Blocks of chunk ``chunk`` (0-based) when ``n_blocks`` are split into ``n_chunks`` near-equal runs."""
    if not 1 <= n_chunks <= n_blocks:
        raise ValueError(f"cannot split {n_blocks} simulation block(s) into {n_chunks} chunks")
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} is outside 0..{n_chunks - 1}")
    base, extra = divmod(n_blocks, n_chunks)
    start = chunk * base + min(chunk, extra)
    return range(start, start + base + (chunk < extra))


def chunk_rows(n_simulations: int, block_size: int, n_chunks: int, chunk: int) -> slice:
    """Rows of the round's theta that chunk ``chunk`` simulates."""
    blocks = chunk_blocks(block_count(n_simulations, block_size), n_chunks, chunk)
    return slice(blocks.start * block_size, min(blocks.stop * block_size, n_simulations))


def simulate_blocks(simulator: Simulator, theta: np.ndarray, first_row: int, block_size: int,
                    round_seed_value: int) -> np.ndarray:
    """x (n, k) for rows ``first_row .. first_row + n`` of a round's theta (n, d).

    ``first_row`` must start a block; each block is simulated with its own generator. On a terminal a
    tqdm bar counts the simulations block by block; a job's log gets the one timing line at the end.
    """
    from tqdm.auto import tqdm

    if first_row % block_size:
        raise ValueError(f"row {first_row} does not start a block of {block_size} simulations")
    outputs = []
    start = time.perf_counter()
    with tqdm(total=theta.shape[0], desc="simulating", unit="sim", disable=not progress_bars()) as bar:
        for offset in range(0, theta.shape[0], block_size):
            block = (first_row + offset) // block_size
            rng = np.random.default_rng(block_seed(round_seed_value, block))
            outputs.append(simulator(theta[offset:offset + block_size], rng))
            bar.update(len(outputs[-1]))
    x = np.concatenate(outputs, axis=0) if outputs else np.empty((0, 0))
    logger.info("simulated %d parameter vectors in %d block(s) of <= %d in %.1f s", theta.shape[0], len(outputs),
                block_size, time.perf_counter() - start)
    return x
