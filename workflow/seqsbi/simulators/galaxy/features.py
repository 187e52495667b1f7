"""From fluxes to features: per-band flux noise, then AB magnitudes, fluxes or asinh magnitudes.

Two functions carry the whole convention, and every path calls them - the library's feature array
(rule features), every online simulation (the ``galaxy`` simulator, in a round's job or a chunk job)
and every observation (catalogue rows, sheet rows with ``x_err``), so training data and x_o are
processed identically, and a reference likelihood can reuse them:

- :func:`noise_for_observation`: the per-band 1-sigma flux error (nJy) for one observation: its own
  errors (catalogue or sheet) with the configured error floor, else the configured depth;
- :func:`to_features`: noisy fluxes (nJy) -> features of a kind, given that noise model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqsbi.units import njy_to_ab, njy_to_asinh_magnitude, sigma_from_depth

#: ``flux`` and ``flux_njy`` are the same kind (fluxes in nJy, divided by ``features.flux_scale_njy``).
FEATURE_KINDS = ("ab_magnitude", "flux", "flux_njy", "asinh_magnitude")
FEATURE_UNITS = {"ab_magnitude": "AB mag", "flux": "nJy", "flux_njy": "nJy", "asinh_magnitude": "asinh AB mag"}
#: Lupton, Gunn & Szalay (1999, AJ 118, 1406), section 3: the softening that minimises the asinh
#: magnitude's variance at zero flux relative to Pogson's at high S/N is b = sqrt(a) sigma, a = 2.5 log10 e.
LUPTON_SOFTENING_PER_SIGMA = float(np.sqrt(2.5 * np.log10(np.e)))  # 1.0420
#: Share of a training set's values on the AB floor above which a round warns (see :func:`ab_floor_share`).
AB_FLOOR_WARN_SHARE = 0.03


@dataclass(frozen=True)
class FluxNoise:
    """Gaussian flux noise with a per-band 1-sigma error, raised to |flux| / max_snr (an error floor).

    Attributes:
        sigma_njy: (n_bands,) 1-sigma flux errors in nJy: from the 5-sigma depth, or an observation's own.
        max_snr: signal-to-noise ceiling (relative error floor 1/max_snr); None = no floor.
        source: ``depth`` (galaxy.features.noise) or ``observation`` (the observation's own errors).
    """

    sigma_njy: np.ndarray
    max_snr: float | None = None
    source: str = "depth"

    @classmethod
    def from_config(cls, noise: dict | None, n_filters: int) -> FluxNoise | None:
        """From a ``galaxy.features.noise`` block (one depth or one per filter); None for no noise."""
        if noise is None:
            return None
        depths = np.broadcast_to(np.asarray(noise["depth_5sigma_ab"], dtype=float), (n_filters,))
        return cls(np.array(sigma_from_depth(depths, 5), dtype=float), noise.get("max_snr"))

    def select(self, bands: list[int] | None) -> FluxNoise:
        """The same noise for a subset of bands (indices into the configured filters)."""
        if bands is None:
            return self
        return FluxNoise(self.sigma_njy[np.asarray(bands, dtype=int)], self.max_snr, self.source)

    def sigma(self, flux_njy: np.ndarray) -> np.ndarray:
        """1-sigma flux errors (n, n_bands) in nJy for true fluxes (n, n_bands): max(sigma, |f| / max_snr)."""
        sigma = np.broadcast_to(self.sigma_njy, flux_njy.shape)
        if self.max_snr is not None:
            sigma = np.maximum(sigma, np.abs(flux_njy) / self.max_snr)
        return sigma

    @property
    def softening_njy(self) -> np.ndarray:
        """(n_bands,) asinh softening in nJy: Lupton et al.'s sqrt(2.5 log10 e) x the band's 1-sigma error."""
        return LUPTON_SOFTENING_PER_SIGMA * self.sigma_njy

    def apply(self, flux_njy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(noisy fluxes, their sigmas), both (n, n_bands) in nJy."""
        sigma = self.sigma(flux_njy)
        return flux_njy + sigma * rng.standard_normal(flux_njy.shape), sigma

    def describe(self, names: list[str] | tuple[str, ...]) -> str:
        """One line for the log: where the noise comes from and sigma per band (nJy and 5-sigma AB)."""
        bands = ", ".join(f"{name} {s:.4g} nJy ({njy_to_ab(5 * s):.2f} AB 5-sigma)"
                          for name, s in zip(names, self.sigma_njy))
        floor = f"; error floor |flux|/{self.max_snr:g}" if self.max_snr is not None else ""
        origin = "the observation's own errors" if self.source == "observation" else "galaxy.features.noise depth"
        return f"flux noise from {origin}: {bands}{floor}"


def noise_for_observation(noise_config: dict | None, n_filters: int,
                          errors_njy: np.ndarray | None = None) -> FluxNoise | None:
    """The per-band flux noise for one observation: its own 1-sigma errors (n_filters,) in nJy when given
    (a catalogue row or a sheet row's ``x_err``; NaN for a missing band), with ``max_snr`` from
    ``galaxy.features.noise`` as the error floor, else the configured depth (None: no noise).

    This is the one place that decides an observation's noise: the simulator, the observation's
    features and a reference likelihood all take sigma from the FluxNoise it returns
    (:meth:`FluxNoise.sigma` for a model flux).
    """
    if errors_njy is None:
        return FluxNoise.from_config(noise_config, n_filters)
    max_snr = None if noise_config is None else noise_config.get("max_snr")
    return FluxNoise(np.asarray(errors_njy, dtype=float), max_snr, "observation")


def to_features(flux_njy: np.ndarray, kind: str, sigma_njy: np.ndarray | None = None, *,
                softening_njy: np.ndarray | None = None, flux_scale_njy: np.ndarray | float | None = None
                ) -> np.ndarray:
    """Features (n, n_bands) from (noisy) fluxes in nJy (n, n_bands).

    ab_magnitude: 31.4 - 2.5 log10 f (Oke & Gunn 1983); fluxes below ``sigma_njy`` (each value's
    1-sigma error; 1e-6 nJy without noise) are set to that limit so every feature stays finite - a
    point mass a continuous density estimator cannot represent (see :func:`ab_floor_share`).
    flux / flux_njy: f / flux_scale_njy (per band or one number; 1 when None), in nJy.
    asinh_magnitude: Lupton, Gunn & Szalay (1999, AJ 118, 1406) eq. 2,
    m = -(2.5 / ln 10) [asinh((f / f0) / (2 b)) + ln b] with f0 = 3631 Jy and b = softening / f0, the
    softening per band (``softening_njy``; default 1.042 x ``sigma_njy``); finite and continuous for f <= 0.

    Raises:
        ValueError: an unknown kind; asinh magnitudes without a noise model.
    """
    if kind in ("flux", "flux_njy"):
        scale = 1.0 if flux_scale_njy is None else np.asarray(flux_scale_njy, dtype=float)
        return np.array(flux_njy, dtype=float) / scale
    if kind == "ab_magnitude":
        floor = sigma_njy if sigma_njy is not None else np.full_like(flux_njy, 1e-6)
        return njy_to_ab(np.maximum(flux_njy, floor))
    if kind == "asinh_magnitude":
        if softening_njy is None:
            if sigma_njy is None:
                raise ValueError("asinh magnitudes need a noise model (their softening is 1.042 x the 1-sigma flux)")
            softening_njy = LUPTON_SOFTENING_PER_SIGMA * np.asarray(sigma_njy, dtype=float)
        return njy_to_asinh_magnitude(flux_njy, np.broadcast_to(softening_njy, np.shape(flux_njy)))
    raise ValueError(f"feature kind {kind!r} unknown; allowed: {', '.join(FEATURE_KINDS)}")


def simulate_features(flux_njy: np.ndarray, kind: str, noise: FluxNoise | None, rng: np.random.Generator,
                      flux_scale_njy: np.ndarray | float | None = None) -> np.ndarray:
    """Noise (if any) then features: what the features rule and the online simulator apply."""
    if noise is None:
        return to_features(flux_njy, kind, flux_scale_njy=flux_scale_njy)
    noisy, sigma = noise.apply(flux_njy, rng)
    return to_features(noisy, kind, sigma, softening_njy=noise.softening_njy, flux_scale_njy=flux_scale_njy)


def observation_features(flux_njy: np.ndarray, kind: str, noise: FluxNoise | None,
                         flux_scale_njy: np.ndarray | float | None = None) -> np.ndarray:
    """x_o (n_bands,) from an observed flux vector (n_bands,) in nJy: features with the observation's
    noise (AB floor at its 1-sigma error, asinh softening from it), as simulations get them."""
    flux = np.asarray(flux_njy, dtype=float)[None, :]
    if noise is None:
        return to_features(flux, kind, flux_scale_njy=flux_scale_njy)[0]
    return to_features(flux, kind, noise.sigma(flux), softening_njy=noise.softening_njy,
                       flux_scale_njy=flux_scale_njy)[0]


def ab_floor_share(x: np.ndarray, noise: FluxNoise | None) -> np.ndarray:
    """Per band, the share of AB-magnitude features x (n, n_bands) on (or fainter than) the 1-sigma floor
    of ``noise``: values a continuous density estimator sees as a point mass."""
    if noise is None or x.size == 0:
        return np.zeros(x.shape[1] if x.ndim == 2 else 0)
    from seqsbi.censoring import censored

    finite = np.isfinite(x)
    return (censored(x, njy_to_ab(noise.sigma_njy)) & finite).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)


