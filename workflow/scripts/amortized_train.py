"""Rule amortized_train: gather the training set (chunk files or library features), train the amortized NPE,
test it on the held-out split and write its files (logic in seqsbi.amortized)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    logger.info("importing torch and sbi")
    import numpy as np
    import torch

    from seqsbi import artifacts
    from seqsbi.amortized import complete_block, settings_for, train_amortized, write_amortized
    from seqsbi.config import check_device
    from seqsbi.simulators.galaxy.library import read_library

    torch.set_num_threads(snakemake.threads)
    block = complete_block(snakemake.wildcards.estimator, snakemake.params.block)  # simulation_chunks: 1
    settings = settings_for(snakemake.wildcards.estimator, block, snakemake.params.galaxy)
    check_device(settings)
    if "features" in snakemake.input.keys():
        features = artifacts.read_npz(snakemake.input.features, required=("theta", "x"))
        theta, x = features["theta"], features["x"]
        flux = read_library(snakemake.input.library).photometry_njy  # the library's rows, in the features' order
        logger.info("training set: %d library rows (%s)", len(theta), snakemake.input.features)
    else:
        chunks = [artifacts.read_npz(path, required=("rows", "theta", "x")) for path in snakemake.input.chunks]
        starts = [int(chunk["rows"][0]) for chunk in chunks]
        if starts != sorted(starts) or sum(len(chunk["theta"]) for chunk in chunks) != settings.simulations_per_round:
            raise ValueError(f"chunk files {list(snakemake.input.chunks)} do not cover the training set's "
                             f"{settings.simulations_per_round} rows in order; rerun the amortized_simulate jobs")
        theta = np.concatenate([chunk["theta"] for chunk in chunks])
        x = np.concatenate([chunk["x"] for chunk in chunks])
        flux = np.concatenate([chunk["flux"] for chunk in chunks]) if all("flux" in c for c in chunks) else None
        logger.info("training set: %d simulations from %d chunk job(s)", len(theta), len(chunks))
    result = train_amortized(settings, theta, x, block["test_fraction"], block["ood_neighbours"])
    write_amortized(result, settings, dict(snakemake.output.items()), theta, flux)
    logger.info("done: %s", {key: result.summary[key] for key in ("epochs", "train_s", "held_out_mean_log_prob")})
