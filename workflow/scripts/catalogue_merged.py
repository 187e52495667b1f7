"""Rule catalogue_merged: a refined catalogue's samples and summary table, each flagged galaxy's refined
posterior in place of its amortized one, with which galaxies were refined and why (seqsbi.refine)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi import refine

    merged = refine.merge_refinements(snakemake.input.table, snakemake.input.samples, list(snakemake.input.batches),
                                      snakemake.params.block, snakemake.wildcards.catalogue,
                                      dict(snakemake.output.items()))
    logger.info("%d galaxies: %d refined, %d flagged but not refined (refine.max_galaxies)", merged["galaxies"],
                merged["refined"], merged["not_refined"])
