"""Rule sps_grid: a synthesizer grid from full-resolution BC03, resampled flux-conservingly."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    from seqsbi.simulators.galaxy import sps_grid

    settings = snakemake.params.settings
    n, low, high = settings["n_wavelengths"], settings["min_wavelength_angstrom"], settings["max_wavelength_angstrom"]
    full = sps_grid.read_bc03(snakemake.input.bc03)
    logger.info("BC03: %d ages, %d metallicities, %d wavelengths", *full.llam_lsun_per_angstrom.shape)
    grid = sps_grid.resample_grid(full, sps_grid.log_wavelength_grid(low, high, n))
    sps_grid.write_synthesizer_grid(grid, snakemake.output[0],
                                    sps_grid.bc03_provenance(snakemake.input.bc03, n, low, high))
    logger.info("grid %s: %d wavelengths %g-%g Angstrom", snakemake.output[0], n, low, high)
