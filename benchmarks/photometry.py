"""Feature kinds and per-galaxy noise against exact posteriors on catalogue rows (issue 18, item 6).

Runs after the same mock catalogue has been fitted by workflow directories that differ only in
``galaxy.features.kind`` (one directory per kind, each with catalogues fitted by estimators with and without
depth inputs: ``amortized.<name>.training_depth_range_ab``). For ``--rows`` normal rows of the mock with every
band (spread over median S/N: the rows nearest the ``--snr`` targets), in one process on one torch thread:

- the exact-likelihood reference posterior of each row with its own errors (seqsbi.reference, nautilus at the
  engine's defaults unless ``--live-points`` / ``--effective-samples``), once for AB magnitudes (fluxes below the
  row's 1-sigma censored, as the features are) and once for fluxes, which is also the exact posterior for asinh
  magnitudes (a one-to-one map of the flux given the row's errors);
- C2ST (sbibm's classifier, as benchmarks/reference.py; 0.5 = indistinguishable) of each catalogue's samples of
  the row against the reference of its feature kind.

Prints one line per row and catalogue, then the mean per catalogue. References are kept in ``--reference-dir``
and reused. Measured numbers only.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/photometry.py --mock mock.csv \\
        --workdir ab_magnitude=bench/ab --workdir flux=bench/flux --catalogues mock_single mock_depths
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def pick_rows(data: np.ndarray, error: np.ndarray, normal: np.ndarray, targets: list[float]) -> list[int]:
    """Rows with every band, the one nearest each median-S/N target (each row once)."""
    complete = normal & np.all(np.isfinite(data), axis=1)
    snr = np.median(data / error, axis=1)
    rows: list[int] = []
    for target in targets:
        order = np.argsort(np.abs(np.log(np.clip(snr, 1e-3, None)) - np.log(target)))
        rows.append(int(next(r for r in order if complete[r] and r not in rows)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mock", type=Path, required=True)
    parser.add_argument("--workdir", action="append", required=True, metavar="KIND=DIR",
                        help="a fitted workflow directory and its galaxy.features.kind (bench.yaml in it)")
    parser.add_argument("--config-name", default="bench.yaml")
    parser.add_argument("--catalogues", nargs="+", default=["mock_single", "mock_depths"])
    parser.add_argument("--snr", type=float, nargs="+", default=[0.5, 1.5, 4.0, 10.0, 30.0],
                        help="median-S/N targets, one row each")
    parser.add_argument("--reference-dir", type=Path, default=ROOT / "results/benchmarks/photometry")
    parser.add_argument("--live-points", type=int, default=None)
    parser.add_argument("--effective-samples", type=int, default=None)
    parser.add_argument("--c2st-samples", type=int, default=5000)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    import h5py
    import torch
    import yaml

    from catalogue_mock import _read_mock
    from reference import c2st
    from seqsbi import artifacts, refine
    from seqsbi.catalogue_table import catalogue_features, read_catalogue
    from seqsbi.config import validate_config
    from seqsbi.reference import reference_posterior
    from seqsbi.units import njy_to_ab

    torch.set_num_threads(1)
    workdirs = dict(item.split("=", 1) for item in args.workdir)
    _, kinds, data, error = _read_mock(args.mock, ROOT / "config/config.yaml")
    rows = pick_rows(data, error, kinds == "", args.snr)
    print(f"rows {rows}: median S/N {[round(float(np.median(data[r] / error[r])), 2) for r in rows]}, median 5-sigma "
          f"depth {[round(float(np.median(njy_to_ab(5 * error[r]))), 2) for r in rows]} AB")
    references: dict[tuple[str, int], np.ndarray] = {}
    print("row | S/N | kind | catalogue | C2ST | reference s")
    scores: dict[tuple[str, str], list[float]] = {}
    for kind, workdir in workdirs.items():
        config = validate_config(yaml.safe_load((Path(workdir) / args.config_name).read_text()))
        galaxy = config["galaxy"]
        if galaxy["features"]["kind"] != kind:
            raise SystemExit(f"{workdir}: features {galaxy['features']['kind']!r}, not {kind!r}")
        exact = "ab_magnitude" if kind == "ab_magnitude" else "flux"  # asinh: the flux posterior (a bijection)
        catalogue = read_catalogue(args.mock, galaxy["filters"], missing_value=galaxy.get("missing_value"))
        for row in rows:
            name = args.catalogues[0]
            block = config["catalogues"][name]
            base = {**block, "refine": {"run": {"engine": "TSNPE"}}}
            settings = refine.refinement_settings(name, base, config["amortized"][block["estimator"]], galaxy)
            settings = dataclasses.replace(settings, nested_sampling={
                **settings.nested_sampling, **({"live_points": args.live_points} if args.live_points else {}),
                **({"effective_samples": args.effective_samples, "min_ess": args.effective_samples // 2}
                   if args.effective_samples else {})})
            if exact != kind:
                settings = dataclasses.replace(settings, simulator_settings={**settings.simulator_settings,
                                                                             "features": exact})
            sampler = settings.nested_sampling
            kept = args.reference_dir / (f"reference_{args.mock.stem}_{row}_{exact}_live{sampler['live_points']}"
                                         f"_ess{sampler['effective_samples']}.npz")
            start = time.perf_counter()
            if (exact, row) not in references:
                if kept.exists():
                    references[exact, row] = np.load(kept)["samples"]
                else:
                    x_o = catalogue_features(catalogue, {**galaxy, "features": {**galaxy["features"], "kind": exact}})
                    references[exact, row] = reference_posterior(refine.galaxy_settings(settings, error[row]),
                                                                 x_o[row], seed=row).samples
                    artifacts.write_npz(kept, samples=references[exact, row])
            reference_s = time.perf_counter() - start
            for name in args.catalogues:
                with h5py.File(Path(workdir) / "results/catalogues" / name / "samples.hdf5") as hf:
                    samples = hf["samples"][row]
                score = c2st(references[exact, row], samples, seed=row, n=args.c2st_samples)
                scores.setdefault((kind, name), []).append(score)
                print(f"{row} | {np.median(data[row] / error[row]):.2f} | {kind} | {name} | {score:.3f} | "
                      f"{reference_s:.0f}", flush=True)
    print("kind | catalogue | mean C2ST | per row")
    for (kind, name), values in scores.items():
        print(f"{kind} | {name} | {np.mean(values):.3f} | {' '.join(f'{v:.3f}' for v in values)}")


if __name__ == "__main__":
    main()
