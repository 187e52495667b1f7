"""Exact-likelihood reference posteriors (config ``engine: likelihood``): no rounds, no training.

For simulators whose likelihood p(x | theta) can be written down, a reference run samples the exact
posterior p(theta | x_o) proportional to p(x_o | theta) p(theta) (any seqsbi prior, through its inverse
CDF) with a nested sampler, to check SBI fits of the same simulator and observation against it.

Likelihoods (vectorised over theta: (n, d) in, (n,) log-likelihoods out):

* ``linear_gaussian`` (seqsbi.simulators.toy): x = theta + shift + noise_std N(0, 1) per element, so
  log p = sum_j log N(x_o,j; theta_j + shift, noise_std^2).
* ``galaxy``: the noise-free fluxes f(theta) (nJy) of the same rebuilt simulator the SBI runs call,
  Gaussian flux noise with per-band sigma(f) from :meth:`FluxNoise.sigma` (the noise the simulator
  adds: the observation's own errors or the configured depth, features.noise_for_observation), then
  the feature transform of ``galaxy.features.kind``; each kind is
  one entry of :data:`FEATURE_LOG_LIKELIHOODS`, a per-band log-likelihood of x_o given (f, sigma):

  - ``ab_magnitude`` (features.to_features): m = 31.4 - 2.5 log10(max(F, sigma)) for the noisy flux F.
    A band of x_o at the 1-sigma floor (m_o = 31.4 - 2.5 log10 sigma, to FLOOR_TOLERANCE_MAG) is
    censored: its probability is P(F <= sigma) = Phi((sigma - f) / sigma). Above the floor the density
    of m is N(F_o; f, sigma^2) |dF/dm| with F_o = 10^((31.4 - m_o) / 2.5) and |dF/dm| = F_o ln(10) / 2.5.
    A band of x_o brighter than this theta's floor would need F_o < sigma: probability 0 (this
    happens only when sigma depends on f, i.e. with ``max_snr``).
    The likelihood mixes a probability (censored bands) with densities (the others); for a fixed set
    of censored bands, as here (sigma does not depend on theta without max_snr), that is the standard
    censored-data likelihood and its posterior is exact.
  - ``flux_njy``: N(x_o; f, sigma^2).
  - ``asinh_magnitude`` (Lupton, Gunn & Szalay 1999, the band's softening s = 1.042 sigma_band in nJy,
    b = s / f0, f0 = 3631 Jy): the transform is monotonic, so the density is N(F_o; f, sigma^2) |dF/dm|
    with F_o = 2 s sinh(u), u = -m_o ln(10) / 2.5 - ln b, |dF/dm| = 2 s cosh(u) ln(10) / 2.5.

  A new feature kind is one place: sigma comes from ``FluxNoise.sigma``,
  the transform as one more entry of FEATURE_LOG_LIKELIHOODS.

Other simulators (two_moons, custom ones) have no likelihood here: :func:`check_likelihood_available`
refuses them at config time.

Sampler: nautilus (nautilus-sampler, Lange 2023, MNRAS 525, 3181), importance nested sampling with
neural-network-boosted bounds. Chosen over dynesty and emcee because (1) it calls the likelihood on a
batch of points at once (``vectorized=True``), which suits the batched galaxy simulator (array algebra
over many theta: thousands of galaxies per second, versus tens per call one at a time); (2) its
multi-ellipsoid bounds follow multimodal, curved posteriors (redshift-degenerate galaxy fits), where an
ensemble MCMC such as emcee mixes between modes poorly and gives no evidence; (3) it reports the
effective sample size of its importance weights and the log-evidence, i.e. direct convergence
diagnostics, in typically several times fewer likelihood calls than dynesty (Lange 2023, sec. 5). It is
pure Python (numpy, scipy, scikit-learn, threadpoolctl) and seeded.

Convergence: the run must finish nautilus' exploration (the live set holds less than ``f_live`` of
the evidence) and reach ``min_ess`` effective samples within ``max_likelihood_calls``; otherwise
:class:`ReferenceNotConverged` names the setting to raise. Posterior samples are drawn from the
importance-weighted points by systematic resampling (``posterior_samples`` of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import log_ndtr

from seqsbi.errors import ConfigError, ReferenceNotConverged
from seqsbi.units import AB_MAG_OF_1_NJY, AB_ZERO_POINT_NJY, POGSON

if TYPE_CHECKING:
    from seqsbi.config import RunSettings
    from seqsbi.simulators.galaxy.features import FluxNoise

logger = logging.getLogger("seqsbi.reference")

#: A band of x_o within this many magnitudes of the 1-sigma floor counts as censored. Features are
#: written in float64 from the same expression, so censored values match the floor to ~1e-13 mag.
FLOOR_TOLERANCE_MAG = 1e-6
#: log N(0, 1) at 0: -ln(2 pi) / 2.
_LOG_NORM = -0.5 * np.log(2 * np.pi)
#: Config ``nested_sampling`` defaults (also in the schema; here for in-process callers).
SAMPLER_DEFAULTS = {"live_points": 2000, "effective_samples": 10000, "min_ess": 2000, "f_live": 0.01,
                    "max_likelihood_calls": 5_000_000, "networks": 4}


def _gaussian_logpdf(x: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return _LOG_NORM - np.log(sigma) - 0.5 * ((x - mean) / sigma) ** 2


# -- per-band log-likelihoods of x_o given the noise-free flux f and its sigma, both (n, k) in nJy -----
def ab_magnitude_band_log_likelihood(x_o: np.ndarray, flux: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log p(m_o,j | f_j, sigma_j) per band, (n, k), for AB magnitudes censored at the 1-sigma flux
    (features.to_features 'ab_magnitude'); see the module docstring for the formula."""
    floor_mag = AB_MAG_OF_1_NJY - POGSON * np.log10(sigma)
    censored = np.abs(x_o[None, :] - floor_mag) <= FLOOR_TOLERANCE_MAG
    observed = 10 ** ((AB_MAG_OF_1_NJY - x_o) / POGSON)  # (k,) flux of x_o
    density = _gaussian_logpdf(observed[None, :], flux, sigma) + np.log(observed * np.log(10) / POGSON)[None, :]
    impossible = ~censored & (x_o[None, :] > floor_mag)  # fainter than this theta's floor
    return np.where(censored, log_ndtr((sigma - flux) / sigma), np.where(impossible, -np.inf, density))


