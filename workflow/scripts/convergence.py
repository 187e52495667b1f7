"""Rule convergence: per-round means, 68% widths and C2ST between rounds (and against a reference run)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import time

    from seqsbi import diagnostics
    from seqsbi.artifacts import read_npz, write_text
    from seqsbi.plots import convergence_plot

    options = diagnostics.settings_of(snakemake.params.run)
    rounds = [read_npz(path, required=("samples", "parameter_names")) for path in snakemake.input.samples]
    names = [str(name) for name in rounds[0]["parameter_names"]]
    reference = None
    if "reference" in snakemake.input.keys():
        path = snakemake.input.reference
        reference = diagnostics.check_reference(read_npz(path, required=("samples",)), names, path)
        logger.info("reference posterior: %d samples from %s", len(reference), path)
    start = time.perf_counter()
    rows = diagnostics.convergence_table([r["samples"] for r in rounds], names, options["c2st_samples"], 0, reference)
    logger.info("C2ST of %d round(s) (%d samples per side) in %.1f s", len(rows), options["c2st_samples"],
                time.perf_counter() - start)
    for row in rows:
        logger.info("round %d: C2ST vs previous round %s%s", row["round"], f"{row['c2st_previous_round']:.3f}",
                    f", vs reference {row['c2st_reference']:.3f}" if "c2st_reference" in row else "")
    write_text(snakemake.output.table, diagnostics.rows_to_csv(rows))
    convergence_plot(rows, names, snakemake.output.plot, options["moved_c2st"],
                     f"{snakemake.wildcards.run} | {snakemake.wildcards.obs}")
    moved = diagnostics.last_round_moved(rows, options["moved_c2st"])
    if moved:
        logger.warning("%s", moved)
    elif len(rows) > 1:
        logger.info("the last round settled: C2ST %.3f against the one before (moved_c2st %g)",
                    rows[-1]["c2st_previous_round"], options["moved_c2st"])
