"""Amortized NPE for catalogues: a training set from the prior, one network for every galaxy, batched sampling.

One ``amortized.<name>`` config block describes an estimator: the simulator and prior (as a run's), the flow
(zuko, always bounded to the prior box by a probit map, seqsbi.bounding, so its samples need no rejection),
the training set (simulated from the prior in seeded blocks that scatter over chunk jobs, or a model library's
features), and the held-out share. Sampling conditions the flow on a whole batch of x at once: one pass per
flow layer for a coupling flow, whatever the number of galaxies (benchmarks/catalogue_throughput.py measures it).

Parse-time parts (settings, block seeds, splits) are numpy only; torch and sbi are imported by the functions
that train or sample.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from seqsbi import censoring, diagnostics, engines, scatter
from seqsbi.errors import ConfigError
from seqsbi.priors import ParameterSpace
from seqsbi.seeds import block_seed, round_seed, training_seed

if TYPE_CHECKING:
    from seqsbi.config import RunSettings
    from seqsbi.simulators.galaxy.features import FluxNoise

logger = logging.getLogger("seqsbi.amortized")

#: Flows an amortized estimator may use: sbi's zuko builders that take a map of the prior box
#: (z_score_theta="transform_to_unconstrained"; seqsbi.bounding swaps its logit for a probit map). nice is an
#: affine coupling flow; maf and nsf are autoregressive unless ``coupling: true`` (zuko's passes=2: one network
#: pass per layer to sample).
AMORTIZED_ESTIMATORS = ("nice", "nsf", "maf")
#: The "observation" name that seeds an amortized estimator's training blocks (seqsbi.seeds.round_seed).
_SEED_TAG = "amortized"


def settings_for(name: str, block: dict, galaxy: dict) -> RunSettings:
    """:class:`RunSettings` of amortized estimator ``name`` from its validated (defaults-filled) config block.

    The estimator is an NPE run of one round (engine NPE, bounded to the prior), so seqsbi's own
    network builder (:func:`seqsbi.engines.network_builder`) and simulators serve it unchanged.

    Raises:
        ConfigError: naming ``amortized.<name>.<key>`` (a prior that does not fit the galaxy library, a
            training set too small for the held-out split and sbi's validation split).
    """
    from seqsbi.config import RunSettings
    from seqsbi.simulators.galaxy import config as galaxy_config

    key = f"amortized.{name}"
    run = galaxy_config.resolve_galaxy_run(key, {"simulator": block["simulator"],
                                                 "simulator_settings": dict(block["simulator_settings"]),
                                                 "prior": block["prior"]}, galaxy)
    problem = censoring.check_settings(key, "NPE", block)
    if problem is not None:
        raise ConfigError(problem)
    network = dict(block["network"])
    coupling = network.pop("coupling")
    if coupling and block["density_estimator"] != "nice":
        network["passes"] = 2  # zuko: coupling instead of autoregressive transforms
    settings = RunSettings(
        name=name, simulator_name=run["simulator"], simulator_settings=dict(run["simulator_settings"]),
        prior=ParameterSpace.from_config(run["prior"], key=f"{key}.prior"), engine="NPE",
        density_estimator=block["density_estimator"], constrain_to_prior=True, network=network, rounds=1,
        simulations_per_round=block["simulations"] if block["simulations"] != "auto" else auto_simulations(block)[0],
        simulation_block_size=block["simulation_block_size"],
        simulation_chunks=block["simulation_chunks"], posterior_samples=1000, seed=block["seed"],
        device=block["device"], training=dict(block["training"]), mcmc={}, truncation={},
        depth_inputs=_depth_inputs(key, block, run), missing_bands=_missing_bands(key, block, run), bounding="probit",
    )
    if block["source"] == "library" and (settings.prior.fixed or not settings.prior.is_box):
        raise ConfigError(f"{key}.prior: a library training set is drawn from the library's own (uniform) sampling "
                          f"with every parameter varying; fixed parameters and non-uniform priors need "
                          f"source: simulate")
    if block["source"] == "simulate":
        blocks = scatter.block_count(settings.simulations_per_round, settings.simulation_block_size)
        if settings.simulation_chunks > blocks:
            raise ConfigError(f"{key}.simulation_chunks: {settings.simulation_chunks} chunks but the training set has "
                              f"only {blocks} block(s) of simulation_block_size={settings.simulation_block_size}; "
                              f"use at most {blocks} chunks or a smaller simulation_block_size")
    n = settings.simulations_per_round if block["source"] == "simulate" else galaxy_config.library_size(galaxy)
    n_train = n - held_out_count(n, block["test_fraction"])
    n_fit = int((1 - settings.training["validation_fraction"]) * n_train)
    if n_fit < 2 or n_train - n_fit < 1 or held_out_count(n, block["test_fraction"]) < 2:
        raise ConfigError(f"{key}: {n} training simulations leave {n - n_train} held out (test_fraction "
                          f"{block['test_fraction']:g}), {n_fit} to fit and {n_train - n_fit} to validate; each needs "
                          f"at least 2 (1 to validate): raise {key}.simulations or use a larger library")
    return settings


#: 5-sigma depths (AB) a training_depth_range_ab may span: from shallower than any imaging survey (2MASS reaches
#: ~17 AB) to deeper than any (the Hubble Ultra Deep Field's 5-sigma point-source depth is ~30-31 AB).
DEPTH_RANGE_LIMITS_AB = (10.0, 40.0)


#: Amortized keys whose default, ``auto``, is resolved at parse time from the catalogues an estimator serves
#: (:func:`seqsbi.catalogue_config.resolve_auto_inputs`); jobs get the resolved value.
AUTO_KEYS = ("training_depth_range_ab", "training_missing_bands")

#: ``simulations: auto``: the training-set size for a network on the features alone, and for one that also takes
#: depth inputs or band masks (benchmarks/README.md, "Training-set size": on the 4,000-row mixed-depth mock the
#: latter's 68% coverage reached 0.726-0.739 in some parameter in each of 7 trainings at 20,000; at 50,000 behind
#: the probit map 0.662-0.712 in 3; the features alone calibrate at 20,000 on the 10,024-row one-depth mock).
AUTO_SIMULATIONS = (20000, 50000)


def auto_simulations(block: dict) -> tuple[int, str]:
    """What ``simulations: auto`` is for an amortized block, with the reason (AUTO_SIMULATIONS). While its
    ``training_depth_range_ab`` or ``training_missing_bands`` is still ``auto`` (parse-time checks before they are
    resolved), the larger size, so a check passes that the resolved block may pass; checked again once resolved."""
    extra = [key for key in AUTO_KEYS if block.get(key) is not None]
    if block.get("source") == "library":
        return AUTO_SIMULATIONS[0], "unused: the training set is the library's rows (source: library)"
    if not extra:
        return AUTO_SIMULATIONS[0], "the network takes the features alone"
    return AUTO_SIMULATIONS[1], f"the network also takes {' and '.join(extra)}"


def _depth_inputs(key: str, block: dict, run: dict) -> tuple[float, float] | None:
    """``training_depth_range_ab`` as (bright, faint) AB, checked; None when unset (or ``auto`` left unresolved:
    no catalogue was read, as in a job whose params carry the resolved null).

    Raises:
        ConfigError: naming ``<key>.training_depth_range_ab``: a range not bright < faint, a simulator other than
            the galaxy model, no ``galaxy.features.noise`` (its ``max_snr`` floor is part of the noise model), or
            ``source: library`` (the library's features have one depth).
    """
    depths = block.get("training_depth_range_ab")
    if depths is None or depths == "auto":
        return None
    where = f"{key}.training_depth_range_ab"
    bright, faint = (float(d) for d in depths)
    low, high = DEPTH_RANGE_LIMITS_AB
    if not (np.isfinite(bright) and np.isfinite(faint) and low <= bright < faint <= high):
        raise ConfigError(f"{where}: {list(depths)}; give [bright, faint] 5-sigma depths in AB with bright < faint, "
                          f"both within {low:g}-{high:g} AB, e.g. [27.0, 30.0]")
    _check_simulated_galaxy_noise(where, block, run, "depths", "its max_snr floor applies on top of the drawn depths",
                                  "a library's features were made at one depth")
    return bright, faint


def _check_simulated_galaxy_noise(where: str, block: dict, run: dict, what: str, noise_why: str,
                                  library_why: str) -> None:
    """What depth inputs and band masks both need: the galaxy simulator, galaxy.features.noise and source: simulate;
    ConfigError naming ``where``, why (``noise_why``, ``library_why``) and the fix otherwise."""
    if run["simulator"] != "galaxy":
        raise ConfigError(f"{where}: {what} are galaxy photometry; simulator {run['simulator']!r} has none (drop it)")
    if run["simulator_settings"].get("noise") is None:
        raise ConfigError(f"{where}: needs galaxy.features.noise (null now): {noise_why}; set galaxy.features.noise "
                          f"or drop {where}")
    if block["source"] != "simulate":
        raise ConfigError(f"{where}: needs source: simulate ({library_why}): set source: simulate or {where}: null")


def _missing_bands(key: str, block: dict, run: dict) -> tuple[float, int] | None:
    """``training_missing_bands`` as (share, max_bands), checked; None when unset (or ``auto`` unresolved).

    Raises:
        ConfigError: naming ``<key>.training_missing_bands``: a simulator other than the galaxy model, no
            ``galaxy.features.noise`` (a missing band's stand-in feature is that of zero flux at the training
            depth), ``source: library``, or max_bands not fewer than the filters.
    """
    missing = block.get("training_missing_bands")
    if missing is None or missing == "auto":
        return None
    where = f"{key}.training_missing_bands"
    _check_simulated_galaxy_noise(where, block, run, "bands",
                                  "a missing band's stand-in is the feature of zero flux at the training depth",
                                  "a library's features have every band")
    n_filters = len(run["simulator_settings"]["filters"])
    if missing["max_bands"] >= n_filters:
        raise ConfigError(f"{where}.max_bands: {missing['max_bands']}, but there are {n_filters} filters; a "
                          f"simulation needs at least one band: use at most {n_filters - 1}")
    return float(missing["share"]), int(missing["max_bands"])


def complete_block(name: str, block: dict) -> dict:
    """An amortized block with the schema's defaults filled for missing keys (a job's params carry only the
    keys its output depends on; the rest does not change what it computes), and ``auto`` (AUTO_KEYS) as null:
    a job's params hold the value resolved at parse time, left out when null."""
    from seqsbi.config import validate_config

    filled = validate_config({"amortized": {name: dict(block)}})["amortized"][name]
    for key in AUTO_KEYS:  # params carry resolved values; a resolved null is left out and filled back as auto
        if filled[key] == "auto":
            filled[key] = None
    return filled


def held_out_count(n: int, test_fraction: float) -> int:
    """Rows of an n-row training set held out for calibration and tests: round(test_fraction * n)."""
    return int(round(test_fraction * n))


def base_seed(settings: RunSettings) -> int:
    """The seed every training block's and the split's seeds derive from: (seed, name, "amortized", 0)."""
    return round_seed(settings.seed, settings.name, _SEED_TAG, 0)


def simulate_training_blocks(settings: RunSettings, rows: slice
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """theta (n, d) drawn from the prior, x (n, k) simulated for training-set ``rows`` (whole blocks) and, for
    the galaxy model, the noise-free fluxes (n, n_filters) nJy behind x (None for other simulators): a
    refinement re-noises them with one galaxy's own errors (seqsbi.refine).

    Block b draws its theta uniformly in the prior box and its noise from one Generator seeded with
    ``block_seed(base_seed, b)``: the training set is the same whichever chunk job simulates a block.
    The galaxy model's x is the simulator's own (:func:`seqsbi.simulators.galaxy.simulator.galaxy`: fluxes,
    then noise and features from the same Generator); with depth inputs (``training_depth_range_ab``) each row's
    per-band depths are drawn first (:func:`training_noise`) and x is :func:`estimator_x` of its features (n, 2
    n_filters); with band masks (``training_missing_bands``) each row then loses bands (:func:`training_band_mask`)
    and x is :func:`estimator_x` of what is left, its mask included. numpy only (no torch), so chunk jobs start
    fast.
    """
    size, prior = settings.simulation_block_size, settings.prior
    if rows.start % size:
        raise ValueError(f"row {rows.start} does not start a block of {size} simulations")
    seed = base_seed(settings)
    galaxy = settings.simulator_name == "galaxy"
    if galaxy:
        from seqsbi.simulators.galaxy.features import simulate_features
        from seqsbi.simulators.galaxy.simulator import features_from_flux

        fluxes, configured = galaxy_flux_simulator(settings), settings.simulator_settings
    else:
        simulator = settings.simulator()
    thetas, xs, flux_blocks = [], [], []
    start = time.perf_counter()
    for first in range(rows.start, rows.stop, size):
        rng = np.random.default_rng(block_seed(seed, first // size))
        n = min(size, rows.stop - first)
        theta = prior.draw(n, rng)  # the prior itself (uniform: low + u (high - low), as before)
        thetas.append(theta)
        if galaxy and (settings.depth_inputs is not None or settings.missing_bands is not None):
            flux_blocks.append(fluxes(theta, rng))
            noise = training_noise(settings, n, rng)
            features = simulate_features(flux_blocks[-1], configured["features"], noise, rng,
                                         _flux_scale(configured))
            sigma = np.array(np.broadcast_to(noise.sigma_njy, features.shape))
            if settings.missing_bands is not None:
                mask = training_band_mask(settings, n, rng)
                features[mask], sigma[mask] = np.nan, np.nan
            xs.append(estimator_x(settings, features, sigma))
        elif galaxy:
            flux_blocks.append(fluxes(theta, rng))
            xs.append(features_from_flux(flux_blocks[-1], rng, len(configured["filters"]), configured["features"],
                                         configured.get("noise"), flux_scale_njy=configured.get("flux_scale_njy")))
        else:
            xs.append(simulator(theta, rng))
    theta = np.concatenate(thetas) if thetas else np.empty((0, prior.dim))
    x = np.concatenate(xs) if xs else np.empty((0, 0))
    flux = (np.concatenate(flux_blocks) if flux_blocks else np.empty((0, 0))) if galaxy else None
    logger.info("simulated %d training rows (%d..%d) in %.1f s", len(theta), rows.start, rows.stop,
                time.perf_counter() - start)
    return theta, x, flux


def training_noise(settings: RunSettings, n: int, rng: np.random.Generator) -> FluxNoise:
    """The flux noise of n training simulations of a galaxy estimator: the configured depth
    (``galaxy.features.noise``) for every row or, with depth inputs (``settings.depth_inputs`` = (bright, faint)
    AB), a 5-sigma depth drawn uniformly in that range for each row and band (``sigma_njy`` (n, n_filters) nJy);
    ``max_snr`` from the configured noise either way. Draws n x n_filters uniforms from ``rng`` with depth inputs,
    nothing otherwise.

    Raises:
        ValueError: a simulator without noise (``galaxy.features.noise`` null).
    """
    from seqsbi.simulators.galaxy.features import FluxNoise
    from seqsbi.units import sigma_from_depth

    configured = settings.simulator_settings.get("noise")
    n_filters = len(settings.simulator_settings["filters"])
    if configured is None:
        raise ValueError(f"estimator {settings.name}: no training noise (galaxy.features.noise is null)")
    if settings.depth_inputs is None:
        return FluxNoise.from_config(configured, n_filters)
    depths = rng.uniform(settings.depth_inputs[0], settings.depth_inputs[1], size=(n, n_filters))
    return FluxNoise(np.asarray(sigma_from_depth(depths, 5), dtype=float), configured.get("max_snr"))


def training_band_mask(settings: RunSettings, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_filters) True where a training row's band is dropped (``settings.missing_bands`` = (share, max_bands)):
    each row loses bands with probability share, then 1 to max_bands of them (uniform), which ones uniform.
    Its draws vary in number, so a training block draws it last (nothing after it in that block's stream)."""
    share, max_bands = settings.missing_bands
    n_filters = len(settings.simulator_settings["filters"])
    dropped = rng.uniform(size=n) < share
    count = np.where(dropped, rng.integers(1, max_bands + 1, size=n), 0)
    order = np.argsort(rng.uniform(size=(n, n_filters)), axis=1)  # a random permutation of the bands per row
    return np.argsort(order, axis=1) < count[:, None]


def missing_band_fill(settings: RunSettings) -> tuple[np.ndarray, np.ndarray]:
    """What stands in for a missing band in :func:`estimator_x` with band masks: (features (n_filters,), 5-sigma
    depths (n_filters,) AB): the feature of zero flux at the training depth (the configured depth, or the middle of
    ``training_depth_range_ab``), and that depth, so the stand-ins sit inside the features' range (sbi z-scores x)
    and the mask columns alone say the band is missing."""
    from seqsbi.simulators.galaxy.features import LUPTON_SOFTENING_PER_SIGMA, to_features
    from seqsbi.units import njy_to_ab, sigma_from_depth

    configured = settings.simulator_settings
    n_filters = len(configured["filters"])
    if settings.depth_inputs is None:
        depth = np.broadcast_to(np.asarray(configured["noise"]["depth_5sigma_ab"], dtype=float), (n_filters,))
    else:
        depth = np.full(n_filters, 0.5 * (settings.depth_inputs[0] + settings.depth_inputs[1]))
    sigma = np.asarray(sigma_from_depth(depth, 5), dtype=float)[None, :]
    features = to_features(np.zeros_like(sigma), configured["features"], sigma,
                           softening_njy=LUPTON_SOFTENING_PER_SIGMA * sigma, flux_scale_njy=_flux_scale(configured))
    return features[0], np.asarray(njy_to_ab(5 * sigma[0]), dtype=float)


def estimator_x(settings: RunSettings, features: np.ndarray, sigma_njy: np.ndarray) -> np.ndarray:
    """What the estimator conditions on for rows with features (n, k) and per-band 1-sigma flux errors (n, k) nJy
    (a missing band: NaN error):

    - the features alone (n, k), a missing band's NaN kept (no amortized posterior for that row);
    - with depth inputs (``training_depth_range_ab``), each band's 5-sigma depth in AB beside them, (n, 2k):
      [features, 31.4 - 2.5 log10(5 sigma)] (:func:`seqsbi.units.njy_to_ab`). The errors are the observation's
      own, before the ``max_snr`` floor (the training rows' drawn depths are too);
    - with band masks (``training_missing_bands``), then a mask column per band, 1 where it is missing (n, 2k, or
      3k with depth inputs): a missing band's feature and depth are :func:`missing_band_fill`'s stand-ins. A row
      missing more bands than the estimator was trained for (``max_bands``) or with every band missing stays NaN.
    """
    from seqsbi.units import njy_to_ab

    features = np.array(features, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma_njy, dtype=float), features.shape)
    if settings.depth_inputs is None and settings.missing_bands is None:
        return features
    parts = [features]
    if settings.depth_inputs is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            depths = njy_to_ab(5 * sigma)
        parts.append(np.where(np.isfinite(depths), depths, np.nan))
    if settings.missing_bands is None:
        return np.hstack(parts)
    missing = ~np.isfinite(sigma)
    fill_features, fill_depths = missing_band_fill(settings)
    for part, fill in zip(parts, (fill_features, fill_depths)):
        part[missing] = np.broadcast_to(fill, part.shape)[missing]
    x = np.hstack([*parts, missing.astype(float)])
    x[missing.sum(axis=1) > settings.missing_bands[1]] = np.nan  # not trained for: refined without those bands
    return x


def _flux_scale(configured: dict) -> np.ndarray | None:
    """``flux_scale_njy`` of galaxy simulator settings as (n_filters,), or None."""
    scale = configured.get("flux_scale_njy")
    return None if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), (len(configured["filters"]),))


def split_rows(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of an n-row set: a seeded permutation, both sorted."""
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(n)
    n_test = held_out_count(n, test_fraction)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


# --- out-of-distribution score --------------------------------------------------------------------------------


def held_out_p_value(held_out_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n,) share of held-out rows scoring at least as high as each of ``scores`` (n,), counted as a Monte Carlo
    test's p-value, (1 + count) / (1 + m) (Davison & Hinkley 1997, section 4.2): never 0, uniform for rows drawn
    like the held-out ones. ``held_out_scores`` (m,) sorted ascending."""
    beyond = len(held_out_scores) - np.searchsorted(held_out_scores, scores, side="left")
    return (1 + beyond) / (1 + len(held_out_scores))


@dataclass
class OODScore:
    """Distance of x to its ``neighbours``-th nearest training feature vector, in features z-scored by the
    training set, calibrated on the held-out split: ``p_value(x)`` is the share of held-out rows at least
    that far from the training set ((1 + count) / (1 + n_held_out), so never 0). A small p-value: x lies
    where the training set (the prior predictive) has no support, and the network extrapolates.

    Attributes:
        mean, std: (k,) z-scoring of the features (training set's).
        training_x: (n, k) z-scored training features (the k-d tree is built from them on demand).
        held_out_distances: (m,) sorted distances of the held-out rows.
    """

    mean: np.ndarray
    std: np.ndarray
    training_x: np.ndarray
    held_out_distances: np.ndarray
    neighbours: int
    _tree: Any = field(default=None, repr=False)

    @classmethod
    def calibrate(cls, training_x: np.ndarray, held_out_x: np.ndarray, neighbours: int) -> OODScore:
        finite = np.all(np.isfinite(training_x), axis=1)
        mean, std = training_x[finite].mean(axis=0), training_x[finite].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        score = cls(mean, std, (training_x[finite] - mean) / std, np.empty(0), neighbours)
        score.held_out_distances = np.sort(score.distance(held_out_x))
        return score

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(n,) distances of x (n, k) to their ``neighbours``-th nearest training row (z-scored units)."""
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._tree = cKDTree(self.training_x)
        k = min(self.neighbours, len(self.training_x))
        distances, _ = self._tree.query((np.asarray(x, dtype=float) - self.mean) / self.std, k=[k])
        return distances[:, 0]

    def p_value(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distances (n,), p-values (n,)) of x (n, k)."""
        distance = self.distance(x)
        return distance, held_out_p_value(self.held_out_distances, distance)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ood_mean": self.mean, "ood_std": self.std, "ood_training_x": self.training_x,
                "ood_held_out_distances": self.held_out_distances, "ood_neighbours": np.array(self.neighbours)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> OODScore:
        return cls(arrays["ood_mean"], arrays["ood_std"], arrays["ood_training_x"], arrays["ood_held_out_distances"],
                   int(arrays["ood_neighbours"]))


# --- model-fit score --------------------------------------------------------------------------------------------

#: Name of the galaxy model's amplitude parameter: every flux scales as 10^log_mass (the SED is per unit mass
#: formed; seqsbi.simulators.galaxy.batched multiplies by it), so the fit score fits it as a free amplitude.
AMPLITUDE_PARAMETER = "log_mass"
#: Spawn key of the noise drawn for the held-out rows that calibrate the model-fit score.
_FIT_SEED_KEY = 2**31 - 3
#: Elements (galaxies x training rows) of one block of the model-fit score: ~64 MB of float64 per array.
_FIT_BLOCK_ELEMENTS = 8_000_000


@dataclass
class ModelFitScore:
    """How well the best model of the training set fits a galaxy's fluxes: a chi^2 in flux space, calibrated on
    the held-out split.

    For fluxes f (k,) in nJy with 1-sigma errors s (k,), the score is the smallest over training rows j of
    chi^2_j = sum_b (f_b - a_j m_jb)^2 / (s_b^2 + (e max(f_b, 0))^2), with m_j the row's noise-free model fluxes
    (k,), a_j the least-squares amplitude (the galaxy model's ``log_mass`` moves every flux by 10^log_mass; a_j is
    clipped so that the row's log_mass stays inside the prior, which for a chi^2 quadratic in a_j is the
    constrained optimum; 1 without that parameter) and e the fractional ``error_floor`` (added in quadrature: the
    usual allowance for model and calibration systematics, which also keeps a finite training set from failing
    bright galaxies whose errors are tiny). Missing bands (NaN f) are left out of the sum. ``p_value`` is the share
    of held-out simulations (their noise-free fluxes with the estimator's configured noise) whose score, over the
    same bands, is at least as high: (1 + count) / (1 + m) as the OOD score's, so held-out rows score uniformly,
    and a galaxy with bands missing is compared with the held-out rows scored without those bands. A small
    p-value: no galaxy the training set holds makes photometry like this one within its errors plus the floor (a
    star, a band off by magnitudes, a spectrum the model cannot make), whatever the network says. Unlike the OOD
    distance (feature-space neighbours) and the ``ppc`` (scaled by the predictive spread, which a broad posterior
    widens), it is a fit, so a broad posterior cannot hide a misfit.

    Attributes:
        model_njy: (N, k) noise-free training fluxes in nJy.
        amplitude_low, amplitude_high: (N,) allowed amplitude per row (1, 1 when there is no amplitude parameter).
        error_floor: e, a fraction of the flux.
        held_out_flux_njy, held_out_sigma_njy: (m, k) held-out noisy fluxes and their 1-sigma errors in nJy.
    """

    model_njy: np.ndarray
    amplitude_low: np.ndarray
    amplitude_high: np.ndarray
    error_floor: float
    held_out_flux_njy: np.ndarray
    held_out_sigma_njy: np.ndarray
    _calibration: dict[tuple[bool, ...], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def calibrate(cls, model_njy: np.ndarray, theta: np.ndarray, prior: ParameterSpace, error_floor: float,
                  held_out_flux_njy: np.ndarray, held_out_sigma_njy: np.ndarray) -> ModelFitScore:
        """From the training rows' fluxes (N, k) nJy and parameters ``theta`` (N, d) in ``prior``'s order, and
        held-out noisy fluxes and their 1-sigma errors (m, k) nJy (scored here over every band).

        Raises:
            ValueError: shapes that disagree, non-finite training fluxes, or held-out errors that are not positive.
        """
        model_njy, theta = np.asarray(model_njy, dtype=float), np.asarray(theta, dtype=float)
        if model_njy.ndim != 2 or len(model_njy) != len(theta) or not np.all(np.isfinite(model_njy)):
            raise ValueError(f"model fit score: training fluxes {model_njy.shape} must be finite, one row per "
                             f"training theta ({len(theta)} rows)")
        held_out_flux_njy = np.asarray(held_out_flux_njy, dtype=float)
        held_out_sigma_njy = np.broadcast_to(np.asarray(held_out_sigma_njy, dtype=float), held_out_flux_njy.shape)
        if held_out_flux_njy.shape[1:] != model_njy.shape[1:] or not np.all(held_out_sigma_njy > 0):
            raise ValueError(f"model fit score: held-out fluxes {held_out_flux_njy.shape} need the training set's "
                             f"{model_njy.shape[1]} bands and positive errors (the estimator's noise)")
        if AMPLITUDE_PARAMETER in prior.names:
            j = prior.names.index(AMPLITUDE_PARAMETER)
            low, high = 10 ** (prior.low[j] - theta[:, j]), 10 ** (prior.high[j] - theta[:, j])
        else:
            low = high = np.ones(len(theta))
        score = cls(model_njy, low, high, float(error_floor), held_out_flux_njy, held_out_sigma_njy)
        score.held_out_chi2()
        return score

    def held_out_chi2(self, present: np.ndarray | None = None) -> np.ndarray:
        """(m,) sorted scores of the held-out rows over the bands ``present`` ((k,) bool; None: every band)."""
        present = np.ones(self.model_njy.shape[1], dtype=bool) if present is None else np.asarray(present, dtype=bool)
        key = tuple(present.tolist())
        if key not in self._calibration:
            flux = np.where(present, self.held_out_flux_njy, np.nan)
            self._calibration[key] = np.sort(self.chi2(flux, self.held_out_sigma_njy))
        return self._calibration[key]

    def chi2(self, flux_njy: np.ndarray, sigma_njy: np.ndarray) -> np.ndarray:
        """(n,) best chi^2 of fluxes (n, k) nJy with 1-sigma errors (n, k) over the training rows (NaN flux:
        band left out; a row with no finite flux: NaN). Matrix products over blocks of galaxies x training rows."""
        flux, sigma = np.asarray(flux_njy, dtype=float), np.asarray(sigma_njy, dtype=float)
        present = np.isfinite(flux) & np.isfinite(sigma)
        weight = np.where(present, 1.0 / np.where(present, sigma ** 2 + (self.error_floor * np.clip(
            np.nan_to_num(flux), 0.0, None)) ** 2, 1.0), 0.0)
        flux = np.where(present, flux, 0.0)
        model_t, model2_t = self.model_njy.T, (self.model_njy ** 2).T
        best = np.full(len(flux), np.nan)
        step = max(1, _FIT_BLOCK_ELEMENTS // max(len(self.model_njy), 1))
        for start in range(0, len(flux), step):
            rows = slice(start, start + step)
            cross, norm = (flux[rows] * weight[rows]) @ model_t, weight[rows] @ model2_t  # (b, N) each
            amplitude = np.clip(cross / np.where(norm > 0, norm, 1.0), self.amplitude_low, self.amplitude_high)
            chi2 = (flux[rows] ** 2 * weight[rows]).sum(axis=1)[:, None] - 2 * amplitude * cross + amplitude ** 2 * norm
            best[rows] = np.maximum(chi2.min(axis=1), 0.0)
        best[~present.any(axis=1)] = np.nan
        return best

    def p_value(self, flux_njy: np.ndarray, sigma_njy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chi^2 (n,), p-values (n,); NaN where chi^2 is) of fluxes (n, k) nJy with 1-sigma errors (n, k), each
        row against the held-out rows scored over its own bands."""
        chi2 = self.chi2(flux_njy, sigma_njy)
        present = np.isfinite(np.asarray(flux_njy, dtype=float)) & np.isfinite(np.asarray(sigma_njy, dtype=float))
        p_value = np.full(len(chi2), np.nan)
        for pattern in np.unique(present[np.isfinite(chi2)], axis=0):
            rows = np.flatnonzero(np.all(present == pattern, axis=1) & np.isfinite(chi2))
            p_value[rows] = held_out_p_value(self.held_out_chi2(pattern), chi2[rows])
        return chi2, p_value


def galaxy_model_fit(settings: RunSettings, training: dict[str, np.ndarray], held_out_theta: np.ndarray,
                     error_floor: float, seed: int, flux_njy: np.ndarray, error_njy: np.ndarray
                     ) -> tuple[ModelFitScore, np.ndarray, np.ndarray] | None:
    """``catalogue_posteriors``' ``model_fit`` for catalogue rows of a galaxy estimator: (score, fluxes (n, k) nJy,
    their 1-sigma errors (n, k) nJy); None (no ``fit`` flag: NaN columns, logged) when the estimator's simulator
    has no noise (``galaxy.features.noise`` null), as there is nothing to calibrate the score with.

    The :class:`ModelFitScore` comes from the estimator's training set (``training``: ``theta`` (N, d) and noise-free
    ``flux`` (N, k) nJy, as ``training_set.npz`` holds them) and its held-out theta (m, d), whose fluxes are simulated
    here (batched, no noise) and given the estimator's training noise (:func:`training_noise`: the configured
    depth, or depths drawn per row and band with depth inputs) with a Generator seeded from ``seed``: the same
    calibration in every chunk job. The rows' errors are their catalogue
    errors ``error_njy`` raised to the configured ``max_snr`` floor, as their features' are
    (:func:`seqsbi.simulators.galaxy.features.noise_for_observation`).
    """
    from seqsbi.simulators.galaxy.features import noise_for_observation

    configured = settings.simulator_settings.get("noise")
    n_filters = training["flux"].shape[1]
    if configured is None:
        logger.warning("no model-fit flag: estimator %s was trained without noise (galaxy.features.noise is null), "
                       "so nothing calibrates the score; fit_chi2 and fit_p_value are NaN", settings.name)
        return None
    start = time.perf_counter()
    rng = np.random.default_rng(block_seed(seed, _FIT_SEED_KEY))
    model = galaxy_flux_simulator(settings)(held_out_theta, rng)
    held_out_flux, held_out_sigma = training_noise(settings, len(held_out_theta), rng).apply(model, rng)
    score = ModelFitScore.calibrate(training["flux"], training["theta"], settings.prior, error_floor, held_out_flux,
                                    held_out_sigma)
    logger.info("model fit calibrated on %d held-out simulations (error floor %g) in %.2f s", len(held_out_theta),
                error_floor, time.perf_counter() - start)
    flux_njy = np.asarray(flux_njy, dtype=float)
    sigma = noise_for_observation(configured, n_filters, np.asarray(error_njy, dtype=float)).sigma(np.abs(flux_njy))
    return score, flux_njy, sigma


#: |median depth offset| (mag) beyond which a catalogue row's noise counts as unlike the estimator's training noise,
#: and the share of such rows above which a catalogue's log warns (benchmarks/README.md, "The model-fit flag":
#: depths drawn across 27-30 AB against training at 29 gave redshift, log_mass and tau_v 68% coverage 0.51-0.58
#: where rows were 1-2 mag shallower, 0.61-0.67 within 0.5 mag).
DEPTH_OFFSET_WARN_MAG, DEPTH_OFFSET_WARN_SHARE = 0.5, 0.1


def catalogue_depth_range(depth_ab: np.ndarray) -> tuple[float, float]:
    """(bright, faint) 5-sigma depths (AB) of a catalogue's band depths ``depth_ab`` (any shape, NaN left out):
    their 1st and 99th percentiles rounded out to 0.5 mag (at least 0.5 mag apart), within DEPTH_RANGE_LIMITS_AB."""
    low, high = DEPTH_RANGE_LIMITS_AB
    bright = min(max(float(np.floor(2 * np.nanquantile(depth_ab, 0.01)) / 2), low), high - 0.5)
    faint = min(max(float(np.ceil(2 * np.nanquantile(depth_ab, 0.99)) / 2), bright + 0.5), high)
    return bright, faint


#: ``training_depth_range_ab: auto`` gives an estimator depth inputs when more than this share of its catalogues'
#: band depths lie over DEPTH_OFFSET_WARN_MAG from the configured depth (galaxy.features.noise).
AUTO_DEPTH_SHARE = 0.1


def auto_depth_range(settings: RunSettings, error_njy: np.ndarray) -> tuple[tuple[float, float] | None, str]:
    """What ``training_depth_range_ab: auto`` resolves to for catalogue errors ``error_njy`` (n, k) nJy (every
    catalogue the estimator serves, stacked; NaN for a missing band), with the reason as a sentence: the
    catalogues' depth range (:func:`catalogue_depth_range`) when more than AUTO_DEPTH_SHARE of their band depths lie
    over DEPTH_OFFSET_WARN_MAG from the configured depth, else None (one depth: the configured one). Where those
    percentiles go past DEPTH_RANGE_LIMITS_AB the range is clipped to the limits, and the reason says so with
    the percentiles (AB). ``settings`` must have galaxy noise (the caller checks)."""
    from seqsbi.units import njy_to_ab, sigma_from_depth

    error_njy = np.asarray(error_njy, dtype=float)
    configured = njy_to_ab(5 * np.broadcast_to(np.asarray(sigma_from_depth(np.asarray(
        settings.simulator_settings["noise"]["depth_5sigma_ab"], dtype=float), 5)), error_njy.shape[1:]))
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = njy_to_ab(5 * error_njy)
    off = np.abs(depth - configured)[np.isfinite(depth)]
    share = float(np.mean(off > DEPTH_OFFSET_WARN_MAG)) if off.size else 0.0
    if share <= AUTO_DEPTH_SHARE:
        return None, (f"{100 * share:.1f}% of the catalogues' band depths lie over {DEPTH_OFFSET_WARN_MAG:g} mag from "
                      f"galaxy.features.noise's: one depth")
    bright, faint = catalogue_depth_range(depth)
    reason = (f"{100 * share:.1f}% of the catalogues' band depths lie over {DEPTH_OFFSET_WARN_MAG:g} mag from "
              f"galaxy.features.noise's: depth inputs over their 1st-99th percentiles")
    low, high = DEPTH_RANGE_LIMITS_AB
    first, last = (float(q) for q in np.nanquantile(depth, [0.01, 0.99]))
    if first < low or last > high or first >= high:  # catalogue_depth_range clipped the range to the bounds
        reason += (f", {first:.2f} and {last:.2f} AB, which go past the accepted {low:g}-{high:g} AB and were "
                   f"clipped to them (check the catalogues' error columns and units)")
    return (bright, faint), reason


def auto_band_masks(settings: RunSettings, missing: np.ndarray) -> tuple[dict | None, str]:
    """What ``training_missing_bands: auto`` resolves to for catalogue rows' missing bands ``missing`` (n, k)
    (True: missing; every catalogue the estimator serves, stacked), with the reason: None when no row misses at
    most half the bands (:func:`takeable_missing`), else {share: BAND_MASK_SHARE, or the rows' share rounded up to
    0.05 where larger (at most 0.95), max_bands: the most bands missing in such a row} (rows missing more are
    refined)."""
    missing = np.asarray(missing, dtype=bool)
    count = missing.sum(axis=1)
    most = takeable_missing(count, missing.shape[1])
    if not most:
        return None, ("no catalogue row misses a band: none" if not count.any() else
                      "every row with bands missing misses over half of them: none (those rows are refined)")
    beyond = int((count > most).sum())
    share = _band_mask_share(count)
    return {"share": share, "max_bands": most}, (
        f"{100 * (count > 0).mean():.1f}% of the catalogues' rows miss bands: share "
        + (f"{share:g}, the default" if share == BAND_MASK_SHARE else f"{share:g}, their share rounded up")
        + f"; max_bands {most}, the most missing in a row missing at most half the bands"
        + (f" ({beyond} row(s) missing more are refined)" if beyond else ""))


def takeable_missing(count: np.ndarray, n_filters: int) -> int:
    """The most bands missing in a row (``count`` (n,) missing per row) among rows missing at most half the
    ``n_filters`` bands (at least 1): what band masks are trained for; 0 when no such row misses one."""
    count = np.asarray(count, dtype=int)
    takeable = count[(count > 0) & (count <= max(n_filters // 2, 1))]
    return int(takeable.max()) if takeable.size else 0


def galaxy_depth_offset(settings: RunSettings, error_njy: np.ndarray) -> np.ndarray:
    """(n,) median over each row's bands of (its 5-sigma depth - the estimator's training depth) in AB mag, from
    1-sigma errors (n, k) nJy (missing bands, NaN, left out; NaN without training noise). With depth inputs
    (``training_depth_range_ab``) the training depth of a band is the nearest end of that range, so rows inside it
    have 0. Negative: the galaxy is measured worse than the estimator was trained for, so its amortized posterior
    is too narrow (the estimator assumes the training noise; its refinement, if flagged, simulates the galaxy's
    own); with depth inputs, the network extrapolates. Logs a warning when more than DEPTH_OFFSET_WARN_SHARE of
    the rows are beyond DEPTH_OFFSET_WARN_MAG, naming the fix."""
    from seqsbi.simulators.galaxy.features import FluxNoise
    from seqsbi.units import njy_to_ab

    error_njy = np.asarray(error_njy, dtype=float)
    noise = FluxNoise.from_config(settings.simulator_settings.get("noise"), error_njy.shape[1])
    if noise is None or not len(error_njy):
        return np.full(len(error_njy), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row or band with every value missing: NaN
        depth = njy_to_ab(5 * error_njy)
        trained = njy_to_ab(5 * noise.sigma_njy) if settings.depth_inputs is None else np.clip(
            depth, *settings.depth_inputs)
        offset, band_depths = np.nanmedian(depth - trained, axis=1), np.nanmedian(depth, axis=0)
    beyond = np.abs(np.nan_to_num(offset)) > DEPTH_OFFSET_WARN_MAG
    if beyond.mean() <= DEPTH_OFFSET_WARN_SHARE:
        return offset
    median, depths = float(np.nanmedian(offset)), ", ".join(f"{d:.2f}" for d in band_depths)
    bright, faint = catalogue_depth_range(depth)
    if settings.depth_inputs is not None:  # widen, never narrow
        bright, faint = min(bright, settings.depth_inputs[0]), max(faint, settings.depth_inputs[1])
    head = (f"{int(beyond.sum())} of {len(offset)} galaxies ({100 * beyond.mean():.0f}%) are measured over "
            f"{DEPTH_OFFSET_WARN_MAG:.1f} mag off the depth")
    if settings.depth_inputs is None:
        logger.warning("%s estimator %s was trained for (column noise_depth_offset, median %+.2f mag: %s; median "
                       "5-sigma depths per band [%s] AB, training [%s]): its posteriors and its ood and fit p-values "
                       "assume the training noise, so these are miscalibrated (posteriors too narrow where "
                       "shallower). Give the estimator depth inputs (amortized.%s.training_depth_range_ab: [%.1f, "
                       "%.1f], each galaxy then conditioned on its own errors) or train it at the catalogue's depths "
                       "(galaxy.features.noise.depth_5sigma_ab: [%s])", head, settings.name, median,
                       "shallower" if median < 0 else "deeper", depths,
                       ", ".join(f"{d:.2f}" for d in njy_to_ab(5 * noise.sigma_njy)), settings.name, bright, faint,
                       depths)
    else:
        logger.warning("%s range estimator %s was trained over (amortized.%s.training_depth_range_ab: [%g, %g]; "
                       "column noise_depth_offset, median %+.2f mag; median 5-sigma depths per band [%s] AB): the "
                       "network extrapolates to these depths and they are likely flagged ood. Widen the range to "
                       "[%.1f, %.1f]", head, settings.name, settings.name, *settings.depth_inputs, median, depths,
                       bright, faint)
    return offset


#: The training share of rows with bands missing that advise_band_masks suggests: on a 4,000-row mock with 19.2%
#: of rows missing 1-2 bands, share 0.5 kept the 68% coverage of those rows within 0.67-0.74 with either network
#: measured, share 0.2 did not (0.61-0.70 with 128 x 3; benchmarks/README.md, "Band masks").
BAND_MASK_SHARE = 0.5


def _band_mask_share(count: np.ndarray) -> float:
    """The training share of band masks for rows missing ``count`` (n,) bands: BAND_MASK_SHARE, or the share of
    rows with any missing rounded up to 0.05 where larger, at most 0.95."""
    return min(max(float(np.ceil(20 * (count > 0).mean()) / 20), BAND_MASK_SHARE), 0.95)


def advise_band_masks(settings: RunSettings, missing: np.ndarray, handled: np.ndarray) -> None:
    """Log a warning naming ``training_missing_bands`` settings that would take a catalogue's rows with bands
    missing (``missing`` (n, k) True where a band is missing) which the estimator did not take (``handled`` (n,)
    False: no amortized posterior, so they are refined, minutes a galaxy): a share of BAND_MASK_SHARE (or the
    catalogue's share of rows with bands missing, rounded up to 0.05, where larger) and the most bands missing in
    one row (at most k - 1). Silent when there are none."""
    missing = np.asarray(missing, dtype=bool)
    count = missing.sum(axis=1)
    rows = (count > 0) & ~np.asarray(handled, dtype=bool)
    if not rows.any() or settings.simulator_settings.get("noise") is None:  # band masks need noise (and simulate)
        return
    share, most = _band_mask_share(count), takeable_missing(count[rows], missing.shape[1])
    if not most:  # only rows missing over half the bands: refined, as auto would leave them
        return
    have = "has no band masks" if settings.missing_bands is None else \
        f"takes at most {settings.missing_bands[1]} missing (training_missing_bands)"
    logger.warning("%d of %d galaxies have bands missing that estimator %s cannot take (it %s): no amortized "
                   "posterior (flag missing_bands), so they are refined if refine is set, minutes a galaxy. Band masks "
                   "would fit them here: amortized.%s.training_missing_bands: {share: %.2f, max_bands: %d}",
                   int(rows.sum()), len(rows), settings.name, have, settings.name, share, most)


# --- training -------------------------------------------------------------------------------------------------


@dataclass
class AmortizedResult:
    """A trained amortized estimator: the sbi posterior (no default x), its network, the held-out split
    (theta (m, d), x (m, k)) and what training measured."""

    posterior: Any
    estimator: Any
    held_out_theta: np.ndarray
    held_out_x: np.ndarray
    ood: OODScore
    training_log: list[dict[str, float]]
    summary: dict[str, Any]
    training_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # rows of theta it trained on


def train_amortized(settings: RunSettings, theta: np.ndarray, x: np.ndarray, test_fraction: float,
                    ood_neighbours: int = 10, check_samples: int = 200) -> AmortizedResult:
    """Train an NPE on the training rows of (theta (n, d), x (n, k)) and test it on the held-out rows.

    Rows with a non-finite x are left out (NPE from the prior drops them without bias; logged). The
    held-out split gives: the mean log posterior density of the true theta, the empirical coverage of
    the central 68% and 95% intervals per parameter (``check_samples`` samples of up to 500 held-out rows,
    sampled batched) and the OOD score's calibration.

    Raises:
        ConfigError: training rows outside the prior box; fewer than 2 finite training or held-out rows.
    """
    import torch
    from sbi.inference import NPE

    seed = base_seed(settings)
    outside = ~settings.prior.contains(theta)
    if outside.any():
        raise ConfigError(f"amortized.{settings.name}: {int(outside.sum())} of {len(theta)} training rows lie outside "
                          f"the prior box (first: row {int(np.argmax(outside))}); a flow bounded to the prior cannot "
                          f"train on them: widen prior (a library source: prior.from_library without "
                          f"override_prior_ranges)")
    finite = np.all(np.isfinite(x), axis=1)
    if (~finite).any():
        logger.warning("%d of %d training rows have a non-finite x: left out (NPE from the prior drops them "
                       "without bias)", int((~finite).sum()), len(x))
    train_rows, test_rows = split_rows(len(theta), test_fraction, seed)
    train_rows, test_rows = train_rows[finite[train_rows]], test_rows[finite[test_rows]]
    if len(train_rows) < 2 or len(test_rows) < 2:
        raise ConfigError(f"amortized.{settings.name}: only {len(train_rows)} training and {len(test_rows)} held-out "
                          f"rows with finite x; raise simulations or check the simulator")
    features = None
    if settings.simulator_name == "galaxy":  # AB floor share or flux tails, warned about as a round's are
        from seqsbi.rounds import feature_report

        n_filters = len(settings.simulator_settings["filters"])
        seen = x[train_rows]
        if settings.missing_bands is not None:  # the rows with every band (stand-ins would count as features)
            seen = seen[~np.any(seen[:, -n_filters:] > 0, axis=1)]
        seen = seen[:, :n_filters]
        if settings.depth_inputs is None:  # one depth: the floor share of the configured noise
            features = feature_report(settings, seen, noise_note=training_noise_note(settings))
        else:  # each row its own AB floor, so no floor share; the flux check still applies
            features = feature_report(dataclasses.replace(settings, simulator_settings={
                **settings.simulator_settings, "noise": None}), seen, noise_note=training_noise_note(settings))
    torch.manual_seed(training_seed(seed))
    prior = engines.make_prior(settings.prior, settings.device)
    with warnings.catch_warnings():
        # zuko's passes=2 (coupling nsf/maf) is forwarded to zuko as sbi's warning says; that is the intent.
        warnings.filterwarnings("ignore", message=r"Unknown kwargs passed to ConditionalFlowConfig: \{'passes'\}")
        builder = engines.network_builder(settings, prior)
    inference = NPE(prior=prior, density_estimator=builder, device=settings.device, tracker=engines.LoggingTracker(),
                    show_progress_bars=False)
    inference.append_simulations(torch.as_tensor(theta[train_rows], dtype=torch.float32),
                                 torch.as_tensor(x[train_rows], dtype=torch.float32))
    options = {key: value for key, value in settings.training.items() if key in engines.ENGINES["NPE"].train_keys}
    start = time.perf_counter()
    estimator = inference.train(**options)
    train_s = time.perf_counter() - start
    summary = inference.summary
    training_log = [{"epoch": i + 1, "training_loss": float(t), "validation_loss": float(v)}
                    for i, (t, v) in enumerate(zip(summary["training_loss"], summary["validation_loss"]))]
    logger.info("trained %d epochs on %d simulations in %.1f s (%s, %s)", len(training_log), len(train_rows), train_s,
                settings.density_estimator, settings.network)
    posterior = inference.build_posterior(estimator)
    estimator.eval()

    held_theta, held_x = theta[test_rows], x[test_rows]
    with torch.no_grad():
        log_prob = estimator.log_prob(torch.as_tensor(held_theta, dtype=torch.float32)[None],
                                      condition=torch.as_tensor(held_x, dtype=torch.float32)).numpy()[0]
    check = slice(0, min(500, len(test_rows)))
    start = time.perf_counter()
    samples = sample_batched(estimator, held_x[check], check_samples, seed)
    sample_s = time.perf_counter() - start
    coverage = interval_coverage(samples, held_theta[check], names=settings.prior.names)
    ood = OODScore.calibrate(x[train_rows], held_x, ood_neighbours)
    result_summary = {
        "name": settings.name, "method": method_name(settings), "training_rows": int(len(train_rows)),
        "held_out_rows": int(len(test_rows)), "dropped_non_finite": int((~finite).sum()), "seed": seed,
        "epochs": len(training_log), "train_s": train_s,
        "best_validation_loss": float(summary["best_validation_loss"][-1]),
        "held_out_mean_log_prob": float(np.mean(log_prob)),
        "held_out_coverage": {"rows": check.stop, "samples": check_samples, **coverage},
        "held_out_galaxies_per_s": check.stop / sample_s,
        "parameters": list(settings.prior.names), "units": list(settings.prior.units),
        "training_depth_range_ab": None if settings.depth_inputs is None else list(settings.depth_inputs),
        "training_missing_bands": None if settings.missing_bands is None else {
            "share": settings.missing_bands[0], "max_bands": settings.missing_bands[1]},
        "features": features,
        "ood": {"neighbours": ood_neighbours, "held_out_distance_quantiles": {
            str(q): float(np.quantile(ood.held_out_distances, q)) for q in (0.5, 0.9, 0.99)}},
    }
    logger.info("held out: mean log prob %.3f; 68%% coverage %s; 95%% coverage %s",
                result_summary["held_out_mean_log_prob"], _rounded(coverage["0.68"]), _rounded(coverage["0.95"]))
    return AmortizedResult(posterior, estimator, held_theta, held_x, ood, training_log, result_summary, train_rows)


def training_noise_note(settings: RunSettings) -> str | None:
    """The training noise of an estimator with depth inputs or band masks as one sentence (the training log's and
    amortized.json's ``features.noise``); None for neither (the simulator settings say it)."""
    if settings.depth_inputs is None and settings.missing_bands is None:
        return None
    notes = ["flux noise from the configured depth (galaxy.features.noise)"]
    if settings.depth_inputs is not None:
        notes = [f"depth inputs: 5-sigma depths drawn uniformly in [{settings.depth_inputs[0]:g}, "
                 f"{settings.depth_inputs[1]:g}] AB per row and band"]
    if settings.missing_bands is not None:
        notes.append(f"band masks: {100 * settings.missing_bands[0]:g}% of rows miss 1-{settings.missing_bands[1]} "
                     f"bands (features reported for the rows with every band)")
    return "; ".join(notes)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in values.items()}


def method_name(settings: RunSettings) -> str:
    """What the summary table records as the method, e.g. ``amortized NPE (zuko nsf, coupling)``."""
    kind = "coupling" if settings.density_estimator == "nice" or settings.network.get("passes") == 2 else \
        "autoregressive"
    return (f"amortized NPE (zuko {settings.density_estimator}, {kind}, bounded to the prior by a "
            f"{settings.bounding} map)")


def interval_coverage(samples: np.ndarray, truth: np.ndarray, levels=(0.68, 0.95),
                      names: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Share of rows whose truth (n, d) lies in the central ``level`` interval of its samples (n, S, d),
    per level and parameter (keys: the level as text, then the name or index)."""
    names = names or tuple(str(j) for j in range(truth.shape[1]))
    result = {}
    for level in levels:
        low = np.quantile(samples, (1 - level) / 2, axis=1)
        high = np.quantile(samples, (1 + level) / 2, axis=1)
        inside = ((truth >= low) & (truth <= high)).mean(axis=0)
        result[str(level)] = {name: float(value) for name, value in zip(names, inside)}
    return result


# --- sampling -------------------------------------------------------------------------------------------------


#: Samples per network call when sampling many galaxies: calls of ~8k rows ran 1.5-1.7x faster per galaxy
#: than one galaxy (1,000 samples) a call and than 64 galaxies a call (activations that fit the CPU cache;
#: benchmarks/README.md "Catalogues").
ROWS_PER_CALL = 8192


def sample_batched(estimator: Any, x: np.ndarray, n_samples: int, seed: int, batch_galaxies: int = 256,
                   first_block: int = 0, rows_per_call: int = ROWS_PER_CALL) -> np.ndarray:
    """Posterior samples (n, n_samples, d) at every row of x (n, k), float32: the flow conditioned on many
    galaxies per call (``rows_per_call`` // ``n_samples`` of them, at least one), no per-galaxy loop.

    Rows go in seeded blocks of ``batch_galaxies``: block b (counted from ``first_block``) draws with torch
    seeded by ``block_seed(seed, b)``, so a row's samples do not depend on which job samples its block. The
    flow is bounded to the prior (a probit map), so every sample lies in the prior box and none is rejected.
    Rows whose x is not finite get NaN samples (the caller flags them).
    """
    import torch

    x = np.asarray(x, dtype=np.float32)
    out = np.full((len(x), n_samples, _theta_dim(estimator)), np.nan, dtype=np.float32)
    finite = np.all(np.isfinite(x), axis=1)
    per_call = max(1, rows_per_call // n_samples)
    with torch.no_grad():
        for offset in range(0, len(x), batch_galaxies):
            rows = np.arange(offset, min(offset + batch_galaxies, len(x)))
            rows = rows[finite[rows]]
            torch.manual_seed(block_seed(seed, first_block + offset // batch_galaxies))
            for start in range(0, len(rows), per_call):
                call = rows[start:start + per_call]
                draws = estimator.sample((n_samples,), condition=torch.as_tensor(x[call]))  # (S, n, d)
                out[call] = draws.permute(1, 0, 2).cpu().numpy()
    return out


def sample_loop(posterior: Any, x: np.ndarray, n_samples: int) -> np.ndarray:
    """The one-galaxy-at-a-time baseline: ``posterior.sample((n_samples,), x=x_i)`` per row (benchmarks only)."""
    import torch

    return np.stack([posterior.sample((n_samples,), x=torch.as_tensor(row, dtype=torch.float32),
                                      show_progress_bars=False).numpy() for row in x])


def _theta_dim(estimator: Any) -> int:
    return int(estimator.input_shape[0])


def prior_edge_shares(samples: np.ndarray, prior: ParameterSpace, width: float) -> np.ndarray:
    """(n, d) share of each galaxy's samples (n, S, d) within ``width`` (a fraction of the prior's range)
    of the parameter's lower or upper prior bound. A posterior equal to the prior puts 2 * width there."""
    span = prior.high - prior.low
    near = (samples <= prior.low + width * span) | (samples >= prior.high - width * span)
    with np.errstate(invalid="ignore"):
        return near.mean(axis=1)


# --- posterior predictive check -------------------------------------------------------------------------------

#: ``simulate(theta (n, m, d), rows (n,), rng) -> x_rep (n, m, k)``: features simulated from m posterior draws
#: of each of n galaxies (``rows``: their indices in the x the posterior was sampled at), each with its own noise.
PredictiveSimulator = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
#: Spawn key of the predictive check's noise seed (its blocks' seeds derive from it as the sampling's do).
_PPC_SEED_KEY = 2**31 - 2


def galaxy_flux_simulator(settings: RunSettings) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The estimator's galaxy model without noise or features: theta (n, d) -> fluxes (n, n_filters) in nJy
    (fixed parameters inserted as the simulator does). Draws nothing from its Generator."""
    from seqsbi.simulators import resolve_simulator

    return resolve_simulator(settings.simulator_name, {**settings.simulator_settings, "features": "flux",
                                                       "noise": None, "flux_scale_njy": None},
                             key=f"amortized.{settings.name}.simulator", space=settings.prior)


def galaxy_predictive_simulator(settings: RunSettings, error_njy: np.ndarray) -> PredictiveSimulator:
    """The estimator's galaxy simulator for catalogue rows with 1-sigma flux errors ``error_njy`` (N, n_filters)
    in nJy: noise-free fluxes from the batched simulator (one call for all n x m draws; fixed parameters
    inserted as in training), then each galaxy's own noise as :func:`seqsbi.simulators.galaxy.features.
    noise_for_observation` decides for an observation (its catalogue errors, the configured ``max_snr``
    floor) and the configured features (AB floor at the galaxy's errors, asinh softening from them, flux
    scale): what x of that galaxy would look like if the model at its posterior were true. numpy only.
    """
    from seqsbi.simulators.galaxy.features import noise_for_observation, simulate_features

    configured = settings.simulator_settings
    n_filters = len(configured["filters"])
    fluxes = galaxy_flux_simulator(settings)
    scale = _flux_scale(configured)
    error_njy = np.asarray(error_njy, dtype=float)

    def simulate(theta: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, m, d = theta.shape
        flux = fluxes(theta.reshape(n * m, d), rng)  # (n m, n_filters) nJy, no noise
        noise = noise_for_observation(configured.get("noise"), n_filters, np.repeat(error_njy[rows], m, axis=0))
        return simulate_features(flux, configured["features"], noise, rng, scale).reshape(n, m, -1)

    return simulate


def posterior_predictive_check(samples: np.ndarray, x: np.ndarray, simulate: PredictiveSimulator, draws: int,
                               seed: int, batch_galaxies: int = 256, first_block: int = 0
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior predictive p-value of every galaxy: (chi^2 discrepancy T(x_o) (n,), p-value (n,)).

    For galaxy i, x_rep (draws, k) is simulated from its first ``draws`` posterior samples of ``samples``
    (n, S, d) (the flow's samples are independent, so the first ``draws`` are a random subset) with its own
    noise (``simulate``). The discrepancy is the chi^2 statistic of :func:`seqsbi.diagnostics.chi2_discrepancy`
    (the runs' predictive check uses the same): T(x) = sum_j ((x_j - mu_j) / s_j)^2 with the predictive mean
    mu and std s per feature, and p = (1 + #{T(x_rep) >= T(x_o)}) / (1 + m), the posterior predictive p-value
    of Gelman, Meng & Stern (1996, Statistica Sinica 6, 733) counted as a Monte Carlo test's p-value (Davison &
    Hinkley 1997, section 4.2; as ``ood_p_value``), so it is never 0 and its smallest value is 1 / (1 + draws).

    Why this statistic: it needs no likelihood (AB features have a point mass at the 1-sigma floor), it is
    one number per galaxy for any number of bands, scaled by the predictive spread band by band (so bands
    measured poorly count little), and it is large both for x_o that no posterior draw reproduces (an
    outlier, a band off by magnitudes) and for a posterior that sits in the wrong place. It is conservative
    (a posterior predictive p-value uses x_o twice: Bayarri & Berger 2000), so a small p is strong evidence.

    Blocks of ``batch_galaxies`` rows (counted from ``first_block``, as the sampling's) draw their noise from
    numpy Generators seeded per block: the p-values do not depend on chunking. Rows whose x or samples are
    not finite get NaN; draws whose simulation is not finite are left out of that galaxy's count (NaN when
    fewer than 2 remain). A band whose x is NaN (missing) is left out of that galaxy's discrepancy (its
    simulations too).
    """
    n = len(x)
    chi2, p_value = np.full(n, np.nan), np.full(n, np.nan)
    ppc_seed = block_seed(seed, _PPC_SEED_KEY)
    observed_bands = np.isfinite(x)
    usable = np.any(observed_bands, axis=1) & np.all(np.isfinite(samples[:, :draws]), axis=(1, 2))
    x = np.where(observed_bands, x, 0.0)  # a missing band: 0 in x and in every simulation, so z = 0 there
    for offset in range(0, n, batch_galaxies):
        rows = np.arange(offset, min(offset + batch_galaxies, n))
        rows = rows[usable[rows]]
        if not len(rows):
            continue
        rng = np.random.default_rng(block_seed(ppc_seed, first_block + offset // batch_galaxies))
        predictive = np.asarray(simulate(np.asarray(samples[rows, :draws], dtype=float), rows, rng), dtype=float)
        predictive = np.where(observed_bands[rows, None, :], predictive, 0.0)
        complete = np.all(np.isfinite(predictive), axis=(1, 2))
        if complete.any():
            _, observed, replicated = diagnostics.chi2_discrepancy(predictive[complete], x[rows[complete]])
            chi2[rows[complete]] = observed
            p_value[rows[complete]] = (1 + (replicated >= observed[:, None]).sum(axis=1)) / (1 + draws)
        for i in np.flatnonzero(~complete):  # rare: some draws not finite; score the finite ones
            finite = predictive[i][np.all(np.isfinite(predictive[i]), axis=1)]
            if len(finite) >= 2:
                _, observed, replicated = diagnostics.chi2_discrepancy(finite[None], x[rows[i]][None])
                chi2[rows[i]] = observed[0]
                p_value[rows[i]] = (1 + (replicated[0] >= observed[0]).sum()) / (1 + len(finite))
    return chi2, p_value


# --- one chunk of a catalogue ---------------------------------------------------------------------------------


@dataclass
class ChunkPosteriors:
    """Samples (n, S, d) and per-galaxy flag columns (name -> (n,) array) for rows of a catalogue."""

    samples: np.ndarray
    columns: dict[str, np.ndarray]
    flags: np.ndarray  # (n,) comma-separated names of the raised flags
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage: sampling, ppc


def catalogue_posteriors(estimator: Any, ood: OODScore, x: np.ndarray, prior: ParameterSpace, n_samples: int,
                         seed: int, flags: dict, batch_galaxies: int = 256, first_block: int = 0,
                         predictive: PredictiveSimulator | None = None,
                         missing: np.ndarray | None = None,
                         model_fit: tuple[ModelFitScore, np.ndarray, np.ndarray] | None = None,
                         ppc_x: np.ndarray | None = None) -> ChunkPosteriors:
    """Batched posterior samples at every row of x (n, k) (what the estimator conditions on:
    :func:`estimator_x`) and the trust flags of each row; ``ppc_x`` (n, k') the features the predictive check
    compares with ``predictive``'s simulations when they are not x (depth inputs: x without the depths).

    Flags (thresholds from the catalogue's ``flags`` config; values always in the columns):
      - ``ood``: ``ood_p_value`` < ``ood_min_p_value`` (x farther from the training set than that share of
        the held-out simulations; :class:`OODScore`), with ``ood_distance``;
      - ``prior_edge``: ``prior_edge_share`` (the largest over parameters of ``<name>_edge_share``, the share
        of samples within ``prior_edge_width`` of the prior range from a bound) > ``prior_edge_max_share``;
      - ``ppc``: ``ppc_p_value`` < ``ppc_min_p_value``, the posterior predictive p-value of x with
        ``ppc_chi2`` its discrepancy (:func:`posterior_predictive_check`, ``ppc_draws`` draws simulated with
        ``predictive``); without ``predictive`` or with ``ppc_draws: 0`` the columns are NaN, never raised;
      - ``fit``: ``fit_p_value`` < ``fit_min_p_value``, with ``fit_chi2``: the best chi^2 of the galaxy's fluxes
        against the training set's models (``model_fit``: the :class:`ModelFitScore` and the rows' fluxes and
        1-sigma errors (n, k) nJy; missing bands left out); without ``model_fit`` the columns are NaN, never raised;
      - ``missing_bands``: bands missing from the catalogue (``missing`` (n, k) True there; ``n_missing_bands``
        counts them) that the estimator cannot take (no band masks, or more than its ``max_bands``: x not finite),
        so the row has no samples (NaN in the table) and a refinement (seqsbi.refine) fits it without those
        bands; a row whose x is finite was fitted by the estimator (band masks) and is not flagged;
      - ``invalid_x``: any other non-finite feature (no samples; NaN in the table).
    """
    start = time.perf_counter()
    samples = sample_batched(estimator, x, n_samples, seed, batch_galaxies, first_block)
    seconds = {"sampling": time.perf_counter() - start}
    distance, p_value = ood.p_value(np.where(np.isfinite(x), x, 0.0))
    finite = np.all(np.isfinite(x), axis=1)
    shares = prior_edge_shares(samples, prior, flags["prior_edge_width"])
    shares[~finite] = np.nan
    columns: dict[str, np.ndarray] = {"ood_distance": np.where(finite, distance, np.nan),
                                      "ood_p_value": np.where(finite, p_value, np.nan)}
    for j, name in enumerate(prior.names):
        columns[f"{name}_edge_share"] = shares[:, j]
    columns["prior_edge_share"] = np.where(finite, np.nanmax(np.where(finite[:, None], shares, 0.0), axis=1), np.nan)
    largest = np.argmax(np.where(finite[:, None], shares, 0.0), axis=1)
    columns["prior_edge_parameter"] = np.array([prior.names[j] if share > 0 else "" for j, share in
                                                zip(largest, np.nan_to_num(columns["prior_edge_share"]))])
    draws = min(int(flags.get("ppc_draws", 0)), n_samples) if predictive is not None else 0
    columns["ppc_chi2"], columns["ppc_p_value"] = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if draws:
        start = time.perf_counter()
        columns["ppc_chi2"], columns["ppc_p_value"] = posterior_predictive_check(
            samples, np.asarray(x if ppc_x is None else ppc_x, dtype=float), predictive, draws, seed, batch_galaxies,
            first_block)
        seconds["ppc"] = time.perf_counter() - start
        logger.info("posterior predictive check: %d galaxies x %d draws in %.2f s (%.2f ms a galaxy)", len(x), draws,
                    seconds["ppc"], 1e3 * seconds["ppc"] / max(len(x), 1))
    columns["fit_chi2"], columns["fit_p_value"] = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if model_fit is not None:
        start = time.perf_counter()
        columns["fit_chi2"], columns["fit_p_value"] = model_fit[0].p_value(model_fit[1], model_fit[2])
        seconds["fit"] = time.perf_counter() - start
        logger.info("model fit: %d galaxies x %d training models in %.2f s", len(x), len(model_fit[0].model_njy),
                    seconds["fit"])
    raised = {"ood": finite & (p_value < flags["ood_min_p_value"]),
              "prior_edge": finite & (columns["prior_edge_share"] > flags["prior_edge_max_share"]),
              "ppc": np.nan_to_num(columns["ppc_p_value"], nan=1.0) < flags.get("ppc_min_p_value", 0.0),
              "fit": np.nan_to_num(columns["fit_p_value"], nan=1.0) < flags.get("fit_min_p_value", 0.0),
              "missing_bands": np.zeros(len(x), dtype=bool) if missing is None else np.any(missing, axis=1) & ~finite}
    raised["invalid_x"] = ~finite & (np.ones(len(x), dtype=bool) if missing is None else ~np.any(missing, axis=1))
    columns["n_missing_bands"] = np.zeros(len(x), dtype=int) if missing is None else np.sum(missing, axis=1)
    for name, mask in raised.items():
        columns[f"flag_{name}"] = mask
    names = np.array([",".join(name for name, mask in raised.items() if mask[i]) for i in range(len(x))])
    return ChunkPosteriors(samples, columns, names, seconds)


# --- files ----------------------------------------------------------------------------------------------------

#: An amortized estimator's outputs, under results/amortized/{estimator}/.
AMORTIZED_FILES = {
    "posterior": "posterior.pt",  # sbi DirectPosterior (no default x), torch.load(..., weights_only=False)
    "estimator": "estimator.pt",  # the trained flow (bounded to the prior)
    # held-out theta (m, d), x (what the estimator conditions on: (m, k), 2k with depths or masks, 3k with both),
    # and the OOD score's calibration
    "held_out": "held_out.npz",
    "training_log": "training_log.tsv",  # per epoch: training and validation loss
    "summary": "amortized.json",  # sizes, timings, held-out log prob and coverage, OOD quantiles
    # theta (n, d) of the rows it trained on and, for the galaxy model, their noise-free fluxes (n, n_filters)
    # nJy: a refinement's round 0 (seqsbi.refine), re-noised with each galaxy's own errors
    "training_set": "training_set.npz",
}


def write_amortized(result: AmortizedResult, settings: RunSettings, outputs: dict[str, str], theta: np.ndarray,
                    flux: np.ndarray | None) -> None:
    """Write every file of :data:`AMORTIZED_FILES` (paths by key), atomically; ``theta`` (n, d) and ``flux``
    (n, n_filters) nJy or None are the whole training set the estimator was trained from."""
    from seqsbi import artifacts

    rows = result.training_rows
    artifacts.write_npz(outputs["training_set"], theta=theta[rows], **({} if flux is None else {"flux": flux[rows]}))

    artifacts.write_torch(outputs["posterior"], result.posterior)
    artifacts.write_torch(outputs["estimator"], result.estimator)
    artifacts.write_npz(outputs["held_out"], theta=result.held_out_theta, x=result.held_out_x,
                        parameter_names=np.array(settings.prior.names), parameter_units=np.array(settings.prior.units),
                        low=settings.prior.low, high=settings.prior.high, **result.ood.arrays())
    lines = ["epoch\ttraining_loss\tvalidation_loss"] + [
        f"{row['epoch']}\t{row['training_loss']:.6f}\t{row['validation_loss']:.6f}" for row in result.training_log]
    artifacts.write_text(outputs["training_log"], "\n".join(lines) + "\n")
    artifacts.write_json(outputs["summary"], result.summary)


def read_held_out(path: str) -> tuple[dict[str, np.ndarray], OODScore, ParameterSpace]:
    """(arrays, OOD score, prior) from a ``held_out.npz``."""
    from seqsbi import artifacts

    arrays = artifacts.read_npz(path, required=("theta", "x", "low", "high", "ood_training_x"))
    prior = ParameterSpace(tuple(arrays["parameter_names"].tolist()), tuple(arrays["parameter_units"].tolist()),
                           arrays["low"], arrays["high"])
    return arrays, OODScore.from_arrays(arrays), prior