def flux_band_log_likelihood(x_o: np.ndarray, flux: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log N(x_o,j; f_j, sigma_j^2) per band, (n, k): features are the noisy fluxes in nJy."""
    return _gaussian_logpdf(x_o[None, :], flux, sigma)


def asinh_band_log_likelihood(x_o: np.ndarray, flux: np.ndarray, sigma: np.ndarray,
                              softening: np.ndarray) -> np.ndarray:
    """log p(m_o,j | f_j, sigma_j) per band, (n, k), for asinh magnitudes with the band's softening b_j in
    nJy (units.njy_to_asinh_magnitude): the Gaussian flux density times |dF/dm| (module docstring)."""
    u = -x_o[None, :] * np.log(10) / POGSON - np.log(softening / AB_ZERO_POINT_NJY)
    observed = 2 * softening * np.sinh(u)
    log_jacobian = np.log(2 * softening * np.cosh(u) * np.log(10) / POGSON)
    return _gaussian_logpdf(observed, flux, sigma) + log_jacobian


#: Feature kind (galaxy.features.kind) -> per-band log-likelihood (x_o (k,) in flux units for flux features,
#: f (n, k), sigma (n, k), softening (k,)) -> (n, k).
FEATURE_LOG_LIKELIHOODS: dict[str, Callable[..., np.ndarray]] = {
    "ab_magnitude": lambda x_o, flux, sigma, softening: ab_magnitude_band_log_likelihood(x_o, flux, sigma),
    "flux_njy": lambda x_o, flux, sigma, softening: flux_band_log_likelihood(x_o, flux, sigma),
    "flux": lambda x_o, flux, sigma, softening: flux_band_log_likelihood(x_o, flux, sigma),
    "asinh_magnitude": asinh_band_log_likelihood,
}


class GalaxyLikelihood:
    """log p(x_o | theta) of the galaxy model: noise-free fluxes, flux noise, feature transform.

    Args:
        fluxes: theta (n, d) -> noise-free fluxes (n, k) in nJy of the observation's bands (the rebuilt
            batched simulator).
        kind: a key of :data:`FEATURE_LOG_LIKELIHOODS`.
        noise: the observation's noise model (features.noise_for_observation, its bands selected):
            ``sigma(f)`` gives sigma per band, ``softening_njy`` the asinh softening.
        flux_scale_njy: (k,) divisor of flux features (galaxy.features.flux_scale_njy); None = 1.
    """

    def __init__(self, fluxes: Callable[[np.ndarray], np.ndarray], kind: str, noise: FluxNoise,
                 flux_scale_njy: np.ndarray | None = None):
        if kind not in FEATURE_LOG_LIKELIHOODS:
            raise ConfigError(f"galaxy.features.kind: no likelihood for {kind!r}; "
                              f"known: {', '.join(FEATURE_LOG_LIKELIHOODS)}")
        self.fluxes, self.kind, self.noise = fluxes, kind, noise
        self.flux_scale = None if flux_scale_njy is None else np.asarray(flux_scale_njy, dtype=float)

    def band_log_likelihoods(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        """Per-band terms (n, k); their sum over bands is the log-likelihood (bands independent)."""
        flux = self.fluxes(np.atleast_2d(theta))
        x_o = np.asarray(x_o, dtype=float)
        scaled = self.kind in ("flux", "flux_njy") and self.flux_scale is not None
        if scaled:  # x = F / scale: the density of x is scale times the density of F at x_o * scale
            x_o = x_o * self.flux_scale
        terms = FEATURE_LOG_LIKELIHOODS[self.kind](x_o, flux, self.noise.sigma(flux), self.noise.softening_njy)
        return terms + np.log(self.flux_scale)[None, :] if scaled else terms

    def __call__(self, theta: np.ndarray, x_o: np.ndarray) -> np.ndarray:
        return self.band_log_likelihoods(theta, x_o).sum(axis=1)


def linear_gaussian_log_likelihood(theta: np.ndarray, x_o: np.ndarray, shift: float = 1.0,
                                   noise_std: float = 0.1) -> np.ndarray:
    """log p(x_o | theta) (n,) of :func:`seqsbi.simulators.toy.linear_gaussian` for theta (n, d)."""
    theta = np.atleast_2d(theta)
    return _gaussian_logpdf(np.asarray(x_o)[None, :], theta + shift, np.full_like(theta, noise_std)).sum(axis=1)


def check_likelihood_available(run: str, simulator_name: str, simulator_settings: dict[str, Any]) -> None:
    """Cheap (parse-time) check that a reference run's simulator has a likelihood here.

    Raises:
        ConfigError: naming ``runs.<run>.simulator`` and what would work.
    """
    key = f"runs.{run}"
    if simulator_name == "linear_gaussian":
        return
    if simulator_name == "galaxy":
        if simulator_settings.get("noise") is None:
            raise ConfigError(f"{key}.engine: 'likelihood' needs galaxy.features.noise: without noise the galaxy "
                              f"simulator is deterministic and has no likelihood; set galaxy.features.noise")
        if simulator_settings.get("features") not in FEATURE_LOG_LIKELIHOODS:
            raise ConfigError(f"{key}.engine: no likelihood for galaxy.features.kind "
                              f"{simulator_settings.get('features')!r}; known: {', '.join(FEATURE_LOG_LIKELIHOODS)}")
        return
    raise ConfigError(f"{key}.engine: 'likelihood' needs a simulator with a known likelihood (linear_gaussian, "
                      f"galaxy), but {key}.simulator is {simulator_name!r}; fit it with an SBI engine "
                      f"(SNLE, SNPE, ...) or add its log-likelihood to seqsbi.reference")


def log_likelihood_for(settings: RunSettings) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(theta (n, d), x_o (k,)) -> log p(x_o | theta) (n,) for a run's simulator and settings."""
    check_likelihood_available(settings.name, settings.simulator_name, settings.simulator_settings)
    options = settings.simulator_settings
    from seqsbi.priors import full_theta

    if settings.simulator_name == "linear_gaussian":  # fixed parameters inserted, as the simulator gets them
        return lambda theta, x_o: linear_gaussian_log_likelihood(full_theta(theta, settings.prior), x_o, **options)
    from seqsbi.simulators.galaxy.features import noise_for_observation
    from seqsbi.simulators.galaxy.simulator import _rebuilt_simulator

    simulator = _rebuilt_simulator(options["library"], options["svo_filter_cache"], options.get("backend", "batched"),
                                   options.get("grid_dir"))
    n_filters = len(options["filters"])
    own = options.get("sigma_njy")  # the observation's own errors (None: the configured depth)
    errors = None if own is None else np.array([np.nan if s is None else s for s in own], dtype=float)
    bands = options.get("bands")  # the observation's bands (None: all)
    keep = np.arange(n_filters) if bands is None else np.asarray(bands, dtype=int)
    noise = noise_for_observation(options["noise"], n_filters, errors).select(bands)
    scale = options.get("flux_scale_njy")
    scale = None if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), (n_filters,))[keep]
    space = settings.prior

    def fluxes(theta: np.ndarray) -> np.ndarray:  # fixed parameters inserted, the observation's bands kept
        return simulator(full_theta(theta, space))[:, keep]

    return GalaxyLikelihood(fluxes, options["features"], noise, scale)


