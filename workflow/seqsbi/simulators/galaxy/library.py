"""Model libraries in synference's HDF5 layout.

``Grid/Photometry`` (n_filters, n_gal) in nJy, ``Grid/Parameters`` (n_params, n_gal); root attributes
``ParameterNames``, ``ParameterUnits``, ``FilterCodes``, ``PhotometryUnits``, ``model_name``; a
``Model`` group holding the :class:`GalaxyModelSpec` that rebuilds the simulator and, as synference
stores them, the filter curves in ``Model/Instrument/Filters`` (synthesizer's
``FilterCollection.write_filters`` layout: ``Header`` with ``Wavelengths``, attributes ``filter_codes``,
``Wavelength_units``; a group per filter, code with ``/`` as ``.``, holding ``Original_Wavelength`` and
``Original_Transmission``). Libraries without stored curves still read; their simulator takes the
curves from the configured filters instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqsbi import artifacts
from seqsbi.errors import LibraryError
from seqsbi.simulators.galaxy.model import PARAMETER_UNITS, GalaxyModelSpec
from seqsbi.units import WAVELENGTH_TO_ANGSTROM, WAVELENGTH_UNIT_SPELLINGS, angstrom_per, njy_to_ab

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
        if filters is not None:
            filters_file = Path(scratch) / "filters.hdf5"
            filters.write_filters(str(filters_file))
            with h5py.File(filters_file, "r") as source:
                group = hf.create_group(FILTERS_GROUP)
                for key, value in source.attrs.items():
                    group.attrs[key] = value
                for name in source:
                    source.copy(source[name], group, name=name)


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


def read_library(path: str | Path) -> Library:
    """Read a library (ours or synference's); raise LibraryError naming what is missing."""
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
            return _read_open_library(hf, path)
    except (OSError, KeyError, TypeError, ValueError, IndexError) as error:
        if isinstance(error, LibraryError):
            raise
        raise LibraryError(f"library {str(path)!r} cannot be read ({type(error).__name__}: {error}); it is damaged "
                           f"or not in synference's layout; {_LIBRARY_FIX}") from None


def _read_open_library(hf, path: Path) -> Library:
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
    theta = np.asarray(hf["Grid/Parameters"], dtype=float).T
    photometry = np.asarray(hf["Grid/Photometry"], dtype=float).T
    if theta.shape[1] != len(names) or photometry.shape[1] != len(filters) or len(theta) != len(photometry):
        raise LibraryError(f"library {str(path)!r}: shapes disagree: Parameters {theta.T.shape} for "
                           f"{len(names)} names, Photometry {photometry.T.shape} for {len(filters)} filters")
    units_attr = hf.attrs.get("ParameterUnits")
    parameter_units = (artifacts.attribute_texts(units_attr) if units_attr is not None
                       else tuple(PARAMETER_UNITS.get(n, "") for n in names))
    spec = GalaxyModelSpec.from_attrs(dict(hf["Model"].attrs)) if "Model" in hf else None
    model_name = artifacts.attribute_text(hf.attrs.get("model_name", path.stem))
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
