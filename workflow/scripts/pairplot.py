"""Rule pairplot: every round's samples of one (run, observation) in one corner plot."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np

    from seqsbi.artifacts import read_npz
    from seqsbi.plots import pairplot
    from seqsbi.priors import ParameterSpace

    space = ParameterSpace.from_config(snakemake.params.run["prior"])
    rounds = [read_npz(path)["samples"] for path in snakemake.input.samples]
    from seqsbi.observations import observation_from_params

    truth = observation_from_params(snakemake.params.observation, snakemake.input.get("features")).theta_true
    reference = None
    if "reference" in snakemake.input.keys():
        from seqsbi.diagnostics import check_reference

        names = [str(name) for name in read_npz(snakemake.input.samples[0])["parameter_names"]]
        reference = check_reference(read_npz(snakemake.input.reference), names, snakemake.input.reference)
    pairplot(
        rounds,
        labels=space.labels(),
        limits=np.stack([space.low, space.high], axis=1),
        path=snakemake.output[0],
        theta_true=truth,
        title=f"{snakemake.wildcards.run} | {snakemake.wildcards.obs} | {len(rounds)} round(s)",
        reference=reference,
        reference_label=f"reference ({snakemake.params.run.get('reference')})",
    )
    logger.info("pair plot of %d round(s) written to %s", len(rounds), snakemake.output[0])
