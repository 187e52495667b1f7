"""Evidence for the default galaxy fit against the exact-likelihood reference (issue 17, item 5).

For library rows of the default config (config/config.yaml: 8 NIRCam bands, 29 AB 5-sigma depth, AB
magnitudes censored at 1 sigma), this
  1. prints each row's true S/N per band (noise-free library flux / sigma),
  2. samples the reference posterior with seqsbi.reference (nautilus; the same code as rule
     reference_fit, run in-process) and times it,
  3. scores every round of the default SNLE fit of that row (round_*/samples.npz under --fits) against
     it with C2ST (sbibm's: 5-fold MLP; sbi's when sbibm is missing), 0.5 = indistinguishable; with
     --c2st-repeats K, K times with other subsamples and classifier seeds (mean and spread printed),
  4. and per round and parameter, the shift of the median in units of the reference's 68% half-width
     and the ratio of the 68% widths.
Results go to <out>/row_<N>/ (reference.npz, reference.json) and <out>/c2st.tsv.

Usage (the SBI fits first, e.g. the default run on other rows with a sheet of library_index rows:
  snakemake --cores 2 --configfile <copy of config/config.yaml with observations: that sheet>):
  .venv/bin/python benchmarks/reference.py --rows 20 76 25 35 60 \\
      --fits results/runs/synference_online [--fits /other/results/runs/synference_online] \\
      [--live-points 2000 --effective-samples 10000]
Each row's rounds are looked up as <fits>/library_row_<N>/round_*/samples.npz, first --fits first.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from seqsbi.config import plan_workflow  # noqa: E402
from seqsbi.reference import reference_posterior  # noqa: E402
from seqsbi.seeds import reference_seed  # noqa: E402
from seqsbi.units import sigma_from_depth  # noqa: E402


def reference_settings(config_path: Path, sampler: dict, posterior_samples: int):
    """The default config's run as a reference run (engine likelihood, same simulator, prior, noise)."""
    config = yaml.safe_load(config_path.read_text())  # paths in it are relative to the repository root
    name, run = next(iter(config["runs"].items()))
    run = copy.deepcopy(run)
    for key in ("density_estimator", "network", "training", "rounds", "simulations_per_round", "mcmc"):
        run.pop(key, None)
    run.update(engine="likelihood", nested_sampling=sampler, posterior_samples=posterior_samples)
    config["runs"] = {f"{name}_reference": run}
    plan = plan_workflow(config)
    return plan.runs[f"{name}_reference"], plan.config["galaxy"]


def true_snr(features_path: Path, galaxy: dict, rows: list[int]) -> dict[int, np.ndarray]:
    """Noise-free library flux / sigma per band, (n_filters,) per row."""
    from seqsbi.simulators.galaxy.library import read_library

    library = read_library(str(features_path).replace(".features.npz", ".hdf5"))
    sigma = sigma_from_depth(np.broadcast_to(galaxy["features"]["noise"]["depth_5sigma_ab"], (len(galaxy["filters"]),)))
    return {row: library.photometry_njy[row] / sigma for row in rows}


def c2st(reference: np.ndarray, samples: np.ndarray, seed: int, n: int) -> float:
    """C2ST accuracy on min(n, sizes) random rows of each (sbibm's classifier, 5 folds); 0.5 = indistinguishable."""
    import torch

    try:
        from sbibm.metrics import c2st as score
    except ImportError:  # sbibm is a benchmark-only extra (benchmarks/sbibm/requirements.txt)
        from sbi.utils.metrics import c2st as score
    rng = np.random.default_rng(seed)
    n = min(n, len(reference), len(samples))  # as many of each: chance accuracy is then 0.5
    a = reference[rng.choice(len(reference), n, replace=False)]
    b = samples[rng.choice(len(samples), n, replace=False)]
    return float(score(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32),
                       seed=seed)[0])


