"""Rule catalogue_chunk: batched posterior samples and trust flags for one chunk of a catalogue's rows."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import time

    import numpy as np
    import torch

    from seqsbi import artifacts, engines
    from seqsbi.amortized import (
        advise_band_masks,
        catalogue_posteriors,
        complete_block,
        estimator_x,
        galaxy_depth_offset,
        galaxy_model_fit,
        galaxy_predictive_simulator,
        read_held_out,
        settings_for,
    )
    from seqsbi.catalogue_config import chunk_count, sampling_rows
    from seqsbi.catalogue_table import catalogue_features, read_catalogue
    from seqsbi.seeds import round_seed

    torch.set_num_threads(snakemake.threads)
    block, galaxy = snakemake.params.block, snakemake.params.galaxy
    catalogue = read_catalogue(snakemake.input.catalogue, galaxy["filters"], block["id_column"],
                               key=f"catalogues.{snakemake.wildcards.catalogue}.path",
                               missing_value=galaxy.get("missing_value"))
    chunk = int(snakemake.wildcards.chunk)
    rows = sampling_rows(len(catalogue.ids), block, chunk)
    x = catalogue_features(catalogue, galaxy)[rows]
    estimator = engines.load(snakemake.input.estimator)
    held_out, ood, prior = read_held_out(snakemake.input.held_out)
    settings = settings_for(block["estimator"], complete_block(block["estimator"], snakemake.params.estimator_block),
                            galaxy)
    inputs = estimator_x(settings, x, catalogue.error_njy[rows])  # x, and each band's depth with depth inputs
    predictive = galaxy_predictive_simulator(settings, catalogue.error_njy[rows])
    seed = round_seed(block["seed"], snakemake.wildcards.catalogue, "catalogue", 0)
    training = artifacts.read_npz(snakemake.input.training_set, required=("theta", "flux"))
    model_fit = galaxy_model_fit(settings, training, held_out["theta"], block["flags"]["fit_error_floor"], seed,
                                 catalogue.flux_njy[rows], catalogue.error_njy[rows])
    start = time.perf_counter()
    result = catalogue_posteriors(estimator, ood, inputs, prior, block["posterior_samples"], seed, block["flags"],
                                  block["sampling_block_size"], rows.start // block["sampling_block_size"],
                                  predictive=predictive, missing=np.isnan(catalogue.flux_njy[rows]),
                                  model_fit=model_fit, ppc_x=x)
    seconds = time.perf_counter() - start
    result.columns["noise_depth_offset"] = galaxy_depth_offset(settings, catalogue.error_njy[rows])
    advise_band_masks(settings, np.isnan(catalogue.flux_njy[rows]), np.isfinite(inputs).all(axis=1))
    ppc_s = result.seconds.get("ppc", 0.0)
    artifacts.write_npz(snakemake.output.chunk, rows=np.array([rows.start, rows.stop]), ids=catalogue.ids[rows],
                        x=x, samples=result.samples, flags=result.flags, sample_s=np.array(seconds),
                        ppc_s=np.array(ppc_s), **{f"column_{name}": values for name, values in result.columns.items()})
    logger.info("chunk %d of %d: rows %d..%d, %d samples each, %.1f galaxies/s (samples and flags); posterior "
                "predictive check %.1f s (%.2f ms a galaxy, %d draws); flagged: %d", chunk,
                chunk_count(len(catalogue.ids), block), rows.start, rows.stop, block["posterior_samples"],
                len(x) / max(seconds, 1e-9), ppc_s, 1e3 * ppc_s / max(len(x), 1), block["flags"]["ppc_draws"],
                int((result.flags != "").sum()))
