"""The galaxy forward model, per galaxy through synthesizer (the ``reference`` backend).

Parameters (columns of theta, in this order unless the library says otherwise):
  redshift [dimensionless], log_mass [log10 Msun formed], tau_v [mag], tau [dimensionless],
  peak_age [Myr], log10metallicity [log10 Z].
Model: LogNormal SFH from ``min_age`` (a fixed parameter, 0 unless the library says otherwise) to a
maximum age set by the redshift (seqsbi's libraries: the age of the Universe at z; synference's: age(z) -
age(z = 20), see :attr:`GalaxyModelSpec.sfh_max_age`), DeltaConstant metallicity, incident stellar emission
from the SPS grid attenuated by a power-law dust curve (tau_v), Inoue14 IGM, a cosmology from astropy (a
realization's name or astropy's YAML serialisation), filters by SVO code. Output: fluxes in nJy.
``log_mass`` is the mass *formed* (synthesizer's initial_mass), not the surviving stellar mass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi.artifacts import attribute_text, attribute_texts
from seqsbi.simulators.galaxy import configure_synthesizer

PARAMETERS = ("redshift", "log_mass", "tau_v", "tau", "peak_age", "log10metallicity")
PARAMETER_UNITS = {"redshift": "", "log_mass": "log10 Msun", "tau_v": "mag", "tau": "",
                   "peak_age": "Myr", "log10metallicity": "log10 Z"}


#: The SFH's maximum age at redshift z: the age of the Universe at z (seqsbi's libraries), or the time since
#: ``sfh_max_redshift`` (age(z) - age(z_max); synference's ``generate_sfh_basis``, z_max = 20 by default).
SFH_MAX_AGE_CONVENTIONS = ("age_of_universe_at_redshift", "age_since_max_redshift")
#: Model classes the simulators implement, by the names synthesizer and synference use.
SUPPORTED_SFH = ("LogNormal",)
SUPPORTED_METAL_DIST = ("DeltaConstant",)
SUPPORTED_DUST_LAWS = ("PowerLaw",)
SUPPORTED_IGM = ("Inoue14", "Madau96")
#: seqsbi's emission model -> (synthesizer's class, its emission model key (label)), as synference records them.
EMISSION_MODELS = {"attenuated_incident": ("AttenuatedEmission", "attenuated"), "incident": ("IncidentEmission",
                                                                                              "incident")}
#: Fixed parameters a library may set besides the model parameters (their units: SFH times in yr).
FIXED_SFH_PARAMETERS = ("min_age",)


def astropy_cosmology(value: str):
    """The astropy cosmology a library records: a realization's name (``Planck18``) or astropy's YAML
    serialisation (``!astropy.cosmology.FlatLambdaCDM ...``, as synference writes it). Raises ValueError."""
    from astropy import cosmology

    if value.lstrip().startswith("!"):
        return cosmology.Cosmology.from_format(value, format="yaml")
    if value not in cosmology.realizations.available:
        raise ValueError(f"cosmology {value!r} is not an astropy realization; known: "
                         f"{', '.join(cosmology.realizations.available)}")
    return getattr(cosmology.realizations, value)


@dataclass(frozen=True)
class GalaxyModelSpec:
    """Everything needed to rebuild the simulator; stored as the library's ``Model`` group.

    ``sfh_max_age`` is one of :data:`SFH_MAX_AGE_CONVENTIONS`; ``cosmology`` an astropy realization's name or
    astropy's YAML serialisation; ``fixed_parameters`` maps model parameters held fixed (their seqsbi units)
    and ``min_age`` (yr) to values.
    """

    grid_name: str
    grid_dir: str
    filters: tuple[str, ...]
    parameter_names: tuple[str, ...] = PARAMETERS
    sfh: str = "LogNormal"
    sfh_max_age: str = "age_of_universe_at_redshift"
    sfh_max_redshift: float = 20.0
    metal_dist: str = "DeltaConstant"
    emission_model: str = "attenuated_incident"
    dust_law: str = "PowerLaw"
    dust_law_params: dict[str, float] = field(default_factory=lambda: {"slope": -0.7})
    igm: str = "Inoue14"
    cosmology: str = "Planck18"
    fixed_parameters: dict[str, float] = field(default_factory=dict)
    mass_definition: str = "log_mass = log10(initial (formed) stellar mass / Msun)"

    def to_attrs(self) -> dict[str, Any]:
        """HDF5-attribute-friendly dict (dicts as JSON, tuples as lists of str)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else (
                [str(v) for v in value] if isinstance(value, (list, tuple)) else value)
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> GalaxyModelSpec:
        """The spec from a ``Model`` group's attributes (the inverse of :meth:`to_attrs`)."""
        kwargs = {}
        for name in cls.__dataclass_fields__:
            if name not in attrs:
                continue
            value = attrs[name]
            if name in ("dust_law_params", "fixed_parameters"):
                kwargs[name] = json.loads(attribute_text(value))
            elif name in ("filters", "parameter_names"):
                kwargs[name] = attribute_texts(value)
            elif name == "sfh_max_redshift":
                kwargs[name] = float(value)
            else:
                kwargs[name] = attribute_text(value)
        return cls(**kwargs)

    def max_age_yr(self, age_yr, age_at_max_redshift_yr: float):
        """The SFH's maximum age (yr) from the age of the Universe at each galaxy's redshift (yr), given the
        age at ``sfh_max_redshift`` (yr); shapes as ``age_yr``."""
        if self.sfh_max_age == "age_since_max_redshift":
            return age_yr - age_at_max_redshift_yr
        return age_yr

    @property
    def min_age_yr(self) -> float:
        """The SFH's minimum age in yr (fixed parameter ``min_age``; 0 when not set)."""
        return float(self.fixed_parameters.get("min_age", 0.0))

    def parameter(self, theta: np.ndarray, name: str) -> np.ndarray:
        """Parameter ``name`` for each row of theta (n, d): its column, or its fixed value repeated, (n,)."""
        if name in self.parameter_names:
            return theta[:, self.parameter_names.index(name)]
        return np.full(len(theta), float(self.fixed_parameters[name]))


