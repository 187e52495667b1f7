"""Refinement of flagged catalogue galaxies: sequential rounds whose round 0 is the shared amortized estimator.

A catalogue's amortized posteriors (seqsbi.amortized) are flagged where they may not be trusted. Each flagged
galaxy (``catalogues.<name>.refine``) then gets rounds 1..K of a sequential run (``refine.run``: SNPE, TSNPE,
SNLE or SNRE with any run setting) that start from what the catalogue already has, with no new round-0
simulations and no per-galaxy retraining of round 0:

- round 0's simulations are the amortized estimator's own training rows (their theta and noise-free model
  fluxes, ``training_set.npz``), re-noised with the galaxy's own flux errors (the noise its online
  simulations use too, as an observation with errors gets: seqsbi.simulators.galaxy.photometry);
- round 0's posterior is the amortized estimator at the galaxy's x_o, and its samples are the catalogue's;
- the engines' proposal bookkeeping (seqsbi.engines) then runs unchanged: SNPE (NPE-C) records round 0 as
  drawn from the prior and round 1 as drawn from the amortized posterior (its atomic loss corrects for it);
  TSNPE truncates the prior to the amortized posterior's highest-density region at x_o; SNLE and SNRE train
  on every simulation, round 0's included, and round 1 starts from the amortized posterior's samples.

Rounds 1..K are :func:`seqsbi.rounds.train_round` itself (seeded from the refinement run's name, the galaxy's
id and the round), so everything a round reports (invalid simulations, x_o coverage, feature floors,
training, posterior mass inside the prior) is reported per galaxy here too.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from seqsbi.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from seqsbi.config import RunSettings

logger = logging.getLogger(__name__)

#: Flags that can send a galaxy to refinement (``invalid_x``, a non-finite x_o, cannot: there is no x_o).
REFINE_FLAGS = ("ood", "ppc", "fit", "prior_edge", "missing_bands")
#: Sequential engines a refinement can use (NPE draws every round from the prior: nothing to refine).
REFINE_ENGINES = ("SNPE", "TSNPE", "SNLE", "SNRE")
#: refine.run's defaults where they differ from a run's: round 0 (amortized) and two rounds of 5,000 new
#: simulations (the catalogue issue's budget: at most 2 x 5,000 new simulations a galaxy), TSNPE, training as the
#: demo's galaxy run (stop after 10 epochs without improvement, learning rate 0.001), at most 100 epochs a round.
#: Measured against exact posteriors (benchmarks/README.md, "Catalogues end to end", 2 galaxies, one core each):
#: these settings gave C2ST 0.998 and 0.912 in 145 s and 116 s a galaxy; sbi's defaults (20 epochs, 0.0005)
#: 0.998 and 0.949 in 177-198 s and 143-162 s (both rounds at the 100-epoch cap), and without the cap round 1 of
#: another galaxy trained 355 epochs.
RUN_DEFAULTS = {"engine": "TSNPE", "rounds": 3, "simulations_per_round": 5000,
                "training": {"max_num_epochs": 100, "stop_after_epochs": 10, "learning_rate": 0.001}}
#: Keys refine.run may not set, and why.
FIXED_KEYS = {
    "simulator": "the refinement simulates with the estimator's simulator",
    "simulator_settings": "the refinement simulates with the estimator's simulator settings",
    "prior": "the refinement's prior is the estimator's (round 0 is its training set)",
    "observations": "the galaxies are the catalogue's flagged rows",
    "posterior_samples": "the catalogue's posterior_samples apply (set catalogues.<name>.posterior_samples)",
    "reference": "refinements have no reference runs",
    "simulation_chunks": "a refine_batch job simulates in process",
    "diagnostics": "refinements write no per-galaxy diagnostics",
    "nested_sampling": "it configures reference runs only",
    "round0_amortized": "a refinement's round 0 is always the catalogue's estimator",
}
#: Engines whose round 1 can continue training the amortized network (a posterior estimator, as theirs is).
WARM_START_ENGINES = ("SNPE", "TSNPE")
#: refine.run keys that choose the network, which a refinement continuing the amortized network cannot honour.
NETWORK_KEYS = ("density_estimator", "network", "constrain_to_prior")


def run_name(catalogue: str) -> str:
    """The refinement run's name (in seeds, logs and round summaries)."""
    return f"{catalogue}.refine"


