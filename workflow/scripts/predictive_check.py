"""Rule predictive_check: simulate from the final round's posterior, compare with x_o (logic in seqsbi.diagnostics)."""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import time

    from seqsbi import censoring, diagnostics
    from seqsbi.artifacts import read_npz, write_text
    from seqsbi.config import run_settings
    from seqsbi.observations import observation_from_params
    from seqsbi.plots import predictive_plot
    from seqsbi.seeds import round_seed

    run = snakemake.params.run
    settings = run_settings(snakemake.wildcards.run, run, [])
    options = diagnostics.settings_of(run)
    observation = observation_from_params(snakemake.params.observation, snakemake.input.get("features"))
    samples = read_npz(snakemake.input.samples, required=("samples",))["samples"]
    simulator_settings = settings.simulator_settings
    names, unit = None, ""
    if settings.simulator_name == "galaxy":
        from seqsbi.simulators.galaxy.features import FEATURE_UNITS

        names = [code.rsplit(".", 1)[-1] for code in simulator_settings["filters"]]
        if simulator_settings.get("bands") is not None:  # this observation's bands only (missing ones dropped)
            names = [names[band] for band in simulator_settings["bands"]]
        unit = FEATURE_UNITS[simulator_settings.get("features", "ab_magnitude")]
    # A band fainter than its floor at the floor, as the run's network took it (training.dequantize_censored)
    x_o = censoring.as_simulated(settings, observation.x_o)
    errors = diagnostics.observation_errors(settings.simulator_name, simulator_settings, x_o)
    # A seed of its own: a round index no run reaches.
    seed = round_seed(settings.seed, settings.name, observation.name, 1_000_000)
    start = time.perf_counter()
    check = diagnostics.predictive_check(settings.simulator(), samples, x_o,
                                         options["predictive_samples"], seed, errors, names)
    logger.info("simulated %d posterior predictive draws in %.1f s", len(check.predictive) + check.invalid,
                time.perf_counter() - start)
    write_text(snakemake.output.table, diagnostics.predictive_table(check, unit))
    predictive_plot(check, snakemake.output.plot, unit,
                    f"{snakemake.wildcards.run} | {snakemake.wildcards.obs} | final round")
    logger.info("posterior predictive p-value %.3f (chi^2 discrepancy %.3g); largest |z| %.2f", check.p_value,
                check.discrepancy, abs(check.z).max())
    if check.p_value < 0.05:
        logger.warning("the final posterior does not reproduce x_o: predictive p-value %.3f < 0.05", check.p_value)