@dataclass
class ReferenceResult:
    """Equal-weight posterior samples (N, d) and the sampler's settings and diagnostics (JSON-ready)."""

    samples: np.ndarray
    report: dict[str, Any]


def systematic_resample(log_weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (n,) drawn with probabilities exp(log_weights) (normalised here) by systematic resampling:
    each point appears floor or ceil of n w_i times (Kitagawa 1996), less noise than multinomial draws."""
    weights = np.exp(log_weights - np.max(log_weights))
    cumulative = np.cumsum(weights / weights.sum())
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, (rng.uniform() + np.arange(n)) / n)


def sample_reference(log_likelihood: Callable[[np.ndarray], np.ndarray], low: np.ndarray, high: np.ndarray,
                     n_samples: int, seed: int, sampler: dict[str, Any] | None = None,
                     prior_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> ReferenceResult:
    """Sample the posterior of a prior on the box [low, high] (d,) and ``log_likelihood`` (theta (n, d) ->
    (n,)) with nautilus; ``sampler`` overrides :data:`SAMPLER_DEFAULTS`. The prior is uniform on the box
    unless ``prior_transform`` (unit cube (n, d) -> theta (n, d), the prior's inverse CDF, e.g.
    :meth:`seqsbi.priors.ParameterSpace.from_unit_cube`) gives another.

    Raises:
        ReferenceNotConverged: exploration unfinished or fewer than ``min_ess`` effective samples when
            ``max_likelihood_calls`` ran out; the message gives the numbers and the settings to raise.
    """
    from nautilus import Sampler

    options = {**SAMPLER_DEFAULTS, **(sampler or {})}
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    calls = {"n": 0}

    def transform(unit: np.ndarray) -> np.ndarray:
        if prior_transform is not None:
            return prior_transform(unit).reshape(np.shape(unit))
        return low + unit * (high - low)

    def likelihood(theta: np.ndarray) -> np.ndarray:
        calls["n"] += len(np.atleast_2d(theta))
        return np.asarray(log_likelihood(np.atleast_2d(theta)), dtype=float)

    start = time.perf_counter()
    nautilus = Sampler(transform, likelihood, n_dim=len(low), n_live=options["live_points"],
                       n_networks=options["networks"], vectorized=True, pass_dict=False, seed=seed)
    success = nautilus.run(f_live=options["f_live"], n_eff=options["effective_samples"],
                           n_like_max=options["max_likelihood_calls"], discard_exploration=True)
    wall = time.perf_counter() - start
    points, log_w, log_l = nautilus.posterior()
    ess = float(nautilus.n_eff)
    diagnostics = {
        "effective_sample_size": ess,
        "log_evidence": float(nautilus.log_z),
        # Importance-sampling estimate of the error of log Z: var(Z_hat) / Z^2 = 1/ESS - 1/N (N weighted points).
        "log_evidence_error": float(np.sqrt(max(1.0 / ess - 1.0 / len(log_w), 0.0))),
        "explored": bool(nautilus.explored),
        "finished": bool(success),
        "likelihood_calls": int(calls["n"]),
        "weighted_points": len(log_w),
        "shells": len(nautilus.bounds),
        "max_log_likelihood": float(np.max(log_l)),
        "wall_time_s": round(wall, 3),
    }
    report = {"sampler": {"name": "nautilus", "version": _nautilus_version(), "seed": seed, **options},
              "diagnostics": diagnostics}
    logger.info("nautilus: %d likelihood calls in %.1f s, ESS %.0f, log Z = %.3f +- %.3f, %s", calls["n"], wall, ess,
                diagnostics["log_evidence"], diagnostics["log_evidence_error"],
                "finished" if success else "stopped at max_likelihood_calls")
    if not nautilus.explored:
        raise ReferenceNotConverged(
            f"nautilus had not finished exploring the posterior after {calls['n']} likelihood calls (the live set "
            f"still holds more than f_live={options['f_live']:g} of the evidence): raise "
            f"nested_sampling.max_likelihood_calls (now {options['max_likelihood_calls']})")
    if ess < options["min_ess"]:
        raise ReferenceNotConverged(
            f"nautilus reached an effective sample size of {ess:.0f} after {calls['n']} likelihood calls, below "
            f"nested_sampling.min_ess={options['min_ess']}: raise nested_sampling.max_likelihood_calls (now "
            f"{options['max_likelihood_calls']}) or lower min_ess")
    if not success:
        logger.warning("ESS %.0f is below effective_samples=%d (max_likelihood_calls reached) but above min_ess=%d",
                       ess, options["effective_samples"], options["min_ess"])
    if n_samples > ess:
        logger.warning("%d posterior samples drawn from %.0f effective samples: expect repeated points", n_samples,
                       ess)
    rng = np.random.default_rng(seed)
    samples = points[systematic_resample(log_w, n_samples, rng)]
    diagnostics["unique_samples"] = int(len(np.unique(samples, axis=0)))
    return ReferenceResult(samples=samples, report=report)


def _nautilus_version() -> str:
    from importlib.metadata import version

    return version("nautilus-sampler")


def reference_posterior(settings: RunSettings, x_o: np.ndarray, seed: int) -> ReferenceResult:
    """The reference posterior of one run at one observation (x_o (k,)): likelihood, sampler, report."""
    log_likelihood = log_likelihood_for(settings)
    x_o = np.asarray(x_o, dtype=float)
    result = sample_reference(lambda theta: log_likelihood(theta, x_o), settings.prior.low, settings.prior.high,
                              settings.posterior_samples, seed, settings.nested_sampling,
                              None if settings.prior.is_box else settings.prior.from_unit_cube)
    result.report.update(run=settings.name, simulator=settings.simulator_name, x_o=x_o.tolist(),
                         parameter_names=list(settings.prior.names), posterior_samples=settings.posterior_samples)
    if settings.simulator_name == "galaxy":
        result.report["features"] = settings.simulator_settings["features"]
    return result


def write_reference(result: ReferenceResult, settings: RunSettings, samples_path: str, report_path: str) -> None:
    """samples.npz (same arrays as a round's: samples, parameter_names, parameter_units) and reference.json."""
    from seqsbi import artifacts

    artifacts.write_npz(samples_path, samples=result.samples, parameter_names=np.array(settings.prior.names),
                        parameter_units=np.array(settings.prior.units))
    artifacts.write_json(report_path, result.report)
