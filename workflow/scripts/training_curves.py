"""Rule training_curves: every round's training and validation loss on one plot, and a warning table."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi import diagnostics
    from seqsbi.artifacts import write_text
    from seqsbi.plots import training_curves_plot

    max_epochs = snakemake.params.run["training"].get("max_num_epochs", 2**31 - 1)
    logs = [diagnostics.read_training_log(path) for path in snakemake.input.logs]
    verdicts = [diagnostics.training_verdict(log["validation_loss"], max_epochs) for log in logs]
    write_text(snakemake.output.table, diagnostics.training_table(verdicts, max_epochs))
    title = f"{snakemake.wildcards.run} | {snakemake.wildcards.obs}"
    training_curves_plot(logs, verdicts, snakemake.output.plot, title)
    for k, verdict in enumerate(verdicts):
        if verdict["warning"]:
            logger.warning("round %d stopped at max_num_epochs = %d with the validation loss still falling (best at "
                           "epoch %d of %d): raise runs.%s.training.max_num_epochs", k, max_epochs,
                           verdict["best_epoch"], verdict["epochs"], snakemake.wildcards.run)
    logger.info("training curves of %d round(s) written to %s", len(logs), snakemake.output.plot)
