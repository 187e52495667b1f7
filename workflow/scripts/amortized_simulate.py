"""Rule amortized_simulate: one chunk (whole seeded blocks) of an amortized estimator's training set; numpy only."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np

    from seqsbi import artifacts, scatter
    from seqsbi.amortized import complete_block, settings_for, simulate_training_blocks

    name, chunk, n_chunks = snakemake.wildcards.estimator, int(snakemake.wildcards.chunk), int(snakemake.params.chunks)
    block = {**complete_block(name, snakemake.params.block), "simulation_chunks": n_chunks}
    settings = settings_for(name, block, snakemake.params.galaxy)
    rows = scatter.chunk_rows(settings.simulations_per_round, settings.simulation_block_size, n_chunks, chunk)
    theta, x, flux = simulate_training_blocks(settings, rows)
    artifacts.write_npz(snakemake.output.chunk, rows=np.array([rows.start, rows.stop]), theta=theta, x=x,
                        **({} if flux is None else {"flux": flux}))
    logger.info("chunk %d of %d: training rows %d..%d simulated", chunk, n_chunks, rows.start, rows.stop)
