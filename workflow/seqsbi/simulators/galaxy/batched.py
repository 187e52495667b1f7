"""The galaxy model for many galaxies at once (the default ``batched`` backend).

Same physics as :class:`seqsbi.simulators.galaxy.model.ReferenceGalaxySimulator`, as array algebra:
  1. SFH weights per age bin in closed form: the LogNormal SFR 1/(T-a) exp(-(ln(T-a) - t0)^2 / 2 tau^2)
     integrates to Gaussian-CDF differences in u = ln(T - a) (synthesizer integrates it with quad);
     bins have synthesizer's edges (0, midpoints, last age), clipped to [min_age, T] with T the spec's
     maximum age (age(z), or age(z) - age(z_max) for synference's libraries); weights scaled to the mass formed.
  2. Metallicity weights: cloud-in-cell, linear in Z, between the two grid metallicities around Z.
  3. One contraction per grid metallicity: (n, n_age) @ (n_age, n_lam), then the Z weights.
  4. Dust exp(-tau_v (lambda / 5500 A)^slope); f_nu = L_nu (1 + z) / (4 pi d_L^2).
  5. IGM transmission from a table over redshift built with synthesizer's own IGM model (linear in z,
     step 0.005: interpolation error <= 1e-4).
  6. Filters as synthesizer integrates them: transmission interpolated in frequency onto each
     galaxy's observed grid, trapezoids of f_nu T / nu over nu, normalised by those of T / nu.
Memory stays bounded by processing ``chunk_size`` galaxies at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import erf

from seqsbi.simulators.galaxy import configure_synthesizer
from seqsbi.simulators.galaxy.model import SFH_MAX_AGE_CONVENTIONS, GalaxyModelSpec, astropy_cosmology
from seqsbi.units import angstrom_to_hz, cgs_to_njy, hz_to_angstrom, mpc_to_cm, myr_to_yr

IGM_Z_STEP = 0.005
COSMOLOGY_Z_STEP = 0.001


class BatchedGalaxySimulator:
    """Fluxes (n, n_filters) in nJy for parameters (n, d), ``chunk_size`` galaxies at a time."""

    def __init__(self, spec: GalaxyModelSpec, svo_filter_cache: str | Path, chunk_size: int = 500):
        configure_synthesizer(svo_filter_cache=svo_filter_cache)
        from synthesizer.emission_models.transformers import igm
        from synthesizer.grid import Grid
        from synthesizer.instruments import FilterCollection

        if (spec.sfh, spec.metal_dist, spec.dust_law) != ("LogNormal", "DeltaConstant", "PowerLaw") or \
                spec.emission_model not in ("attenuated_incident", "incident"):
            raise ValueError(f"the batched backend supports LogNormal + DeltaConstant + (attenuated_)incident with "
                             f"PowerLaw dust; this library has {spec.sfh}, {spec.metal_dist}, {spec.emission_model}, "
                             f"{spec.dust_law}: use backend 'reference'")
        if spec.sfh_max_age not in SFH_MAX_AGE_CONVENTIONS:
            raise ValueError(f"sfh_max_age {spec.sfh_max_age!r} unknown; supported: {SFH_MAX_AGE_CONVENTIONS}")
        self.spec = spec
        self.svo_filter_cache = Path(svo_filter_cache)
        self.chunk_size = chunk_size
        grid = Grid(spec.grid_name, grid_dir=spec.grid_dir)
        self.spectra = np.ascontiguousarray(np.asarray(grid.spectra["incident"], dtype=float))  # (n_age, n_Z, n_lam)
        self.lam = np.asarray(grid.lam.to("angstrom").value, dtype=float)
        ages = 10 ** np.asarray(grid.log10ages, dtype=float)
        self.age_edges = np.concatenate([[0.0], 0.5 * (ages[1:] + ages[:-1]), [ages[-1]]])
        self.metallicities = np.asarray(grid.metallicities, dtype=float)
        self.dust_tau = (self.lam / 5500.0) ** spec.dust_law_params.get("slope", -1.0)
        if spec.emission_model == "incident":
            self.dust_tau = np.zeros_like(self.lam)  # no attenuation
        collection = FilterCollection(filter_codes=list(spec.filters), new_lam=grid.lam)
        self.filters = collection  # stored in the library's Model group (write_library)
        self.filter_curves = []
        for code in spec.filters:
            nu = angstrom_to_hz(np.asarray(collection.filters[code].original_lam.to("angstrom").value, dtype=float))
            order = np.argsort(nu)
            self.filter_curves.append((nu[order], np.asarray(collection.filters[code].original_t, dtype=float)[order]))
        self._cosmology = astropy_cosmology(spec.cosmology)
        self._age_at_max_redshift_yr = float(self._cosmology.age(spec.sfh_max_redshift).to("yr").value)
        self._min_age_yr = spec.min_age_yr
        self._igm_model = getattr(igm, spec.igm)()
        self._z_max = 0.0

    # -- tables over redshift ----------------------------------------------------------------------
    def _ensure_tables(self, z_max: float) -> None:
        """Cosmology (d_L, age) and IGM tables up to z_max (rebuilt only when a larger z turns up)."""
        if z_max <= self._z_max:
            return
        from unyt import angstrom

        self._z_max = float(np.ceil(z_max * 2) / 2)
        self._z_cosmo = np.arange(0.0, self._z_max + COSMOLOGY_Z_STEP, COSMOLOGY_Z_STEP)
        self._dl_cm = mpc_to_cm(self._cosmology.luminosity_distance(self._z_cosmo).to("Mpc").value)
        self._age_yr = self._cosmology.age(self._z_cosmo).to("yr").value
        # Only rest wavelengths that some filter can see at some z in [0, z_max] matter downstream.
        lam_low = min(hz_to_angstrom(nu.max()) for nu, _ in self.filter_curves) / (1 + self._z_max)
        lam_high = max(hz_to_angstrom(nu.min()) for nu, _ in self.filter_curves)
        inside = np.flatnonzero((self.lam >= lam_low) & (self.lam <= lam_high))
        keep = slice(max(inside[0] - 1, 0), min(inside[-1] + 2, len(self.lam)))
        self._lam = self.lam[keep]
        self._spectra = np.ascontiguousarray(self.spectra[:, :, keep].transpose(1, 0, 2))  # (n_Z, n_age, n_lam)
        self._dust_tau = self.dust_tau[keep]
        self._z_igm = np.arange(0.0, self._z_max + IGM_Z_STEP, IGM_Z_STEP)
        table = np.ones((len(self._z_igm), len(self._lam)))
        for i, z in enumerate(self._z_igm[1:], start=1):
            table[i] = self._igm_model.get_transmission(z, self._lam * (1 + z) * angstrom)
        self._igm_table = table

    def _igm(self, z: np.ndarray) -> np.ndarray:
        position = z / IGM_Z_STEP
        index = np.minimum(position.astype(int), len(self._z_igm) - 2)
        fraction = (position - index)[:, None]
        return (1 - fraction) * self._igm_table[index] + fraction * self._igm_table[index + 1]

    # -- the model ---------------------------------------------------------------------------------
    def sfh_weights(self, max_age_yr: np.ndarray, tau: np.ndarray, peak_age_yr: np.ndarray) -> np.ndarray:
        """Mass fraction formed in each age bin, (n, n_age), rows summing to 1; nothing forms at ages below
        the spec's ``min_age`` (synthesizer's LogNormal is zero there)."""
        t0 = np.log(max_age_yr - peak_age_yr) + tau**2
        edges = np.minimum(self.age_edges[None, :], max_age_yr[:, None] * (1 - 1e-12))
        if self._min_age_yr > 0:
            edges = np.maximum(edges, np.minimum(self._min_age_yr, max_age_yr[:, None] * (1 - 1e-12)))
        u = np.log(max_age_yr[:, None] - edges)
        cumulative = -erf((u - t0[:, None]) / (tau[:, None] * np.sqrt(2)))
        weights = np.diff(cumulative, axis=1)
        return weights / weights.sum(axis=1, keepdims=True)

    def metallicity_bins(self, log10_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cloud-in-cell, linear in Z: (lower grid index i, weight f of index i + 1) per galaxy; the
        weights are 1 - f and f. Z outside the grid is clipped to its end points."""
        z = np.clip(10**log10_z, self.metallicities[0], self.metallicities[-1])
        upper = np.clip(np.searchsorted(self.metallicities, z), 1, len(self.metallicities) - 1)
        fraction = (z - self.metallicities[upper - 1]) / (self.metallicities[upper] - self.metallicities[upper - 1])
        return upper - 1, fraction

    def _chunk(self, theta: np.ndarray) -> np.ndarray:
        z = self.spec.parameter(theta, "redshift")
        mass = 10 ** self.spec.parameter(theta, "log_mass")
        max_age = self.spec.max_age_yr(np.interp(z, self._z_cosmo, self._age_yr), self._age_at_max_redshift_yr)
        peak_age_yr = myr_to_yr(self.spec.parameter(theta, "peak_age"))
        age_w = self.sfh_weights(max_age, self.spec.parameter(theta, "tau"), peak_age_yr)
        lower, fraction = self.metallicity_bins(self.spec.parameter(theta, "log10metallicity"))
        lnu = np.empty((len(theta), len(self._lam)))
        for k in np.unique(lower):  # two contractions per galaxy, grouped by metallicity bin
            rows = np.flatnonzero(lower == k)
            f = fraction[rows, None]
            lnu[rows] = (1 - f) * (age_w[rows] @ self._spectra[k]) + f * (age_w[rows] @ self._spectra[k + 1])
        tau_v = np.zeros(len(theta)) if self.spec.emission_model == "incident" else self.spec.parameter(theta, "tau_v")
        lnu *= mass[:, None] * np.exp(-tau_v[:, None] * self._dust_tau[None, :])
        dl = np.interp(z, self._z_cosmo, self._dl_cm)
        fnu = cgs_to_njy(lnu * ((1 + z) / (4 * np.pi * dl**2))[:, None]) * self._igm(z)
        nu_obs = angstrom_to_hz(self._lam[None, :] * (1 + z)[:, None])  # (n, n_lam), decreasing along lam
        d_nu = np.diff(nu_obs, axis=1)
        photometry = np.empty((len(theta), len(self.filter_curves)))
        for j, (nu_f, t_f) in enumerate(self.filter_curves):
            weight = np.interp(nu_obs, nu_f, t_f, left=0.0, right=0.0) / nu_obs
            inside = (weight[:, 1:] != 0) & (weight[:, :-1] != 0)  # synthesizer integrates over the nonzero span
            numerator = 0.5 * np.sum(d_nu * (fnu[:, 1:] * weight[:, 1:] + fnu[:, :-1] * weight[:, :-1]) * inside,
                                     axis=1)
            denominator = 0.5 * np.sum(d_nu * (weight[:, 1:] + weight[:, :-1]) * inside, axis=1)
            photometry[:, j] = numerator / denominator
        return photometry

    def __call__(self, theta: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise-free fluxes (n, n_filters) in nJy for parameters theta (n, d)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        self._ensure_tables(float(self.spec.parameter(theta, "redshift").max()))
        if not len(theta):
            return np.empty((0, len(self.filter_curves)))
        return np.concatenate([self._chunk(theta[i:i + self.chunk_size])
                               for i in range(0, len(theta), self.chunk_size)])
