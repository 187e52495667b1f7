"""Rule c2st: score one fit's final posterior samples against sbibm's reference samples."""

import json
import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
sys.path.insert(0, str(Path(snakemake.scriptdir).parents[2] / "workflow"))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import benchmark

    from seqsbi.artifacts import read_npz

    samples = read_npz(snakemake.input.samples)["samples"]
    summaries = [json.loads(Path(path).read_text()) for path in snakemake.input.summaries]
    row = benchmark.c2st_row(snakemake.params.fit, snakemake.params.number, snakemake.params.seed,
                             samples[: snakemake.params.max_samples], summaries)
    benchmark.write_json(snakemake.output[0], row)
    logger.info("%s", row)