#: Rows per chunk of :func:`simulate_features_chunked` (8 bands: ~6 MB per temporary array).
FEATURE_CHUNK_ROWS = 100_000


def simulate_features_chunked(flux_njy: np.ndarray, kind: str, noise: FluxNoise | None, rng: np.random.Generator,
                              flux_scale_njy: np.ndarray | float | None = None,
                              chunk_rows: int = FEATURE_CHUNK_ROWS) -> np.ndarray:
    """:func:`simulate_features` over ``chunk_rows`` rows at a time, into one (n, n_filters) array: the
    temporaries (noise draws, sigmas, noisy fluxes) are a chunk's size, not the library's. Identical to
    the one-call result, noise included: numpy's Generator draws normals one after another, so chunks of
    draws in row order are the same stream as one draw of the whole array."""
    flux_njy = np.asarray(flux_njy)
    out = np.empty(flux_njy.shape, dtype=float)
    for start in range(0, len(flux_njy), chunk_rows):
        stop = min(start + chunk_rows, len(flux_njy))
        out[start:stop] = simulate_features(flux_njy[start:stop], kind, noise, rng, flux_scale_njy)
    return out


def describe_ranges(features: np.ndarray, names: tuple[str, ...], kind: str) -> list[str]:
    """One line per feature: name, min and max with units (for the log)."""
    unit = FEATURE_UNITS[kind]
    return [f"{name}: {features[:, j].min():.3f} to {features[:, j].max():.3f} {unit}" for j, name in enumerate(names)]
