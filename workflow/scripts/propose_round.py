"""Rule propose_round: draw a scattered round's theta from its proposal (logic in seqsbi.rounds)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import time

    import torch

    from seqsbi import artifacts
    from seqsbi.config import check_device, run_settings
    from seqsbi.rounds import propose, read_previous_round

    torch.set_num_threads(snakemake.threads)
    settings = run_settings(snakemake.wildcards.run, snakemake.params.run, [])
    check_device(settings)  # before any work: a job may run on another machine than the Snakefile
    round_index = int(snakemake.wildcards.round)
    previous = None
    if round_index > 0:
        previous = read_previous_round(snakemake.input.inference, snakemake.input.posterior, settings,
                                       snakemake.input.samples)
    start = time.perf_counter()
    theta = propose(settings, snakemake.wildcards.obs, round_index, previous)
    artifacts.write_npz(snakemake.output.proposal, theta=theta)
    logger.info("proposed %d parameter vectors for the chunk jobs in %.1f s", theta.shape[0],
                time.perf_counter() - start)