def build_simulator(spec: GalaxyModelSpec, svo_filter_cache: str | Path, backend: str = "batched",
                    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
    """The galaxy simulator for ``spec``: ``batched`` (array algebra) or ``reference`` (synthesizer).

    Filter curves come from ``curves`` (code -> (wavelength in Angstrom, transmission): a library's
    stored ones, e.g. ``Library.filter_curves``) when given, else from the SVO-cache files in
    ``svo_filter_cache``. Raises ValueError for an unknown backend or ``curves`` missing a filter.
    """
    if curves is not None:
        from seqsbi.simulators.galaxy.filters import curves_cache_dir

        missing = [code for code in spec.filters if code not in curves]
        if missing:
            raise ValueError(f"stored filter curves lack {missing}")
        svo_filter_cache = curves_cache_dir({code: curves[code] for code in spec.filters})
    if backend == "batched":
        from seqsbi.simulators.galaxy.batched import BatchedGalaxySimulator

        return BatchedGalaxySimulator(spec, svo_filter_cache)
    if backend == "reference":
        return ReferenceGalaxySimulator(spec, svo_filter_cache)
    raise ValueError(f"galaxy backend {backend!r} unknown; allowed: batched, reference")


class ReferenceGalaxySimulator:
    """One synthesizer Galaxy per parameter vector (slow: ~20-40 galaxies/s)."""

    def __init__(self, spec: GalaxyModelSpec, svo_filter_cache: str | Path):
        configure_synthesizer(svo_filter_cache=svo_filter_cache)
        from synthesizer.emission_models import AttenuatedEmission, IncidentEmission
        from synthesizer.emission_models.transformers import dust_attenuation, igm
        from synthesizer.grid import Grid
        from synthesizer.instruments import FilterCollection

        supported = {"sfh": SUPPORTED_SFH, "metal_dist": SUPPORTED_METAL_DIST, "emission_model": tuple(EMISSION_MODELS),
                     "sfh_max_age": SFH_MAX_AGE_CONVENTIONS}
        for key, values in supported.items():
            if getattr(spec, key) not in values:
                raise ValueError(f"{key}: {getattr(spec, key)!r} is not supported yet; supported: {values}")
        self.spec = spec
        self.svo_filter_cache = Path(svo_filter_cache)
        self.grid = Grid(spec.grid_name, grid_dir=spec.grid_dir)
        self.filters = FilterCollection(filter_codes=list(spec.filters), new_lam=self.grid.lam)
        self.cosmology = astropy_cosmology(spec.cosmology)
        self._age_at_max_redshift_yr = float(self.cosmology.age(spec.sfh_max_redshift).to("yr").value)
        self.igm = getattr(igm, spec.igm)()
        incident = IncidentEmission(self.grid)
        if spec.emission_model == "incident":
            self.model = incident
        else:
            dust_curve = getattr(dust_attenuation, spec.dust_law)(**spec.dust_law_params)
            self.model = AttenuatedEmission(dust_curve=dust_curve, apply_to=incident, emitter="stellar")

    def _value(self, row: np.ndarray, name: str) -> float:
        return float(self.spec.parameter(row[None, :], name)[0])

    def photometry_njy(self, row: np.ndarray) -> np.ndarray:
        """Fluxes (n_filters,) in nJy for one parameter vector."""
        from synthesizer.parametric import SFH, Stars, ZDist
        from synthesizer.parametric.galaxy import Galaxy
        from unyt import Msun, Myr, yr

        redshift = self._value(row, "redshift")
        max_age = self.spec.max_age_yr(self.cosmology.age(redshift).to("yr").value, self._age_at_max_redshift_yr) * yr
        sfh = SFH.LogNormal(tau=self._value(row, "tau"), peak_age=self._value(row, "peak_age") * Myr, max_age=max_age,
                            min_age=self.spec.min_age_yr * yr)
        metal_dist = ZDist.DeltaConstant(log10metallicity=self._value(row, "log10metallicity"))
        stars = Stars(self.grid.log10ages, self.grid.metallicities, sf_hist=sfh, metal_dist=metal_dist,
                      initial_mass=10 ** self._value(row, "log_mass") * Msun,
                      **({} if self.spec.emission_model == "incident" else {"tau_v": self._value(row, "tau_v")}))
        sed = Galaxy(stars=stars, redshift=redshift).stars.get_spectra(self.model)
        sed.get_fnu(self.cosmology, redshift, igm=self.igm)
        return np.asarray(sed.get_photo_fnu(self.filters).photo_fnu.to("nJy").value, dtype=float)

    def __call__(self, theta: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise-free fluxes (n, n_filters) in nJy for parameters theta (n, d)."""
        theta = np.atleast_2d(theta)
        return np.stack([self.photometry_njy(row) for row in theta])
