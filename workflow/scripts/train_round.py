"""Rule train_round: one round of one run at one observation (logic in seqsbi.rounds)."""

import os
import sys
from pathlib import Path

# One BLAS/OpenMP thread per job unless the rule is given more: two threads ran sbi 2.5-10x slower here.
os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    logger.info("importing torch and sbi")
    import torch

    from seqsbi.config import check_device, run_settings
    from seqsbi.observations import observation_from_params
    from seqsbi.rounds import gather_chunks, read_previous_round, train_round, write_round

    torch.set_num_threads(snakemake.threads)
    settings = run_settings(snakemake.wildcards.run, snakemake.params.run, [])
    check_device(settings)  # before any work: a job may run on another machine than the Snakefile
    observation = observation_from_params(snakemake.params.observation, snakemake.input.get("features"))
    for line in settings.prior.describe():
        logger.info(line)
    round_index = int(snakemake.wildcards.round)
    chunked = "chunks" in snakemake.input.keys()
    previous = None
    if round_index > 0:
        # Chunk jobs already proposed (from round k-1's samples): this job needs no samples then.
        previous = read_previous_round(snakemake.input.inference, snakemake.input.posterior, settings,
                                       None if chunked else snakemake.input.samples)
        if "round0_simulations" in snakemake.input.keys():  # round 0 was an amortized estimator's: no network yet
            from seqsbi import artifacts
            from seqsbi.refine import round_zero_trainer
            from seqsbi.seeds import round_seed

            round0 = artifacts.read_npz(snakemake.input.round0_simulations, required=("theta", "x"))
            seed = round_seed(settings.seed, settings.name, observation.name, 0)
            previous.inference = round_zero_trainer(settings, round0["theta"], round0["x"], seed)
    logger.info("run %s, observation %s, round %d (engine %s, %d torch thread(s))", settings.name,
                observation.name, round_index, settings.engine, torch.get_num_threads())
    simulations = None
    if chunked:
        simulations = gather_chunks(snakemake.input.proposal, list(snakemake.input.chunks))
        logger.info("gathered %d simulations from %d chunk job(s)", simulations.theta.shape[0],
                    len(snakemake.input.chunks))
    if round_index == 0 and "training_set" in snakemake.input.keys():  # runs.<run>.round0_amortized
        from seqsbi import artifacts, engines
        from seqsbi.refine import amortized_round_zero

        training = artifacts.read_npz(snakemake.input.training_set, required=("theta", "flux"))
        n = settings.simulations_per_round
        logger.info("round 0 from amortized estimator %s: %d of its training rows, no simulations",
                    snakemake.params.run["round0_amortized"], n)
        result = amortized_round_zero(settings, observation, engines.load(snakemake.input.posterior),
                                      training["theta"][:n], training["flux"][:n])
    else:
        result = train_round(settings, observation, round_index, previous, simulations)
    write_round(result, settings, dict(snakemake.output.items()))
    logger.info("round %d done: %s", round_index, result.summary["timings"])
