"""Does refining a flagged catalogue galaxy bring its posterior closer to the exact one? (issue 16, item 6)

Runs after a refined catalogue exists (``snakemake --cores 2 --configfile config/examples/catalogue.yaml``, or a
config of the same shape). For ``--flagged`` flagged and ``--unflagged`` unflagged normal rows (the mock's
``injected`` column empty; the first in table order), in one process on one torch thread:

- the exact-likelihood reference posterior of the galaxy (seqsbi.reference, nautilus; the galaxy's own errors,
  as its refinement simulates them);
- the amortized posterior (the catalogue's samples) and, per ``--engines`` entry, the refinement of
  seqsbi.refine.refine_galaxy with ``--rounds`` rounds of ``--simulations`` (round 0 the amortized estimator);
- C2ST of each against the reference (seqsbi.diagnostics.c2st, sbi's classifier test; 0.5 = indistinguishable),
  and the wall time of each refinement and reference (``--no-reference``: the refinements' times only;
  ``--live-points``, ``--effective-samples``: cheaper references than the engine's defaults).

``--rows`` picks table rows; ``--noise depth`` (or ``both``) refines with the configured depth instead of (or
beside) the galaxy's own errors, as every simulation did before per-observation noise (issue 18 item 1).

Prints one row per galaxy and variant (engine, new or continued network, ``--tuned`` training, noise), then means.
Measured numbers only.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/catalogue_refine.py --flagged 5 --unflagged 5
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/examples/catalogue.yaml")
    parser.add_argument("--catalogue", default="field")
    parser.add_argument("--flagged", type=int, default=5)
    parser.add_argument("--unflagged", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["TSNPE"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--simulations", type=int, default=5000)
    parser.add_argument("--max-epochs", type=int, default=None, help="training.max_num_epochs (default: refine's)")
    parser.add_argument("--batch-size", type=int, default=None, help="training.training_batch_size")
    parser.add_argument("--skip-rows", type=int, nargs="*", default=[], help="table rows to leave out")
    parser.add_argument("--rows", type=int, nargs="*", default=None,
                        help="these table rows instead of the first --flagged and --unflagged")
    parser.add_argument("--noise", choices=("own", "depth", "both"), default="own",
                        help="refinement simulations with the galaxy's own errors (issue 18 item 1), with the "
                             "configured depth (galaxy.features.noise; what every simulation used before), or both "
                             "in turn; the reference always has the galaxy's own errors")
    parser.add_argument("--network", choices=("both", "continued", "new"), default="both",
                        help="round 1 continues the amortized network (refine.warm_start), builds a new one, or both "
                             "in turn (SNLE/SNRE: always new)")
    parser.add_argument("--tuned", nargs="*", default=[], metavar="KEY=VALUE",
                        help="also refine with these training settings (e.g. stop_after_epochs=20 "
                             "learning_rate=0.0005, sbi's defaults), as one more variant: a new network with "
                             "--network new, else the amortized network continued")
    parser.add_argument("--reference-dir", type=Path, default=ROOT / "results/benchmarks/catalogue_refine",
                        help="reference posteriors are kept here (reference_<id>.npz) and reused when present")
    parser.add_argument("--no-reference", action="store_true", help="time the refinements only (no C2ST)")
    parser.add_argument("--live-points", type=int, default=None, help="nested_sampling.live_points")
    parser.add_argument("--effective-samples", type=int, default=None,
                        help="nested_sampling.effective_samples (min_ess: half of it)")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    import h5py
    import torch
    import yaml
    from astropy.table import Table

    from seqsbi import artifacts, engines, refine
    from seqsbi.amortized import estimator_x, settings_for
    from seqsbi.catalogue_config import plan_catalogues
    from seqsbi.catalogue_table import catalogue_features, read_catalogue
    from seqsbi.config import validate_config
    from seqsbi.diagnostics import c2st
    from seqsbi.reference import reference_posterior

    torch.set_num_threads(1)
    config = validate_config(yaml.safe_load(args.config.read_text()))
    block = config["catalogues"][args.catalogue]
    estimator_block = plan_catalogues(config).estimator_blocks[block["estimator"]]  # auto resolved, as the run did
    galaxy = config["galaxy"]
    results = ROOT / "results/catalogues" / args.catalogue
    amortized_dir = ROOT / "results/amortized" / block["estimator"]
    table = Table.read(results / "summary.fits")
    mock = Table.read(ROOT / block["path"], format="ascii.csv")
    normal = np.asarray(mock["injected"].filled("") if hasattr(mock["injected"], "filled") else mock["injected"]
                        ).astype(str) == ""
    flagged = np.asarray(table["flags"]).astype(str) != ""
    usable = normal & np.isin(np.arange(len(table)), args.skip_rows, invert=True)
    rows = np.concatenate([np.flatnonzero(usable & flagged)[:args.flagged],
                           np.flatnonzero(usable & ~flagged)[:args.unflagged]]) if args.rows is None else np.array(
        args.rows, dtype=int)
    catalogue = read_catalogue(ROOT / block["path"], galaxy["filters"], block["id_column"],
                               missing_value=galaxy.get("missing_value"))
    x = catalogue_features(catalogue, galaxy)
    estimator = settings_for(block["estimator"], estimator_block, galaxy)
    amortized_x = estimator_x(estimator, x, catalogue.error_njy)  # x, and depths with depth inputs
    training = artifacts.read_npz(amortized_dir / "training_set.npz", required=("theta", "flux"))
    posterior = engines.load(amortized_dir / "posterior.pt")
    with h5py.File(results / "samples.hdf5") as hf:
        amortized_samples = hf["samples"][np.sort(rows)]
    amortized_samples = dict(zip(np.sort(rows).tolist(), amortized_samples))

    from seqsbi.simulators.galaxy.features import FluxNoise

    configured = FluxNoise.from_config(galaxy["features"]["noise"], len(galaxy["filters"])).sigma_njy
    noises = {"own": ("own",), "depth": ("depth",), "both": ("own", "depth")}[args.noise]
    print("row | id | flags | engine | C2ST amortized | C2ST refined | refine s | reference s")
    summary: dict[str, list] = {}
    for row in rows.tolist():
        galaxy_id = str(catalogue.ids[row])
        base = {**block, "refine": {**(block["refine"] or {}), "run": {
            "engine": args.engines[0], "rounds": args.rounds, "simulations_per_round": args.simulations,
            "training": {**({"max_num_epochs": args.max_epochs} if args.max_epochs else {}),
                         **({"training_batch_size": args.batch_size} if args.batch_size else {})}}}}
        settings = refine.refinement_settings(args.catalogue, base, estimator_block, galaxy)
        sampler = {**settings.nested_sampling,
                   **({"live_points": args.live_points} if args.live_points else {}),
                   **({"effective_samples": args.effective_samples, "min_ess": args.effective_samples // 2}
                      if args.effective_samples else {})}
        settings = dataclasses.replace(settings, nested_sampling=sampler)
        start = time.perf_counter()
        kept = args.reference_dir / (f"reference_{args.catalogue}_{galaxy_id}_live{sampler['live_points']}"
                                     f"_ess{sampler['effective_samples']}.npz")  # one file per galaxy and sampler
        if args.no_reference:
            reference = None
        elif kept.exists():  # reference_s is then the time to read it
            reference = np.load(kept)["samples"]
        else:
            reference = reference_posterior(refine.galaxy_settings(settings, catalogue.error_njy[row]), x[row],
                                            seed=row).samples
            artifacts.write_npz(kept, samples=reference)
        reference_s = time.perf_counter() - start
        amortized_c2st = np.nan if reference is None else c2st(amortized_samples[row], reference)
        for engine in args.engines:
            settings_e = dataclasses.replace(settings, engine=engines.engine_named(engine).name)
            n = settings_e.simulations_per_round
            variants = [(warm, {}) for warm in {"both": (True, False), "continued": (True,),
                                                "new": (False,)}[args.network]]
            if args.tuned:
                variants.append((args.network != "new", {key: yaml.safe_load(value) for key, value in
                                        (item.split("=", 1) for item in args.tuned)}))
            if settings_e.engine not in refine.WARM_START_ENGINES or estimator.depth_inputs is not None or \
                    estimator.missing_bands is not None:
                variants = [(False, {})]  # SNLE/SNRE, or a network that takes depths or masks: a new network
            for (warm, tuned), noise in ((variant, noise) for variant in variants for noise in noises):
                label = f"{engine} ({'continued' if warm else 'new'} network{', ' if tuned else ''}" + ", ".join(
                    f"{k} {v}" for k, v in tuned.items()) + ("" if args.noise == "own" else f", {noise} noise") + ")"
                settings_v = dataclasses.replace(settings_e, training={**settings_e.training, **tuned})
                error = catalogue.error_njy[row] if noise == "own" else np.where(
                    np.isfinite(catalogue.error_njy[row]), configured, np.nan)
                result = refine.refine_galaxy(settings_v, galaxy_id, x[row], error, posterior,
                                              amortized_samples[row], training["theta"][:n], training["flux"][:n],
                                              warm, amortized_x[row])
                refined_c2st = np.nan if reference is None else c2st(result.samples, reference)
                epochs = "+".join(str(r["epochs"]) for r in result.rounds[1:])
                summary.setdefault(label, []).append((bool(flagged[row]), amortized_c2st, refined_c2st,
                                                      result.seconds))
                print(f"{row} | {galaxy_id} | {table['flags'][row] or '-'} | {label} | {amortized_c2st:.3f} | "
                      f"{refined_c2st:.3f} | {result.seconds:.1f} ({epochs} epochs) | {reference_s:.1f}", flush=True)
    for engine, values in summary.items():
        for label, keep in (("flagged", True), ("unflagged", False)):
            chosen = [v for v in values if v[0] == keep]
            if chosen:
                a, r, s = (np.mean([v[i] for v in chosen]) for i in (1, 2, 3))
                better = sum(v[2] <= v[1] for v in chosen)
                scores = "" if args.no_reference else (f"mean C2ST amortized {a:.3f}, refined {r:.3f}; refined <= "
                                                       f"amortized in {better}/{len(chosen)}; ")
                print(f"{engine} {label} ({len(chosen)}): {scores}mean refine time {s:.1f} s")


if __name__ == "__main__":
    main()