#: Amortized block keys that give the network inputs beside the features (depths, band masks): such an estimator
#: cannot be continued by a refinement's round 1 (refine.warm_start) or serve a run's round 0 (round0_amortized).
EXTRA_INPUT_KEYS = ("training_depth_range_ab", "training_missing_bands")


def extra_inputs(estimator_block: dict) -> list[str]:
    """The EXTRA_INPUT_KEYS an amortized block sets (``auto`` unresolved reads as null, as in jobs)."""
    return [key for key in EXTRA_INPUT_KEYS if estimator_block.get(key) not in (None, "auto")]


def refinement_settings(catalogue: str, block: dict, estimator_block: dict, galaxy: dict) -> RunSettings:
    """:class:`RunSettings` of catalogue ``catalogue``'s refinement: ``refine.run`` (RUN_DEFAULTS, then a
    run's schema defaults) with the estimator's simulator and prior and the catalogue's posterior_samples.

    Raises:
        ConfigError: naming ``catalogues.<catalogue>.refine.run.<key>``: a key from FIXED_KEYS, a bad value
            (the runs schema's checks), an engine not in REFINE_ENGINES, fewer than 2 rounds;
            :func:`warm_start`'s refusals, and warm_start with an estimator with depth inputs or band masks
            (EXTRA_INPUT_KEYS).
    """
    from seqsbi.config import check_training_budget, run_settings, validate_config
    from seqsbi.simulators.galaxy import config as galaxy_config

    key = f"catalogues.{catalogue}.refine.run"
    given = dict(block["refine"]["run"])
    fixed = sorted(set(given) & set(FIXED_KEYS))
    if fixed:
        raise ConfigError(f"{key}: {', '.join(fixed)} cannot be set here (" + "; ".join(
            f"{k}: {FIXED_KEYS[k]}" for k in fixed) + f"); drop {'them' if len(fixed) > 1 else 'it'}")
    name = run_name(catalogue)
    run = {**RUN_DEFAULTS, **given, "training": {**RUN_DEFAULTS["training"], **given.get("training", {})},
           "simulator": estimator_block["simulator"],
           "simulator_settings": copy.deepcopy(estimator_block["simulator_settings"]),
           "prior": copy.deepcopy(estimator_block["prior"]), "posterior_samples": block["posterior_samples"]}
    try:
        filled = validate_config({"runs": {name: run}})["runs"][name]
        filled = galaxy_config.resolve_galaxy_run(key, filled, galaxy)
        settings = run_settings(name, filled, [])
        check_training_budget(settings)  # the batches sbi needs, as for a run
    except ConfigError as error:
        raise ConfigError(str(error).replace(f"runs.{name}", key)) from None
    if settings.engine not in REFINE_ENGINES:
        raise ConfigError(f"{key}.engine: {settings.engine!r} cannot refine (round 1 onwards must draw from a "
                          f"proposal built at the galaxy's x_o); use one of {', '.join(REFINE_ENGINES)}")
    if settings.rounds < 2:
        raise ConfigError(f"{key}.rounds: {settings.rounds}; round 0 is the amortized estimator, so a refinement "
                          f"needs at least 2 rounds (round 0 and one sequential round)")
    extra = extra_inputs(estimator_block)
    if warm_start(catalogue, block, settings) and extra:
        raise ConfigError(f"catalogues.{catalogue}.refine.warm_start: true, but estimator {block['estimator']!r} "
                          f"takes more than the features ({', '.join(extra)}): its network's input is wider than "
                          f"the refinement's features, so round 1 cannot continue it; set warm_start: false or "
                          f"amortized.{block['estimator']}.{extra[0]}: null")
    return dataclasses.replace(settings, simulation_chunks=1)


