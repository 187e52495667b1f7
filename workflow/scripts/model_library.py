"""Rule model_library: draw parameters from the library prior, simulate them with synthesizer."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np

    from seqsbi.simulators.galaxy import config as galaxy_config
    from seqsbi.simulators.galaxy.library import write_library
    from seqsbi.simulators.galaxy.model import build_simulator

    galaxy = snakemake.params.galaxy
    settings = galaxy["library"]
    space = galaxy_config.library_prior(galaxy)
    for name, unit, low, high in zip(space.names, space.units, space.low, space.high):
        logger.info("prior %s: %g to %g %s", name, low, high, unit)
    theta = galaxy_config.draw_parameters(space, settings["n_galaxies"], settings["sampling"], settings["seed"])
    spec = galaxy_config.model_spec(galaxy)
    simulator = build_simulator(spec, galaxy_config.SVO_FILTER_CACHE, galaxy["backend"])
    logger.info("%s backend", galaxy["backend"])
    start, photometry = time.perf_counter(), []
    step = max(1, len(theta) // 10)
    for i in range(0, len(theta), step):
        photometry.append(simulator(theta[i:i + step]))
        done = min(i + step, len(theta))
        rate = done / (time.perf_counter() - start)
        logger.info("simulated %d / %d galaxies (%.1f galaxies/s)", done, len(theta), rate)
    write_library(snakemake.output[0], settings["name"], theta, np.concatenate(photometry), spec, simulator.filters)
    logger.info("library %s: %d galaxies x %d filters (nJy)", snakemake.output[0], len(theta), len(spec.filters))
