"""Rule svo_filter: one synthesizer SVO-cache file from astro-sedpy's curve (offline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi.simulators.galaxy.filters import write_svo_cache_file

    w = snakemake.wildcards
    code = f"{w.facility}/{w.instrument}.{w.band}"
    path = write_svo_cache_file(code, Path(snakemake.output[0]).parent, tophat=snakemake.params.tophat)
    logger.info("filter %s written to %s", code, path)
