"""Rule reference_fit: the exact-likelihood posterior of one reference run at one observation (seqsbi.reference)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi.config import run_settings
    from seqsbi.observations import observation_from_params
    from seqsbi.reference import reference_posterior, write_reference
    from seqsbi.seeds import reference_seed

    settings = run_settings(snakemake.wildcards.run, snakemake.params.run, [])
    observation = observation_from_params(snakemake.params.observation, snakemake.input.get("features"))
    seed = reference_seed(settings.seed, settings.name, observation.name)
    logger.info("reference run %s, observation %s: simulator %s, nautilus %s, seed %d", settings.name,
                observation.name, settings.simulator_name, settings.nested_sampling, seed)
    result = reference_posterior(settings, observation.x_o, seed)
    write_reference(result, settings, snakemake.output.samples, snakemake.output.report)
    logger.info("reference done: %s", result.report["diagnostics"])
