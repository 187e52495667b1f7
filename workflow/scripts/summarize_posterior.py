"""Rule summarize_posterior: table of the final round's posterior per parameter."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:

    import json

    from seqsbi.artifacts import read_npz, write_text
    from seqsbi.plots import posterior_summary

    final = read_npz(snakemake.input.samples)
    from seqsbi.observations import observation_from_params

    truth = observation_from_params(snakemake.params.observation, snakemake.input.get("features")).theta_true
    table = posterior_summary(
        final["samples"], final["parameter_names"].tolist(), final["parameter_units"].tolist(),
        truth, json.loads(Path(snakemake.input.round_summary).read_text()).get("observation_coverage"),
    )
    write_text(snakemake.output[0], table)
    logger.info("summary of %d samples written to %s", len(final["samples"]), snakemake.output[0])
