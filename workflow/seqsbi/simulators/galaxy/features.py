"""From fluxes to features: optional depth-based noise, then AB magnitudes, fluxes or asinh magnitudes.

The same functions turn a library into a feature array and turn each online simulation into x, so
training data and observations are processed identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqsbi.units import njy_to_ab, njy_to_asinh_magnitude, sigma_from_depth

FEATURE_KINDS = ("ab_magnitude", "flux_njy", "asinh_magnitude")
FEATURE_UNITS = {"ab_magnitude": "AB mag", "flux_njy": "nJy", "asinh_magnitude": "asinh AB mag"}


@dataclass(frozen=True)
class DepthNoise:
    """Gaussian flux noise: sigma = flux at the 5-sigma depth / 5, raised to |flux| / max_snr.

    Attributes:
        depth_5sigma_ab: (n_filters,) 5-sigma point-source depths in AB mag.
        max_snr: signal-to-noise ceiling (an error floor of 1/max_snr in relative flux); None = no floor.
    """

    depth_5sigma_ab: np.ndarray
    max_snr: float | None = None

    @classmethod
    def from_config(cls, noise: dict | None, n_filters: int) -> DepthNoise | None:
        """From a ``galaxy.features.noise`` block (one depth or one per filter); None for no noise."""
        if noise is None:
            return None
        depths = np.broadcast_to(np.asarray(noise["depth_5sigma_ab"], dtype=float), (n_filters,))
        return cls(np.array(depths), noise.get("max_snr"))

    def sigma_njy(self, flux_njy: np.ndarray) -> np.ndarray:
        """1-sigma flux errors (n, n_filters) in nJy for true fluxes (n, n_filters)."""
        sigma = np.broadcast_to(sigma_from_depth(self.depth_5sigma_ab, 5), flux_njy.shape)
        if self.max_snr is not None:
            sigma = np.maximum(sigma, np.abs(flux_njy) / self.max_snr)
        return sigma

    def apply(self, flux_njy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(noisy fluxes, their sigmas), both (n, n_filters) in nJy."""
        sigma = self.sigma_njy(flux_njy)
        return flux_njy + sigma * rng.standard_normal(flux_njy.shape), sigma


def to_features(flux_njy: np.ndarray, kind: str, sigma_njy: np.ndarray | None = None) -> np.ndarray:
    """Features (n, n_filters) from fluxes in nJy.

    ab_magnitude: 31.4 - 2.5 log10 f; fluxes below 1 sigma (or non-positive without noise) are set to
    the 1-sigma limit so every feature stays finite. flux_njy: the fluxes. asinh_magnitude: Lupton et
    al. (1999) magnitudes with softening b = sigma / 3631 Jy (needs a noise model).
    """
    if kind == "flux_njy":
        return np.array(flux_njy, dtype=float)
    if kind == "ab_magnitude":
        floor = sigma_njy if sigma_njy is not None else np.full_like(flux_njy, 1e-6)
        return njy_to_ab(np.maximum(flux_njy, floor))
    if kind == "asinh_magnitude":
        if sigma_njy is None:
            raise ValueError("asinh magnitudes need a noise model (their softening is the 1-sigma flux)")
        return njy_to_asinh_magnitude(flux_njy, sigma_njy)
    raise ValueError(f"feature kind {kind!r} unknown; allowed: {', '.join(FEATURE_KINDS)}")


def simulate_features(flux_njy: np.ndarray, kind: str, noise: DepthNoise | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Noise (if any) then features: what both the features rule and the online simulator apply."""
    if noise is None:
        return to_features(flux_njy, kind)
    noisy, sigma = noise.apply(flux_njy, rng)
    return to_features(noisy, kind, sigma)


#: Rows per chunk of :func:`simulate_features_chunked` (8 bands: ~6 MB per temporary array).
FEATURE_CHUNK_ROWS = 100_000


def simulate_features_chunked(flux_njy: np.ndarray, kind: str, noise: DepthNoise | None, rng: np.random.Generator,
                              chunk_rows: int = FEATURE_CHUNK_ROWS) -> np.ndarray:
    """:func:`simulate_features` over ``chunk_rows`` rows at a time, into one (n, n_filters) array: the
    temporaries (noise draws, sigmas, noisy fluxes) are a chunk's size, not the library's. Identical to
    the one-call result, noise included: numpy's Generator draws normals one after another, so chunks of
    draws in row order are the same stream as one draw of the whole array."""
    flux_njy = np.asarray(flux_njy)
    out = np.empty(flux_njy.shape, dtype=float)
    for start in range(0, len(flux_njy), chunk_rows):
        stop = min(start + chunk_rows, len(flux_njy))
        out[start:stop] = simulate_features(flux_njy[start:stop], kind, noise, rng)
    return out


def describe_ranges(features: np.ndarray, names: tuple[str, ...], kind: str) -> list[str]:
    """One line per feature: name, min and max with units (for the log)."""
    unit = FEATURE_UNITS[kind]
    return [f"{name}: {features[:, j].min():.3f} to {features[:, j].max():.3f} {unit}" for j, name in enumerate(names)]
