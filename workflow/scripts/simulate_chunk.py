"""Rule simulate_chunk: simulate one chunk (whole seeded blocks) of a scattered round; numpy only."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi import artifacts
    from seqsbi.config import run_settings
    from seqsbi.rounds import simulate_chunk, write_chunk

    settings = run_settings(snakemake.wildcards.run, snakemake.params.run, [])
    theta = artifacts.read_npz(snakemake.input.proposal)["theta"]
    chunk, n_chunks = int(snakemake.wildcards.chunk), int(snakemake.params.chunks)
    start = time.perf_counter()
    rows, x = simulate_chunk(settings, snakemake.wildcards.obs, int(snakemake.wildcards.round), theta, chunk, n_chunks)
    write_chunk(snakemake.output.chunk, rows, x, time.perf_counter() - start)
    logger.info("chunk %d of %d: rows %d..%d simulated", chunk, n_chunks, rows.start, rows.stop)
