"""Rule c2st_plot: C2ST vs simulations per task, with the published values."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[2] / "workflow"))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]):
    import benchmark

    benchmark.plot_c2st(snakemake.input.table, snakemake.output.figure)