def warm_start(catalogue: str, block: dict, settings: RunSettings) -> bool:
    """Whether round 1 of catalogue ``catalogue``'s refinements continues training the amortized network
    (``refine.warm_start``, default false) instead of building a new one.

    sbi's own multi-round NPE continues one network from round to round (``retrain_from_scratch=False``), and
    round 0 of a refinement is the amortized estimator. Measured against the exact posteriors of 2 galaxies at
    RUN_DEFAULTS' training (benchmarks/README.md, "Catalogues end to end"): continuing it takes 76 s a galaxy
    instead of 130 s, but its posterior stays near the amortized one (mean C2ST 0.995; amortized 0.997, a new
    network 0.955), hence off by default. A galaxy with missing bands has fewer features than the amortized
    network takes: its round 0 trains a new network, which round 1 continues, either way.

    Raises:
        ConfigError: naming ``catalogues.<catalogue>.refine.warm_start``: true with SNLE or SNRE (they learn a
            likelihood or a ratio, not a posterior), or with refine.run keys that choose the network
            (NETWORK_KEYS) or the run's ``training.retrain_from_scratch``, which a continued network cannot follow.
    """
    key = f"catalogues.{catalogue}.refine"
    if not block["refine"].get("warm_start"):
        return False
    if settings.engine not in WARM_START_ENGINES:
        raise ConfigError(f"{key}.warm_start: true, but engine {settings.engine} learns a "
                          f"{'likelihood' if settings.engine == 'SNLE' else 'likelihood ratio'}, and the amortized "
                          f"network is a posterior; drop warm_start or use engine "
                          f"{' or '.join(WARM_START_ENGINES)}")
    chosen = sorted(set(block["refine"]["run"]) & set(NETWORK_KEYS))
    if settings.training.get("retrain_from_scratch"):
        chosen.append("training.retrain_from_scratch")
    if chosen:
        raise ConfigError(f"{key}.warm_start: true continues the amortized estimator's network, so "
                          f"{key}.run.{', '.join(chosen)} cannot apply; drop {'them' if len(chosen) > 1 else 'it'} "
                          f"or set warm_start: false")
    return True


# --- which galaxies ---------------------------------------------------------------------------------------------