def interval_errors(reference: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter: (median shift / reference 68% half-width, 68% width ratio samples / reference)."""
    r16, r50, r84 = np.percentile(reference, [16, 50, 84], axis=0)
    s16, s50, s84 = np.percentile(samples, [16, 50, 84], axis=0)
    half = (r84 - r16) / 2
    return (s50 - r50) / half, (s84 - s16) / (r84 - r16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--rows", type=int, nargs="+", default=[20, 76, 25, 35, 60])
    parser.add_argument("--fits", type=Path, nargs="*", default=[ROOT / "results" / "runs" / "synference_online"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "reference")
    parser.add_argument("--live-points", type=int, default=2000)
    parser.add_argument("--effective-samples", type=int, default=10000)
    parser.add_argument("--min-ess", type=int, default=2000)
    parser.add_argument("--networks", type=int, default=4)
    parser.add_argument("--posterior-samples", type=int, default=10000)
    parser.add_argument("--c2st-samples", type=int, default=10000, help="rows of each sample set C2ST compares")
    parser.add_argument("--c2st-repeats", type=int, default=1,
                        help="score each round this many times, each with another subsample and classifier seed "
                             "(seed = row + 1000 k), and print the mean and the spread (max - min)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="reuse <out>/row_N/reference.npz and the C2ST scores already computed")
    args = parser.parse_args()
    # Paths given on the command line are relative to where it was typed, not to the repository root.
    args.config, args.out = args.config.resolve(), args.out.resolve()
    args.fits = [fits.resolve() for fits in args.fits]

    os.chdir(ROOT)  # config paths are relative to the repository root
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sampler = {"live_points": args.live_points, "effective_samples": args.effective_samples, "min_ess": args.min_ess,
               "networks": args.networks}
    settings, galaxy = reference_settings(args.config, sampler, args.posterior_samples)
    features = ROOT / "results" / "galaxy" / "libraries" / f"{galaxy['library']['name']}.features.npz"
    data = np.load(features)
    snr = true_snr(features, galaxy, args.rows)
    print(f"nautilus: {sampler}; {args.posterior_samples} posterior samples; C2ST on {args.c2st_samples} of each")
    print("row  true S/N per band (median, min-max, bands > 20)   theta_true")
    for row in args.rows:
        print(f"{row:>3}  {np.median(snr[row]):7.2f}  {snr[row].min():6.2f}-{snr[row].max():6.2f}  "
              f"{int((snr[row] > 20).sum())}/8   {np.round(data['theta'][row], 2).tolist()}")
    lines = ["row\tmedian_snr\treference_wall_s\tlikelihood_calls\tess\tround\tc2st\tc2st_spread\tc2st_seeds\t"
             "sbi_round_wall_s\t"
             "median_shift_over_halfwidth\twidth_ratio"]
    print("\nrow  reference: wall s, calls, ESS, log Z     round  C2ST   SBI round s   median shift / 68% half-width "
          f"({', '.join(settings.prior.names)})   68% width ratio")
    for row in args.rows:
        out = args.out / f"row_{row}"
        if args.skip_existing and (out / "reference.npz").exists():
            reference = np.load(out / "reference.npz")["samples"]
            report = json.loads((out / "reference.json").read_text())
        else:
            name = f"library_row_{row}"
            result = reference_posterior(settings, data["x"][row], reference_seed(settings.seed, settings.name, name))
            reference, report = result.samples, result.report
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / "reference.npz", samples=reference, parameter_names=np.array(settings.prior.names))
            (out / "reference.json").write_text(json.dumps(report, indent=2) + "\n")
        diag = report["diagnostics"]
        head = (f"{row:>3}  {diag['wall_time_s']:7.0f} s {diag['likelihood_calls']:>8} "
                f"{diag['effective_sample_size']:6.0f} {diag['log_evidence']:8.2f}+-{diag['log_evidence_error']:.2f}")
        rounds = []
        for fits in args.fits:
            rounds = sorted((fits / f"library_row_{row}").glob("round_*/samples.npz"),
                            key=lambda p: int(p.parent.name.removeprefix("round_")))
            if rounds:
                break
        if not rounds:
            print(f"{head}   (no SBI rounds found)")
            lines.append(f"{row}\t{np.median(snr[row]):.3g}\t{diag['wall_time_s']}\t{diag['likelihood_calls']}\t"
                         f"{diag['effective_sample_size']:.0f}\t\t\t\t\t\t\t")
        for path in rounds:
            samples = np.load(path)["samples"]
            summary = json.loads((path.parent / "round.json").read_text())
            sbi_wall = sum(summary.get("timings", {}).values())
            # Scores are kept per (round, sample count, seed): a later pass with --skip-existing adds the rounds
            # finished since, or more repeats, without rescoring the others.
            scores = []
            for k in range(args.c2st_repeats):
                seed = row + 1000 * k
                cache = out / (f"c2st_{path.parent.parent.parent.name}_{path.parent.name}_{args.c2st_samples}"
                               + (f"_seed{seed}" if k else "") + ".json")
                if args.skip_existing and cache.exists() and cache.stat().st_mtime > path.stat().st_mtime:
                    scores.append(json.loads(cache.read_text())["c2st"])
                else:
                    scores.append(c2st(reference, samples, seed=seed, n=args.c2st_samples))
                    cache.write_text(json.dumps({"c2st": scores[-1], "samples": str(path), "seed": seed}) + "\n")
            score, spread = float(np.mean(scores)), float(np.ptp(scores))
            shift, width = interval_errors(reference, samples)
            print(f"{head}   {path.parent.name:>7}  {score:.3f}"
                  + (f" (spread {spread:.3f}, {len(scores)} seeds)" if len(scores) > 1 else "")
                  + f"  {sbi_wall:8.0f}   "
                  f"{' '.join(f'{v:+.2f}' for v in shift)}   {' '.join(f'{v:.2f}' for v in width)}", flush=True)
            head = " " * len(head)
            lines.append(f"{row}\t{np.median(snr[row]):.3g}\t{diag['wall_time_s']}\t{diag['likelihood_calls']}\t"
                         f"{diag['effective_sample_size']:.0f}\t{path.parent.name}\t{score:.4f}\t{spread:.4f}\t"
                         f"{len(scores)}\t"
                         f"{sbi_wall:.0f}\t"
                         f"{','.join(f'{v:.3f}' for v in shift)}\t{','.join(f'{v:.3f}' for v in width)}")
        (args.out / "c2st.tsv").write_text("\n".join(lines) + "\n")
    print(f"\ntable: {args.out / 'c2st.tsv'}")


if __name__ == "__main__":
    main()
