"""Rule refine_batch: sequential rounds for one batch of a catalogue's flagged galaxies, round 0 being the
amortized estimator and its training set (logic in seqsbi.refine)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    logger.info("importing torch and sbi")
    import json

    import h5py
    import numpy as np
    import torch

    from seqsbi import artifacts, engines, refine
    from seqsbi.amortized import complete_block, estimator_x, settings_for
    from seqsbi.catalogue_table import catalogue_features, read_catalogue
    from seqsbi.config import check_device

    torch.set_num_threads(snakemake.threads)
    name, batch = snakemake.wildcards.catalogue, int(snakemake.wildcards.batch)
    block, galaxy = snakemake.params.block, snakemake.params.galaxy
    estimator_block = complete_block(block["estimator"], snakemake.params.estimator_block)
    settings = refine.refinement_settings(name, block, estimator_block, galaxy)
    estimator = settings_for(block["estimator"], estimator_block, galaxy)
    warm = refine.warm_start(name, block, settings)
    check_device(settings)  # before any work: a job may run on another machine than the Snakefile
    rows, _ = refine.selection(refine.read_flags(snakemake.input.table), block["refine"])
    rows = refine.batches(rows, block["refine"]["galaxies_per_job"])[batch]
    catalogue = read_catalogue(snakemake.input.catalogue, galaxy["filters"], block["id_column"],
                               key=f"catalogues.{name}.path", missing_value=galaxy.get("missing_value"))
    x = catalogue_features(catalogue, galaxy)
    amortized_x = estimator_x(estimator, x, catalogue.error_njy)  # what the estimator conditions on
    training = artifacts.read_npz(snakemake.input.training_set, required=("theta", "flux"))
    n = settings.simulations_per_round
    theta0, flux0 = training["theta"][:n], training["flux"][:n]
    posterior = engines.load(snakemake.input.posterior)
    with h5py.File(snakemake.input.samples) as hf:  # rows ascend (table order), as h5py needs
        amortized_samples = hf["samples"][rows]
        ids = np.array([value.decode() for value in hf["ids"][rows]], dtype=str)
    if not np.array_equal(ids, catalogue.ids[rows]):
        raise ValueError(f"{snakemake.input.samples!r} rows {rows.tolist()} hold ids {ids.tolist()}, the catalogue "
                         f"{catalogue.ids[rows].tolist()}; the catalogue changed since it was sampled: rerun")
    logger.info("refining %d galaxies (batch %d): %s, %d rounds of %d simulations after the amortized round 0%s",
                len(rows), batch, settings.engine, settings.rounds - 1, n,
                ", continuing its network (galaxies with missing bands: their own)" if warm else ", a new network")
    results = []
    for i, row in enumerate(rows):
        logger.info("galaxy %d of %d: %s", i + 1, len(rows), catalogue.ids[row])
        results.append(refine.refine_galaxy(settings, str(catalogue.ids[row]), x[row], catalogue.error_njy[row],
                                            posterior, amortized_samples[i], theta0, flux0, warm,
                                            amortized_x[row]))
        logger.info("galaxy %s refined in %.1f s", catalogue.ids[row], results[-1].seconds)
    artifacts.write_npz(snakemake.output.batch, rows=np.asarray(rows, dtype=int), ids=catalogue.ids[rows],
                        samples=np.array([r.samples for r in results], dtype=np.float32).reshape(
                            len(rows), block["posterior_samples"], settings.prior.dim),
                        seconds=np.array([r.seconds for r in results]), method=np.array([r.method for r in results]),
                        rounds=np.array(json.dumps([r.rounds for r in results])))
    logger.info("done: %d galaxies in %.1f s", len(rows), sum(r.seconds for r in results))
