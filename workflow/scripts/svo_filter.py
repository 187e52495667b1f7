"""Rule svo_filter: one synthesizer SVO-cache file (offline) from the filter's curve file, top-hat or
astro-sedpy curve."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi.simulators.galaxy.filters import write_svo_cache_file

    source = snakemake.params.source
    code = source["code"]
    tophat = {code: source["tophat"]} if "tophat" in source else None
    filter_files = {code: source["filter_file"]} if "filter_file" in source else None
    path = write_svo_cache_file(code, Path(snakemake.output[0]).parent, tophat=tophat, filter_files=filter_files)
    logger.info("filter %s written to %s", code, path)
