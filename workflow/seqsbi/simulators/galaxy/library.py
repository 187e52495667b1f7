"""Model libraries in synference's HDF5 layout.

``Grid/Photometry`` (n_filters, n_gal) in nJy, ``Grid/Parameters`` (n_params, n_gal); root attributes
``ParameterNames``, ``ParameterUnits``, ``FilterCodes``, ``PhotometryUnits``, ``model_name``; a
``Model`` group holding the :class:`GalaxyModelSpec` that rebuilds the simulator and, as synference
stores them, the filter curves in ``Model/Instrument/Filters`` (synthesizer's
``FilterCollection.write_filters`` layout: ``Header`` with ``Wavelengths``, attributes ``filter_codes``,
``Wavelength_units``; a group per filter, code with ``/`` as ``.``, holding ``Original_Wavelength`` and
``Original_Transmission``). Libraries without stored curves still read; their simulator takes the
curves from the configured filters instead.

The ``Model`` group is read as synference 0.1.4 writes it (``GalaxyBasis._store_model``): attributes
``sfh_class``, ``metallicity_distribution_class``, ``emission_model_key``, ``cosmology`` (astropy's YAML
serialisation), ``fixed_param_names``/``_values``/``_units``, ``stellar_params``, ``grid_name``, ``grid_dir``,
and the subgroup ``EmissionModel`` (``name``, ``dust_law``, ``dust_attenuation_keys``/``_values``/``_units``).
seqsbi writes the same attributes beside its own (``sfh``, ``metal_dist``, ``emission_model``, ``dust_law``,
``dust_law_params``, ``igm``, ``fixed_parameters``, ``sfh_max_age``, ``sfh_max_redshift``, ...); where both are
present seqsbi's are read. synference records no maximum-age convention: its ``generate_sfh_basis`` uses
age(z) - age(z = 20), which a library without ``sfh_max_age`` is taken to follow. Whatever seqsbi cannot
rebuild (another SFH, metallicity distribution, emission model, dust law, fixed parameter or a ``Transforms``
group) is a :class:`LibraryError` naming the attribute and its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqsbi import artifacts
from seqsbi.errors import LibraryError
from seqsbi.simulators.galaxy import model as galaxy_model
from seqsbi.simulators.galaxy.model import PARAMETER_UNITS, GalaxyModelSpec
from seqsbi.units import (
    WAVELENGTH_TO_ANGSTROM,
    WAVELENGTH_UNIT_SPELLINGS,
    YR_PER_TIME_UNIT,
    angstrom_per,
    njy_to_ab,
)

REQUIRED_DATASETS = ("Grid/Photometry", "Grid/Parameters")
REQUIRED_ATTRIBUTES = ("ParameterNames", "FilterCodes")
FILTERS_GROUP = "Model/Instrument/Filters"
#: The likely fix for a library that cannot be read, appended to every such LibraryError.
_LIBRARY_FIX = ("point galaxy.library.path at a complete library (seqsbi's or synference's layout), or remove "
                "galaxy.library.path and let the workflow build one (rule model_library; delete a damaged built "
                "file first)")


@dataclass(frozen=True)
class Library:
    """theta (n_gal, n_params) and photometry (n_gal, n_filters) in nJy, with names and the model spec."""

    model_name: str
    parameter_names: tuple[str, ...]
    parameter_units: tuple[str, ...]
    filter_codes: tuple[str, ...]
    theta: np.ndarray
    photometry_njy: np.ndarray
    spec: GalaxyModelSpec | None
    #: code -> (wavelength (n,) in Angstrom, transmission (n,)) stored in Model/Instrument/Filters, or None.
    filter_curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None


def write_library(path: str | Path, model_name: str, theta: np.ndarray, photometry_njy: np.ndarray,
                  spec: GalaxyModelSpec, filters=None) -> None:
    """Write a library atomically. theta (n_gal, n_params), photometry (n_gal, n_filters) in nJy;
    ``filters`` (the simulator's synthesizer FilterCollection, optional) is stored as
    ``Model/Instrument/Filters`` with synthesizer's own ``write_filters``."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as scratch, artifacts.atomic_path(path) as temporary, \
            h5py.File(temporary, "w") as hf:
        hf.create_dataset("Grid/Photometry", data=np.asarray(photometry_njy, dtype=float).T)
        hf.create_dataset("Grid/Parameters", data=np.asarray(theta, dtype=float).T)
        hf.attrs["ParameterNames"] = list(spec.parameter_names)
        hf.attrs["ParameterUnits"] = [PARAMETER_UNITS.get(name, "") for name in spec.parameter_names]
        hf.attrs["FilterCodes"] = list(spec.filters)
        hf.attrs["PhotometryUnits"] = "nJy"
        hf.attrs["model_name"] = model_name
        model = hf.create_group("Model")
        for key, value in spec.to_attrs().items():
            model.attrs[key] = value
        _write_synference_model_attrs(model, spec, model_name)
        if filters is not None:
            filters_file = Path(scratch) / "filters.hdf5"
            filters.write_filters(str(filters_file))
            with h5py.File(filters_file, "r") as source:
                group = hf.create_group(FILTERS_GROUP)
                for key, value in source.attrs.items():
                    group.attrs[key] = value
                for name in source:
                    source.copy(source[name], group, name=name)
            model["Instrument"].attrs["instrument_type"] = "photometric"  # as synthesizer's Instrument.to_hdf5
            model["Instrument"].attrs["label"] = "seqsbi"


def _write_synference_model_attrs(model, spec: GalaxyModelSpec, model_name: str) -> None:
    """The Model group's attributes under synference's names (see the module docstring), so synference's
    reader finds the conventions seqsbi's own attributes record."""
    class_name, key = galaxy_model.EMISSION_MODELS[spec.emission_model]
    model.attrs["cosmology"] = galaxy_model.astropy_cosmology(spec.cosmology).to_format("yaml")
    model.attrs["sfh_class"] = spec.sfh
    model.attrs["metallicity_distribution_class"] = spec.metal_dist
    model.attrs["emission_model_key"] = key
    fixed = {"min_age": 0.0, **spec.fixed_parameters}
    model.attrs["fixed_param_names"] = list(fixed)
    model.attrs["fixed_param_values"] = [float(v) for v in fixed.values()]
    model.attrs["fixed_param_units"] = ["yr" if name in galaxy_model.FIXED_SFH_PARAMETERS
                                        else PARAMETER_UNITS.get(name, "") for name in fixed]
    model.attrs["varying_param_names"] = list(spec.parameter_names)
    model.attrs["stellar_params"] = ["tau_v"] if spec.emission_model != "incident" else []
    model.attrs["model_name"] = model_name
    model.attrs["cat_type"] = "photometry"
    emission = model.create_group("EmissionModel")
    emission.attrs["name"] = class_name
    for name in ("parameter_keys", "parameter_values", "parameter_units"):
        emission.attrs[name] = np.array([], dtype=float)  # as synference writes a model without fixed parameters
    if spec.emission_model != "incident":
        emission.attrs["dust_law"] = spec.dust_law
        emission.attrs["dust_attenuation_keys"] = list(spec.dust_law_params)
        emission.attrs["dust_attenuation_values"] = [float(v) for v in spec.dust_law_params.values()]
        emission.attrs["dust_attenuation_units"] = [""] * len(spec.dust_law_params)


def model_spec_from_group(model, parameter_names: tuple[str, ...], where: str) -> GalaxyModelSpec:
    """The :class:`GalaxyModelSpec` of a library's ``Model`` group, written by seqsbi or by synference.

    ``parameter_names`` are the library's ``ParameterNames`` (the columns of theta). Raises LibraryError naming
    the attribute and its value for anything seqsbi cannot rebuild; see the module docstring.
    """
    attrs = dict(model.attrs)
    spec_fields = GalaxyModelSpec.__dataclass_fields__
    ours = {key: value for key, value in attrs.items() if key in spec_fields}
    ours.setdefault("parameter_names", list(parameter_names))

    def text(key: str, group=model) -> str | None:
        value = group.attrs.get(key)
        return None if value is None else artifacts.attribute_texts(value)[0]

    def refuse(attribute: str, value, supported) -> LibraryError:
        return LibraryError(f"{where}: Model attribute {attribute!r} is {value!r}, which seqsbi cannot rebuild; "
                            f"supported: {', '.join(supported)}; use a library of a supported model in "
                            f"galaxy.library.path")

    if "Transforms" in model:
        raise LibraryError(f"{where}: Model group 'Transforms' ({', '.join(model['Transforms'])}) holds parameter "
                           f"transforms as Python source, which seqsbi does not run; store the model's own "
                           f"parameters instead")
    for key, synference_key in (("sfh", "sfh_class"), ("metal_dist", "metallicity_distribution_class")):
        if key not in ours and text(synference_key) is not None:
            ours[key] = text(synference_key)
    for key in ("grid_name", "grid_dir"):
        if key not in ours:
            raise LibraryError(f"{where}: Model group lacks attribute {key!r} (grid_name and grid_dir name the SPS "
                               f"grid the simulator is rebuilt with); {_LIBRARY_FIX}")
    if "filters" not in ours and "Instrument" in model and "Filters" in model["Instrument"]:
        header = model["Instrument/Filters/Header"]
        ours["filters"] = list(artifacts.attribute_texts(header.attrs.get("filter_codes", [])))
    ours.setdefault("filters", [])
    if "emission_model" not in ours:
        ours.update(_synference_emission(model, text, refuse, where))
    if "fixed_parameters" not in ours:
        ours["fixed_parameters"] = _synference_fixed_parameters(model, where)
    else:
        ours["fixed_parameters"] = artifacts.attribute_text(ours["fixed_parameters"])
    if "sfh_max_age" not in ours:  # synference's generate_sfh_basis: max_age = age(z) - age(max_redshift = 20)
        ours["sfh_max_age"] = "age_since_max_redshift"
    if "cosmology" in ours:
        ours["cosmology"] = _cosmology_attribute(artifacts.attribute_text(ours["cosmology"]), where)
    for key in ("dust_law_params", "fixed_parameters"):
        if not isinstance(ours.get(key, ""), (str, bytes)):
            ours[key] = json.dumps(ours[key])
    spec = GalaxyModelSpec.from_attrs(ours)
    checks = (("sfh", galaxy_model.SUPPORTED_SFH), ("metal_dist", galaxy_model.SUPPORTED_METAL_DIST),
              ("emission_model", tuple(galaxy_model.EMISSION_MODELS)), ("dust_law", galaxy_model.SUPPORTED_DUST_LAWS),
              ("igm", galaxy_model.SUPPORTED_IGM), ("sfh_max_age", galaxy_model.SFH_MAX_AGE_CONVENTIONS))
    synference_names = {"sfh": "sfh_class", "metal_dist": "metallicity_distribution_class"}
    for key, supported in checks:
        if getattr(spec, key) not in supported:
            attribute = key if key in attrs else synference_names.get(key, key)
            raise refuse(attribute, getattr(spec, key), supported)
    if set(spec.dust_law_params) - {"slope"}:
        raise refuse("EmissionModel/dust_attenuation_keys", sorted(spec.dust_law_params), ["slope"])
    model_parameters = set(galaxy_model.PARAMETERS)
    unknown = sorted(set(spec.fixed_parameters) - model_parameters - set(galaxy_model.FIXED_SFH_PARAMETERS))
    if unknown:
        raise refuse("fixed_param_names", unknown, [*galaxy_model.FIXED_SFH_PARAMETERS, *galaxy_model.PARAMETERS])
    return spec


def _synference_emission(model, text, refuse, where: str) -> dict:
    """seqsbi's emission_model, dust_law and dust_law_params from synference's EmissionModel subgroup."""
    if "EmissionModel" not in model:
        raise LibraryError(f"{where}: Model group has neither 'emission_model' (seqsbi) nor an 'EmissionModel' "
                           f"subgroup (synference)")
    emission = model["EmissionModel"]
    name = text("name", emission)
    by_class = {class_name: (ours, key) for ours, (class_name, key) in galaxy_model.EMISSION_MODELS.items()}
    if name not in by_class:
        raise refuse("EmissionModel/name", name, [f"{c} (key {k!r})" for c, (_, k) in by_class.items()])
    ours, key = by_class[name]
    recorded_key = text("emission_model_key")
    if recorded_key is not None and recorded_key != key:
        raise refuse("emission_model_key", recorded_key, [f"{key!r} for {name}"])
    fixed = artifacts.attribute_texts(emission.attrs.get("parameter_keys", []))
    fixed = [k for k in fixed if k not in ("", "nan")]
    if fixed:
        raise refuse("EmissionModel/parameter_keys", fixed, ["none (the grid's incident spectra, no other setting)"])
    out = {"emission_model": ours}
    if ours == "incident":
        return out
    law = text("dust_law", emission)
    if law is None:
        raise LibraryError(f"{where}: Model/EmissionModel {name} has no 'dust_law' attribute")
    keys = artifacts.attribute_texts(emission.attrs.get("dust_attenuation_keys", []))
    values = np.atleast_1d(emission.attrs.get("dust_attenuation_values", []))
    units = artifacts.attribute_texts(emission.attrs.get("dust_attenuation_units", [""] * len(keys)))
    if any(unit not in ("", "dimensionless") for unit in units):
        raise refuse("EmissionModel/dust_attenuation_units", list(units), ["dimensionless"])
    out["dust_law"] = law
    out["dust_law_params"] = {k: float(artifacts.attribute_text(v)) for k, v in zip(keys, values)}
    return out


def _synference_fixed_parameters(model, where: str) -> dict[str, float]:
    """synference's fixed_param_names/_values/_units as seqsbi's fixed_parameters (SFH times in yr, model
    parameters in seqsbi's units)."""
    names = artifacts.attribute_texts(model.attrs.get("fixed_param_names", []))
    names = tuple(name for name in names if name not in ("", "nan"))
    values = np.atleast_1d(model.attrs.get("fixed_param_values", []))
    units = artifacts.attribute_texts(model.attrs.get("fixed_param_units", [""] * len(names)))
    if not (len(names) == len(values) == len(units)):
        raise LibraryError(f"{where}: Model attributes fixed_param_names, fixed_param_values and fixed_param_units "
                           f"differ in length ({len(names)}, {len(values)}, {len(units)})")
    fixed = {}
    for name, value, unit in zip(names, values, units):
        value = float(artifacts.attribute_text(value))
        if name in galaxy_model.FIXED_SFH_PARAMETERS:
            if unit not in YR_PER_TIME_UNIT:
                raise LibraryError(f"{where}: Model attribute fixed_param_units gives {name} the unit {unit!r}; "
                                   f"known: {', '.join(YR_PER_TIME_UNIT)}")
            value *= YR_PER_TIME_UNIT[unit]
        elif name == "peak_age" and unit != "Myr":
            if unit not in YR_PER_TIME_UNIT:
                raise LibraryError(f"{where}: Model attribute fixed_param_units gives peak_age the unit {unit!r}; "
                                   f"known: {', '.join(YR_PER_TIME_UNIT)}")
            value *= YR_PER_TIME_UNIT[unit] / YR_PER_TIME_UNIT["Myr"]
        fixed[name] = value
    return fixed


def _cosmology_attribute(value: str, where: str) -> str:
    """A library's ``cosmology`` attribute, checked: a realization's name stays a name; astropy's YAML
    serialisation becomes that realization's name when it is one exactly (same parameters: same numbers,
    checked), else stays YAML. LibraryError naming the attribute when astropy cannot read it."""
    try:
        cosmology = galaxy_model.astropy_cosmology(value)
    except Exception as error:  # astropy raises several kinds for a bad YAML or name
        raise LibraryError(f"{where}: Model attribute 'cosmology' ({value[:80]!r}) is neither an astropy realization's "
                           f"name nor astropy's YAML serialisation of a cosmology ({type(error).__name__}: {error})"
                           ) from None
    if not value.lstrip().startswith("!"):
        return value
    from astropy.cosmology import realizations

    name = str(cosmology.name)
    if name in realizations.available and cosmology == getattr(realizations, name):
        return name
    return value


def read_filter_curves(group, where: str = "library") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """code -> (wavelength (n,) in Angstrom, transmission (n,)) from a group in synthesizer's
    ``write_filters`` layout (the original, not resampled, curves); LibraryError naming what is missing."""
    if "Header" not in group or "filter_codes" not in group["Header"].attrs:
        raise LibraryError(f"{where}: {FILTERS_GROUP} lacks Header/filter_codes (synthesizer's write_filters layout)")
    unit = artifacts.attribute_text(group["Header"].attrs.get("Wavelength_units", "Å"))
    scale = angstrom_per(unit)
    if scale is None:
        raise LibraryError(f"{where}: {FILTERS_GROUP} wavelength unit {unit!r} unknown; known: "
                           f"{', '.join([*WAVELENGTH_TO_ANGSTROM, *WAVELENGTH_UNIT_SPELLINGS])}")
    curves = {}
    for code in artifacts.attribute_texts(group["Header"].attrs["filter_codes"]):
        name = code.replace("/", ".")
        if name not in group:
            raise LibraryError(f"{where}: {FILTERS_GROUP} lists {code!r} but has no group {name!r}")
        member = group[name]
        if "Original_Wavelength" in member and "Original_Transmission" in member:
            wavelength, transmission = member["Original_Wavelength"], member["Original_Transmission"]
        else:  # written without the original curve: the one on the collection's wavelength grid
            wavelength, transmission = group["Header"]["Wavelengths"], member["Transmission"]
        wavelength = np.asarray(wavelength, dtype=float)
        if scale != 1.0:
            wavelength = wavelength * scale
        curves[code] = (wavelength, np.asarray(transmission, dtype=float))
    return curves


def read_library(path: str | Path, arrays: bool = True) -> Library:
    """Read a library (ours or synference's); raise LibraryError naming what is missing.

    Each dataset is read once, straight into one float64 array (HDF5 converts other float types while
    reading), and theta/photometry are transposed views of those: peak memory is one copy of the arrays
    (a 10^6-row, 6-parameter, 8-band library: 112 MB; benchmarks/synference_library.py). ``arrays=False``
    reads names, the model and the filter curves only (theta and photometry then have no rows), for
    callers that only rebuild the simulator.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"library {str(path)!r} does not exist; {_LIBRARY_FIX}")
    try:
        hf = h5py.File(path, "r")
    except OSError as error:
        raise LibraryError(f"library {str(path)!r} cannot be opened as HDF5 (truncated, or not an HDF5 file: {error}); "
                           f"{_LIBRARY_FIX}") from None
    try:
        with hf:
            return _read_open_library(hf, path, arrays)
    except (OSError, KeyError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, LibraryError):
            raise
        raise LibraryError(f"library {str(path)!r} cannot be read ({type(error).__name__}: {error}); it is damaged "
                           f"or not in synference's layout; {_LIBRARY_FIX}") from None


def _read_float_array(dataset, rows: bool = True) -> np.ndarray:
    """A 2-D dataset as one float64 array (n, m) read in place (no second copy), or (n, 0) without ``rows``."""
    if not rows:
        return np.empty((dataset.shape[0], 0))
    out = np.empty(dataset.shape, dtype=np.float64)
    if out.size:
        dataset.read_direct(out)
    return out


def _read_open_library(hf, path: Path, arrays: bool = True) -> Library:
    """The body of :func:`read_library` on an open file."""
    for key in REQUIRED_DATASETS:
        if key not in hf:
            raise LibraryError(f"library {str(path)!r} lacks dataset {key!r}; "
                               f"required: {', '.join(REQUIRED_DATASETS)}; {_LIBRARY_FIX}")
    for key in REQUIRED_ATTRIBUTES:
        if key not in hf.attrs:
            raise LibraryError(f"library {str(path)!r} lacks root attribute {key!r}; "
                               f"required: {', '.join(REQUIRED_ATTRIBUTES)}; {_LIBRARY_FIX}")
    units = artifacts.attribute_text(hf.attrs.get("PhotometryUnits", "nJy"))
    if units != "nJy":
        raise LibraryError(f"library {str(path)!r}: PhotometryUnits is {units!r}; only 'nJy' is supported")
    names = artifacts.attribute_texts(hf.attrs["ParameterNames"])
    filters = artifacts.attribute_texts(hf.attrs["FilterCodes"])
    for key in REQUIRED_DATASETS:
        if hf[key].ndim != 2:
            raise LibraryError(f"library {str(path)!r}: dataset {key!r} has shape {hf[key].shape}; it must be 2-D "
                               f"(n_parameters or n_filters, n_galaxies)")
    theta = _read_float_array(hf["Grid/Parameters"], arrays).T
    photometry = _read_float_array(hf["Grid/Photometry"], arrays).T
    parameters_shape, photometry_shape = hf["Grid/Parameters"].shape, hf["Grid/Photometry"].shape
    if parameters_shape[0] != len(names) or photometry_shape[0] != len(filters) or \
            parameters_shape[1] != photometry_shape[1]:
        raise LibraryError(f"library {str(path)!r}: shapes disagree: Parameters {parameters_shape} for "
                           f"{len(names)} names, Photometry {photometry_shape} for {len(filters)} filters")
    units_attr = hf.attrs.get("ParameterUnits")
    parameter_units = (artifacts.attribute_texts(units_attr) if units_attr is not None
                       else tuple(PARAMETER_UNITS.get(n, "") for n in names))
    spec = model_spec_from_group(hf["Model"], names, f"library {str(path)!r}") if "Model" in hf else None
    model_name = artifacts.attribute_texts(hf.attrs.get("model_name", path.stem))[0]
    curves = read_filter_curves(hf[FILTERS_GROUP], f"library {str(path)!r}") if FILTERS_GROUP in hf else None
    if curves is not None and not set(filters) <= set(curves):
        raise LibraryError(f"library {str(path)!r}: {FILTERS_GROUP} lacks curves for "
                           f"{sorted(set(filters) - set(curves))} of FilterCodes")
    return Library(model_name, names, parameter_units, filters, theta, photometry, spec, curves)


def require_model(library: Library, path: str | Path) -> GalaxyModelSpec:
    """The library's model spec; LibraryError naming ``path`` when the library (read from ``path``) has no
    ``Model`` group, without which its simulator cannot be rebuilt (online rounds, the rebuild check)."""
    if library.spec is None:
        raise LibraryError(f"library {str(path)!r} has no 'Model' group: the simulator cannot be rebuilt from it")
    return library.spec


def ab_magnitudes(flux_njy: np.ndarray) -> np.ndarray:
    """AB magnitudes from fluxes in nJy (m_AB = 31.4 - 2.5 log10 f_nJy); non-positive flux -> inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux_njy > 0, njy_to_ab(np.where(flux_njy > 0, flux_njy, 1.0)), np.inf)


def check_reconstruction(library: Library, simulator, rows: np.ndarray, tolerance_mag: float = 1e-3) -> list[str]:
    """Re-simulate library ``rows`` and list every (row, band) whose AB magnitude differs by more than
    ``tolerance_mag`` from the stored photometry (empty list: the simulator reproduces the library)."""
    stored = ab_magnitudes(library.photometry_njy[rows])
    again = ab_magnitudes(simulator(library.theta[rows]))
    problems = []
    for i, row in enumerate(rows):
        for j, band in enumerate(library.filter_codes):
            if not np.isfinite(stored[i, j]) and not np.isfinite(again[i, j]):
                continue
            difference = abs(again[i, j] - stored[i, j])
            if not difference <= tolerance_mag:
                problems.append(f"row {row} {band}: stored {stored[i, j]:.4f} AB, re-simulated {again[i, j]:.4f} AB")
    return problems
