"""Rule catalogue_summary: gather a catalogue's chunks into the samples HDF5 and the summary tables."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from seqsbi.logs import log_to_file  # noqa: E402

with log_to_file(snakemake.log[0]) as logger:
    import numpy as np

    from seqsbi import artifacts
    from seqsbi.catalogue_table import summary_table, write_samples, write_table

    chunks = [artifacts.read_npz(path, required=("rows", "ids", "samples", "flags")) for path in snakemake.input.chunks]
    held_out = artifacts.read_npz(snakemake.input.held_out, required=("parameter_names", "parameter_units"))
    names = tuple(held_out["parameter_names"].tolist())
    units = tuple(held_out["parameter_units"].tolist())
    method = json.loads(Path(snakemake.input.summary).read_text())["method"]
    ids = np.concatenate([chunk["ids"] for chunk in chunks])
    samples = np.concatenate([chunk["samples"] for chunk in chunks])
    columns = {key[len("column_"):]: np.concatenate([chunk[key] for chunk in chunks])
               for key in chunks[0] if key.startswith("column_")}
    flags = np.concatenate([chunk["flags"] for chunk in chunks])
    write_samples(snakemake.output.samples, ids, samples, names, units, method,
                  np.concatenate([chunk["x"] for chunk in chunks]))
    table = summary_table(ids, samples, names, units, method, columns, flags)
    write_table(table, snakemake.output.fits)
    write_table(table, snakemake.output.csv)
    seconds = sum(float(chunk["sample_s"]) for chunk in chunks)
    logger.info("%d galaxies, %d samples each, from %d chunk(s); sampling %.1f galaxies/s; flagged: %d (%s)",
                len(ids), samples.shape[1], len(chunks), len(ids) / max(seconds, 1e-9), int((flags != "").sum()),
                {name: int(columns[f"flag_{name}"].sum()) for name in ("ood", "prior_edge", "invalid_x")})
