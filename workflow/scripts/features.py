"""Rule features: the library's fluxes as features (with the configured noise), ranges logged."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np

    from seqsbi import artifacts
    from seqsbi.simulators.galaxy import config as galaxy_config
    from seqsbi.simulators.galaxy.features import FEATURE_UNITS, describe_ranges, simulate_features_chunked
    from seqsbi.simulators.galaxy.library import read_library
    from seqsbi.simulators.galaxy.photometry import flux_scale

    galaxy = snakemake.params.galaxy
    library = read_library(snakemake.input.library)
    kind = galaxy["features"]["kind"]
    rng = np.random.default_rng([galaxy["library"]["seed"], 1])  # features' own stream
    x = simulate_features_chunked(library.photometry_njy, kind, galaxy_config.noise_model(galaxy), rng,
                                  flux_scale(galaxy))
    logger.info("%d features over %d samples (%s)", x.shape[1], x.shape[0], FEATURE_UNITS[kind])
    for line in describe_ranges(x, library.filter_codes, kind):
        logger.info(line)
    artifacts.write_npz(snakemake.output[0], x=x, theta=library.theta, filter_codes=np.array(library.filter_codes),
                        parameter_names=np.array(library.parameter_names), units=np.array(FEATURE_UNITS[kind]))
