"""Rule c2st_table: gather every fit's C2ST row into c2st.csv."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[2] / "workflow"))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import benchmark

    rows = [json.loads(Path(path).read_text()) for path in snakemake.input]
    benchmark.write_table(rows, snakemake.output.table)
    logger.info("wrote %d rows", len(rows))
