"""Reading a 10^6-row library in synference's layout, and making its feature array, within one copy.

Fabricates a library as synference 0.1.4 writes one (h5py, no synference needed): ``Grid/Parameters``
(6, n) and ``Grid/Photometry`` (8, n, nJy) in float64 (or float32 with --float32: HDF5 converts while
reading), ``Grid/SupplementaryParameters`` (0, n), synference's root attributes and ``Model`` group
(cosmology as astropy YAML, LogNormal, DeltaConstant, AttenuatedEmission + PowerLaw, min_age = 0 yr).
Values are plausible (the seed's prior; fluxes log-uniform in 1-10^4 nJy), not simulated. Written in
chunks, so fabricating it holds little memory.

Then, each in a fresh process (so its peak resident memory is its own), after a first ``read_library(path,
arrays=False)`` that does the imports and parses the Model group (timed apart): ``read_library`` alone, and
``read_library`` + AB-magnitude features with 29 AB depth noise, in chunks (the features rule) and in one
call (for contrast). Prints per step: wall time, peak traced numpy/Python allocations (tracemalloc) and the
growth of peak resident memory over the process's baseline after imports (ru_maxrss), next to the array
sizes. Usage: .venv/bin/python benchmarks/synference_library.py [--rows 1000000] [--float32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

PRIOR = {"redshift": (0.0, 5.0), "log_mass": (8, 12), "tau_v": (0.01, 3), "tau": (0.1, 2), "peak_age": (10, 1000),
         "log10metallicity": (-4, -1.4)}
UNITS = ["dimensionless", "log10_Msun", "mag", "dimensionless", "Myr", "log10(Zmet)"]
CODES = ["JWST/NIRCam.F070W", "JWST/NIRCam.F090W", "JWST/NIRCam.F115W", "JWST/NIRCam.F150W", "JWST/NIRCam.F200W",
         "JWST/NIRCam.F277W", "JWST/NIRCam.F356W", "JWST/NIRCam.F444W"]


def fabricate(path: Path, rows: int, dtype: str, chunk: int = 100_000) -> None:
    """A library in synference's layout with ``rows`` rows (see the module docstring)."""
    import h5py
    from astropy.cosmology import Planck18

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as hf:
        parameters = hf.create_dataset("Grid/Parameters", shape=(len(PRIOR), rows), dtype=dtype)
        photometry = hf.create_dataset("Grid/Photometry", shape=(len(CODES), rows), dtype=dtype)
        hf.create_dataset("Grid/SupplementaryParameters", shape=(0, rows), dtype="f8")
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            parameters[:, start:start + n] = np.stack([rng.uniform(lo, hi, n) for lo, hi in PRIOR.values()])
            photometry[:, start:start + n] = 10 ** rng.uniform(0, 4, size=(len(CODES), n))
        hf.attrs.update({"FilterCodes": CODES, "ParameterNames": list(PRIOR), "ParameterUnits": UNITS,
                         "PhotometryUnits": "nJy", "model_name": ["fabricated"], "Grids": ["bc03_miles_kroupa"]})
        model = hf.create_group("Model")
        model.attrs.update({
            "cosmology": Planck18.to_format("yaml"), "sfh_class": "LogNormal",
            "metallicity_distribution_class": "DeltaConstant", "emission_model_key": "attenuated",
            "fixed_param_names": ["min_age"], "fixed_param_values": [0], "fixed_param_units": ["yr"],
            "grid_name": "bc03_miles_kroupa", "grid_dir": "results/galaxy/grids", "filters": CODES,
            "stellar_params": ["tau_v"], "varying_param_names": list(PRIOR)})
        emission = model.create_group("EmissionModel")
        emission.attrs.update({"name": "AttenuatedEmission", "dust_law": "PowerLaw",
                               "dust_attenuation_keys": ["slope"], "dust_attenuation_values": [-0.7],
                               "dust_attenuation_units": [""], "parameter_keys": np.array([], dtype=float),
                               "parameter_values": np.array([], dtype=float),
                               "parameter_units": np.array([], dtype=float)})


def measure(path: str, step: str) -> dict:
    """One step in this process: wall time, traced peak, peak-RSS growth (MB), array sizes (MB)."""
    from seqsbi.simulators.galaxy.features import FluxNoise, simulate_features, simulate_features_chunked
    from seqsbi.simulators.galaxy.library import read_library

    start = time.perf_counter()
    read_library(path, arrays=False)  # imports (astropy reads the YAML cosmology) and the Model group: not measured
    model_s = time.perf_counter() - start
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    library = read_library(path)
    read_s = time.perf_counter() - start
    out = {"step": step, "rows": len(library.theta), "model_only_read_s": round(model_s, 2), "read_s": round(read_s, 3),
           "arrays_mb": round((library.theta.nbytes + library.photometry_njy.nbytes) / 1e6, 1)}
    if step != "read":
        make = simulate_features_chunked if step == "features_chunked" else simulate_features
        noise = FluxNoise.from_config({"depth_5sigma_ab": 29.0}, len(library.filter_codes))
        start = time.perf_counter()
        x = make(library.photometry_njy, "ab_magnitude", noise, np.random.default_rng(0))
        out.update(features_s=round(time.perf_counter() - start, 3), features_mb=round(x.nbytes / 1e6, 1))
    _, peak = tracemalloc.get_traced_memory()
    out.update(traced_peak_mb=round(peak / 1e6, 1),
               rss_growth_mb=round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1e3, 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--measure", nargs=2, metavar=("PATH", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    out_dir = ROOT / "results" / "benchmarks" / "synference_library"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"library_{args.rows}{'_f32' if args.float32 else ''}.hdf5"
    start = time.perf_counter()
    fabricate(path, args.rows, "f4" if args.float32 else "f8")
    print(f"fabricated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
    for step in ("read", "features_chunked", "features_one_call"):
        result = subprocess.run([sys.executable, __file__, "--measure", str(path), step], capture_output=True,
                                text=True, check=True)
        print(result.stdout.strip().splitlines()[-1])
    path.unlink()


if __name__ == "__main__":
    main()
