"""Galaxy simulator speed: synthesizer's one-galaxy loop (reference) vs the batched backend.

One process, the same prior draws (the synference seed's prior, 8 NIRCam wide bands, the BC03 grid
built by the workflow at results/galaxy/grids/bc03_miles_kroupa.hdf5 — build it first with
`snakemake --cores 1 results/galaxy/grids/bc03_miles_kroupa.hdf5`). The reference simulates 500
galaxies, the batched backend 10,000 (after a warm-up call that builds its redshift tables).
Prints, last: speedup=<batched gal/s / reference gal/s> batched_gal_per_s=.. max_dmag=.. peak_mem_mb=..
(max_dmag over bands where the reference is brighter than 35 AB; peak_mem_mb: traced Python
allocations of the 10,000-galaxy batched call). With --million it also times 10^6 galaxies.
Usage: .venv/bin/python benchmarks/simulator.py [--million]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from seqsbi.simulators.galaxy import filters  # noqa: E402
from seqsbi.simulators.galaxy.batched import BatchedGalaxySimulator  # noqa: E402
from seqsbi.simulators.galaxy.library import ab_magnitudes  # noqa: E402
from seqsbi.simulators.galaxy.model import PARAMETERS, GalaxyModelSpec, ReferenceGalaxySimulator  # noqa: E402

PRIOR = {"redshift": (0.0, 5.0), "log_mass": (8, 12), "tau_v": (0.01, 3), "tau": (0.1, 2),
         "peak_age": (10, 1000), "log10metallicity": (-4, -1.4)}


def draws(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(*PRIOR[name], size=n) for name in PARAMETERS])


def main() -> None:
    grid_dir = ROOT / "results" / "galaxy" / "grids"
    if not (grid_dir / "bc03_miles_kroupa.hdf5").exists():
        sys.exit("build the grid first: snakemake --cores 1 results/galaxy/grids/bc03_miles_kroupa.hdf5")
    with tempfile.TemporaryDirectory() as cache:
        for code in filters.NIRCAM_WIDE:
            filters.write_svo_cache_file(code, cache)
        spec = GalaxyModelSpec(grid_name="bc03_miles_kroupa", grid_dir=str(grid_dir), filters=filters.NIRCAM_WIDE)
        reference, batched = ReferenceGalaxySimulator(spec, cache), BatchedGalaxySimulator(spec, cache)
        theta = draws(10_000)
        start = time.perf_counter()
        m_reference = ab_magnitudes(reference(theta[:500]))
        reference_rate = 500 / (time.perf_counter() - start)
        batched(theta[:10])  # builds the redshift tables once, as every job does before its first batch
        tracemalloc.start()
        start = time.perf_counter()
        flux = batched(theta)
        batched_rate = len(theta) / (time.perf_counter() - start)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        m_batched = ab_magnitudes(flux[:500])
        bright = m_reference < 35
        max_dmag = float(np.max(np.abs(m_batched - m_reference)[bright]))
        print(f"reference_gal_per_s={reference_rate:.1f} (500 galaxies)")
        if "--million" in sys.argv:
            tracemalloc.start()
            start = time.perf_counter()
            batched(draws(1_000_000, seed=1))
            print(f"million_s={time.perf_counter() - start:.0f} "
                  f"million_peak_mem_mb={tracemalloc.get_traced_memory()[1] / 2**20:.0f}")
            tracemalloc.stop()
        print(f"speedup={batched_rate / reference_rate:.0f} batched_gal_per_s={batched_rate:.0f} "
              f"max_dmag={max_dmag:.1e} peak_mem_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