def selection(flags: np.ndarray, refine: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rows refined, rows flagged for refinement but beyond ``max_galaxies``) of a catalogue's summary table.

    ``flags``: (n,) comma-separated raised flags per row (the table's ``flags`` column). A row is flagged for
    refinement when one of its flags is in ``refine.flags``; the first ``refine.max_galaxies`` of those in table
    order are refined (None: all), the rest are reported as not refined.
    """
    wanted = set(refine["flags"])
    flagged = np.array([bool(wanted & set(filter(None, str(text).split(",")))) for text in flags], dtype=bool)
    rows = np.flatnonzero(flagged)
    limit = refine.get("max_galaxies")
    return (rows, rows[:0]) if limit is None else (rows[:limit], rows[limit:])


def read_flags(path: str) -> np.ndarray:
    """(n,) the ``flags`` column of a catalogue's summary table (FITS), as text."""
    from astropy.table import Table

    return np.asarray(Table.read(path, format="fits")["flags"]).astype(str)


def batches(rows: np.ndarray, galaxies_per_job: int) -> list[np.ndarray]:
    """``rows`` in consecutive batches of ``galaxies_per_job`` (one refine_batch job each)."""
    return [rows[start:start + galaxies_per_job] for start in range(0, len(rows), galaxies_per_job)]


# --- one galaxy -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Refinement:
    """One galaxy's refinement: its final samples (posterior_samples, d) and each round's summary (round 0,
    the amortized posterior, first)."""

    galaxy: str
    samples: np.ndarray
    rounds: list[dict[str, Any]]
    seconds: float
    method: str = ""


def galaxy_settings(settings: RunSettings, error_njy: np.ndarray) -> RunSettings:
    """``settings`` whose galaxy simulator uses one galaxy's 1-sigma flux errors (n_filters,) nJy (its
    ``sigma_njy``: with the configured ``max_snr`` floor, as an observation with errors) and simulates only
    its bands (``bands``; NaN errors mark the missing ones), as seqsbi.simulators.galaxy.photometry does for
    an observation."""
    present = np.isfinite(error_njy)
    simulator_settings = {**settings.simulator_settings,
                          "sigma_njy": [float(e) if ok else None for e, ok in zip(error_njy, present)]}
    if not present.all():
        simulator_settings["bands"] = np.flatnonzero(present).tolist()
    return dataclasses.replace(settings, simulator_settings=simulator_settings)


def round_zero_x(settings: RunSettings, galaxy: str, flux_njy: np.ndarray) -> np.ndarray:
    """x (n, k) of round 0: the amortized training rows' noise-free fluxes (n, n_filters) nJy with the
    observation's noise (its ``sigma_njy`` and ``bands`` in ``settings``, else the configured depth) and the
    configured features, seeded per (run, observation)."""
    from seqsbi.seeds import round_seed
    from seqsbi.simulators.galaxy.simulator import features_from_flux

    configured = settings.simulator_settings
    rng = np.random.default_rng(round_seed(settings.seed, settings.name, galaxy, 0))
    return features_from_flux(flux_njy, rng, len(configured["filters"]), configured["features"],
                              configured.get("noise"), configured.get("sigma_njy"), configured.get("bands"),
                              configured.get("flux_scale_njy"))


#: Round 0's ``source`` in its summary: the amortized estimator, or (bands missing) its training rows trained on.
AMORTIZED_SOURCE = "amortized estimator"
TRAINED_SOURCE = "amortized training rows, missing bands dropped"


def amortized_round_zero(settings: RunSettings, observation: Any, amortized_posterior: Any, theta0: np.ndarray,
                         flux0_njy: np.ndarray, samples: np.ndarray | None = None, warm_start: bool = False,
                         amortized_x: np.ndarray | None = None) -> Any:
    """Round 0 of a sequential fit at ``observation`` from an amortized estimator, with no new simulations.

    Its simulations are the estimator's training rows ``theta0`` (n, d) and their noise-free fluxes ``flux0_njy``
    (n, n_filters) nJy (n = simulations_per_round) with the observation's noise and features (``settings``'
    simulator settings: its own ``sigma_njy`` and ``bands``, or the configured depth), recorded as drawn from the
    prior. Its posterior is the amortized estimator at x_o, its samples ``samples`` (S, d) when given, else
    ``posterior_samples`` drawn from it. An observation without every band (``bands`` set) uses the amortized
    estimator only when ``amortized_x`` is finite (an estimator with band masks that takes this many missing
    bands); otherwise round 0 trains the engine on those rows instead.
    ``warm_start`` (:func:`warm_start`): the trainer holds a copy of the amortized network, which round 1 then
    continues training (sbi builds a new network for a trainer that holds none). ``amortized_x``: what the
    amortized estimator conditions on at this observation when it is not x_o itself (an estimator with depth
    inputs or band masks: :func:`seqsbi.amortized.estimator_x`, (2k,) or (3k,)).

    Returns:
        seqsbi.rounds.RoundResult of round 0 (its trainer holds the round-0 rows, and no network, the amortized
        network's copy or, bands missing, the one trained on them); its summary says which (``source``,
        ``round1_network``).

    Raises:
        ValueError: round-0 rows that are not simulations_per_round.
    """
    import torch

    from seqsbi import engines
    from seqsbi.rounds import RoundResult, Simulations, below_upper_bounds, seed_everything, train_round
    from seqsbi.seeds import round_seed

    n = settings.simulations_per_round
    if len(theta0) != n or len(flux0_njy) != n:
        raise ValueError(f"round 0 needs {n} training rows (simulations_per_round); got {len(theta0)} theta and "
                         f"{len(flux0_njy)} flux rows")
    theta0 = below_upper_bounds(theta0, settings.prior.high)
    x0 = round_zero_x(settings, observation.name, flux0_njy)
    bands = settings.simulator_settings.get("bands")
    if bands is not None and len(bands) < len(settings.simulator_settings["filters"]) and (
            amortized_x is None or not np.all(np.isfinite(amortized_x))):
        logger.info("%s: bands %s only; round 0 trains on the amortized training rows without the others",
                    observation.name, bands)
        result = train_round(settings, observation, 0, None, Simulations(theta0, x0, {}))
        result.summary.update(source=TRAINED_SOURCE, round1_network="round 0's, continued", new_simulations=0,
                              proposal="prior",
                              training_simulations=len(result.inference.get_simulations()[0]))
        return result
    seed = round_seed(settings.seed, settings.name, observation.name, 0)
    seed_everything(seed)
    inference = round_zero_trainer(settings, theta0, x0, seed)
    if warm_start:  # a copy: every galaxy continues the same amortized network, none the one before it
        inference._neural_net = copy.deepcopy(amortized_posterior.posterior_estimator)
    condition = observation.x_o if amortized_x is None else amortized_x
    posterior = amortized_posterior.set_default_x(torch.as_tensor(condition, dtype=torch.float32)[None, :])
    start = time.perf_counter()
    samples = engines.draw(posterior, settings.posterior_samples, settings) if samples is None else np.asarray(
        samples, dtype=float)
    summary = {"run": settings.name, "observation": observation.name, "round": 0, "engine": settings.engine,
               "source": AMORTIZED_SOURCE, "round1_network": "amortized, continued" if warm_start else "new",
               "simulations_this_round": n, "simulations_total": n, "new_simulations": 0,
               "epochs": 0, "posterior_mean": samples.mean(axis=0).tolist(),
               "posterior_std": samples.std(axis=0).tolist(), "timings": {"sample_s": time.perf_counter() - start}}
    # The network behind round 0 is the amortized one (estimator.pt of a run's round 0 holds it).
    return RoundResult(0, theta0, x0, inference, posterior.posterior_estimator, posterior, samples, [], summary)


def round_zero_trainer(settings: RunSettings, theta0: np.ndarray, x0: np.ndarray, seed: int) -> Any:
    """A new sbi trainer of ``settings``' engine holding round 0's simulations (theta0 (n, d), x0 (n, k)),
    recorded as drawn from the prior, with no network yet: round 1's training builds it. A run's round 1 makes
    it again from round 0's simulations.npz (a trainer saved before its network exists cannot build one
    after loading: sbi does not pickle the network builder). ``seed``: round 0's (:func:`seqsbi.seeds.round_seed`),
    which seeds the dequantization of censored features (``training.dequantize_censored``)."""
    from seqsbi import censoring, engines
    from seqsbi.seeds import dequantization_seed

    inference = engines.new_inference(settings, engines.make_prior(settings.prior, settings.device),
                                      show_progress_bars=False)
    engines.append_round(inference, settings, theta0, censoring.training_x(settings, x0, dequantization_seed(seed)),
                         None, 0)
    return inference


def refine_galaxy(settings: RunSettings, galaxy: str, x_o: np.ndarray, error_njy: np.ndarray,
                  amortized_posterior: Any, amortized_samples: np.ndarray, theta0: np.ndarray,
                  flux0_njy: np.ndarray, warm_start: bool = False, amortized_x: np.ndarray | None = None
                  ) -> Refinement:
    """Rounds 1..rounds-1 of ``settings`` for one galaxy, round 0 being the amortized estimator.

    A galaxy with missing bands (NaN in ``x_o`` and ``error_njy``) is fitted without them: its simulations
    (round 0's re-noised rows included) have only its bands. Round 0 is the amortized posterior at
    ``amortized_x`` when that is finite (an estimator with band masks); otherwise (the estimator needs every
    band) round 0 trains the engine on those re-noised training rows (still no new simulations).

    Args:
        settings: the refinement run (:func:`refinement_settings`).
        galaxy: the galaxy's id (seeds and logs).
        x_o: (k,) the galaxy's features, NaN for a missing band.
        error_njy: (n_filters,) its 1-sigma flux errors, nJy, NaN for a missing band.
        amortized_posterior: the amortized sbi DirectPosterior (no default x; bounded to the prior).
        amortized_samples: (S, d) its samples at x_o (the catalogue's).
        theta0, flux0_njy: (n, d), (n, n_filters) round 0's rows: the estimator's training theta and noise-free
            fluxes (n = simulations_per_round).
        warm_start: round 1 continues the amortized network (:func:`warm_start`; not for missing bands).
        amortized_x: what the amortized estimator conditions on, when not x_o (depth inputs or band masks: (2k,)
            or (3k,), from :func:`seqsbi.amortized.estimator_x`); the rounds after it see x_o's bands only.

    Raises:
        ValueError: round-0 rows that are not simulations_per_round, or shapes that do not match.
    """
    from seqsbi import engines
    from seqsbi.observations import Observation
    from seqsbi.rounds import Simulations, propose, simulate_chunk, train_round

    start = time.perf_counter()
    own = galaxy_settings(settings, error_njy)
    present = np.isfinite(np.asarray(error_njy, dtype=float))
    observation = Observation(name=galaxy, x_o=np.asarray(x_o, dtype=float)[present])
    previous = amortized_round_zero(own, observation, amortized_posterior, theta0, flux0_njy,
                                    amortized_samples if np.all(np.isfinite(amortized_samples)) else None,
                                    warm_start and present.all(),
                                    amortized_x)
    rounds = [previous.summary]
    amortized_net = warm_start and bool(present.all())
    n = settings.simulations_per_round
    for index in range(1, settings.rounds):
        proposal_start = time.perf_counter()
        theta = propose(own, galaxy, index, previous)
        proposal_s = time.perf_counter() - proposal_start
        simulate_start = time.perf_counter()
        _, x = simulate_chunk(own, galaxy, index, theta, 0, 1)
        simulations = Simulations(theta, x, {"proposal_s": proposal_s,
                                             "simulate_s": time.perf_counter() - simulate_start})
        previous = train_round(own, observation, index, previous, simulations)
        # the simulations it trained on: every round's, without round 0's with training.discard_prior_samples
        trained_on = len(previous.inference.get_simulations(
            starting_round=int(bool(own.training.get("discard_prior_samples"))))[0])
        amortized = index == 1 and rounds[0]["source"] == AMORTIZED_SOURCE
        rounds.append({**previous.summary, "new_simulations": n, "training_simulations": trained_on,
                       "proposal": engines.ENGINES[own.engine].proposal + (" (amortized estimator at x_o)"
                                                                           if amortized else "")})
        if amortized_net:  # what trained, not the run's density_estimator
            rounds[-1].update(density_estimator="amortized network, continued", constrain_to_prior=True)
        logger.info("galaxy %s round %d: %d epochs, %.1f s; posterior mean %s", galaxy, index,
                    previous.summary["epochs"], sum(previous.summary["timings"].values()),
                    np.round(previous.samples.mean(axis=0), 3).tolist())
    return Refinement(galaxy, previous.samples, rounds, time.perf_counter() - start,
                      method_name(settings, amortized_net))


def method_name(settings: RunSettings, warm_start: bool = False) -> str:
    """What a refined galaxy's ``method`` column says: the engine, its network and the rounds after the
    amortized round 0."""
    network = "continuing the amortized network" if warm_start else settings.density_estimator
    return (f"{settings.engine} ({network}), {settings.rounds - 1} round(s) of "
            f"{settings.simulations_per_round} simulations after the amortized estimator as round 0")


# --- the merged catalogue ---------------------------------------------------------------------------------------

#: Galaxies copied from the amortized samples to the merged HDF5 at a time.
_MERGE_ROWS = 1024


def merge_refinements(table_path: str, samples_path: str, batch_paths: list[str], block: dict, catalogue: str,
                      outputs: dict[str, str]) -> dict[str, int]:
    """Write a refined catalogue's merged samples (HDF5, as the amortized one) and summary table (FITS, CSV).

    Every galaxy keeps its amortized row, except that a refined galaxy's samples, percentile columns and
    ``method`` are its refinement's. Two columns say what happened: ``refined`` (bool) and ``refine_note``
    ("refined for <flags>" or "flagged (<flags>), not refined: beyond refine.max_galaxies = N"; "" otherwise).
    The flag columns stay those of the amortized posterior (what sent the galaxy to refinement).

    Raises:
        ArtifactError: batch files whose galaxies are not the ones the summary table flags (stale files).
    """
    import h5py
    from astropy.table import Table

    from seqsbi import artifacts
    from seqsbi.catalogue_table import PERCENTILES, summary_table, write_samples_in_parts, write_table

    table = Table.read(table_path, format="fits")
    flags = np.asarray(table["flags"]).astype(str)
    rows, beyond = selection(flags, block["refine"])
    refined_rows, refined_samples, methods = [], [], []
    for path in batch_paths:
        part = artifacts.read_npz(path, required=("rows", "ids", "samples", "method"))
        refined_rows.append(part["rows"].astype(int))
        refined_samples.append(part["samples"])
        # one method per galaxy (a galaxy with missing bands cannot continue the amortized network)
        methods.extend(np.broadcast_to(np.atleast_1d(part["method"]).astype(str), part["rows"].shape).tolist())
    found = np.concatenate(refined_rows) if refined_rows else np.empty(0, dtype=int)
    if not np.array_equal(found, rows):
        raise ArtifactError(f"catalogue {catalogue!r}: the refined batches hold rows {found.tolist()[:10]}... but "
                            f"the summary table flags rows {rows.tolist()[:10]}... for refinement; delete "
                            f"{', '.join(batch_paths) or 'the refined batches'} and run snakemake again")
    names, units = table.meta["PARAMS"].split(","), table.meta["UNITS"].split(",")
    samples_by_row = dict(zip(found.tolist(), np.concatenate(refined_samples) if refined_samples else []))
    method = "; ".join(dict.fromkeys(methods))  # each distinct method once, in order
    if len(found):
        refined_table = summary_table(table["id"][found], np.stack([samples_by_row[r] for r in found.tolist()]),
                                      tuple(names), tuple(units), methods[0], {}, flags[found])
        for name in names:
            for suffix in PERCENTILES:
                table[f"{name}_{suffix}"][found] = refined_table[f"{name}_{suffix}"]
    method_column = np.asarray(table["method"]).astype(str).astype(object)
    method_column[found] = methods
    table["method"] = method_column.astype(str)
    table["refined"] = np.isin(np.arange(len(table)), found)
    note = np.full(len(table), "", dtype=object)
    for row in found:
        note[row] = f"refined for {flags[row]}"
    for row in beyond:
        note[row] = (f"flagged ({flags[row]}), not refined: beyond refine.max_galaxies = "
                     f"{block['refine']['max_galaxies']}")
    table["refine_note"] = note.astype(str)
    write_table(table, outputs["fits"])
    write_table(table, outputs["csv"])

    with h5py.File(samples_path) as hf:
        amortized_method = str(hf.attrs["method"])

        def parts():
            for start in range(0, hf["samples"].shape[0], _MERGE_ROWS):
                stop = min(start + _MERGE_ROWS, hf["samples"].shape[0])
                samples = hf["samples"][start:stop]
                for row in found[(found >= start) & (found < stop)]:
                    samples[row - start] = samples_by_row[int(row)]
                yield hf["ids"].asstr()[start:stop], samples, hf["x"][start:stop] if "x" in hf else None

        merged_method = amortized_method + (f"; flagged galaxies refined: {method}" if method else "")
        write_samples_in_parts(outputs["samples"], parts(), tuple(names), tuple(units), merged_method)
    return {"galaxies": len(table), "refined": len(found), "not_refined": len(beyond)}
