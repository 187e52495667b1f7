"""Rule catalogue_summary: gather a catalogue's chunks into the samples HDF5 and the summary tables."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np
    from astropy.table import vstack

    from seqsbi import artifacts
    from seqsbi.amortized import DEPTH_OFFSET_WARN_MAG, DEPTH_OFFSET_WARN_SHARE
    from seqsbi.catalogue_table import MISSING_BANDS_METHOD, summary_table, write_samples_in_parts, write_table

    held_out = artifacts.read_npz(snakemake.input.held_out, required=("parameter_names", "parameter_units"))
    names = tuple(held_out["parameter_names"].tolist())
    units = tuple(held_out["parameter_units"].tolist())
    method = json.loads(Path(snakemake.input.summary).read_text())["method"]
    tables, totals = [], {"sample_s": 0.0}

    def parts():
        """One chunk file in memory at a time: its samples go to the HDF5, its summary rows to the tables."""
        for path in snakemake.input.chunks:
            chunk = artifacts.read_npz(path, required=("rows", "ids", "x", "samples", "flags"))
            columns = {key[len("column_"):]: chunk[key] for key in chunk if key.startswith("column_")}
            tables.append(summary_table(chunk["ids"], chunk["samples"], names, units, method, columns, chunk["flags"]))
            totals["sample_s"] += float(chunk["sample_s"])
            yield chunk["ids"], chunk["samples"], chunk["x"]

    write_samples_in_parts(snakemake.output.samples, parts(), names, units, method)
    table = vstack(tables, metadata_conflicts="silent")
    missing = np.asarray(table["flag_missing_bands"])
    if missing.any():  # no amortized posterior: bands missing that the estimator cannot take
        method_column = np.asarray(table["method"]).astype(object)
        method_column[missing] = MISSING_BANDS_METHOD
        table["method"] = method_column.astype(str)
    write_table(table, snakemake.output.fits)
    write_table(table, snakemake.output.csv)
    flags = np.asarray(table["flags"])
    logger.info("%d galaxies, %d samples each, from %d chunk(s); sampling %.1f galaxies/s; flagged: %d (%s)",
                len(table), snakemake.params.samples, len(tables), len(table) / max(totals["sample_s"], 1e-9),
                int((flags != "").sum()), {column[len("flag_"):]: int(np.sum(table[column]))
                                           for column in table.colnames if column.startswith("flag_")})
    off = np.mean(np.abs(np.nan_to_num(np.asarray(table["noise_depth_offset"], dtype=float))) > DEPTH_OFFSET_WARN_MAG)
    if off > DEPTH_OFFSET_WARN_SHARE:
        logger.warning("%.0f%% of the galaxies are measured over %.1f mag off the estimator's training depth (or "
                       "outside its training_depth_range_ab; noise_depth_offset): their posteriors and ood/fit "
                       "p-values are miscalibrated; the catalogue_chunk logs give the depth range to train over",
                       100 * off, DEPTH_OFFSET_WARN_MAG)
