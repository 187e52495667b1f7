"""The config's galaxy block: its checks, the files it names, and galaxy runs made explicit.

Runs at Snakefile parse time, so it stays cheap (numpy and h5py; no synthesizer import).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from seqsbi.errors import ConfigError, LibraryError
from seqsbi.priors import ParameterSpace
from seqsbi.simulators.galaxy import filters
from seqsbi.simulators.galaxy.features import FluxNoise
from seqsbi.simulators.galaxy.library import read_library, require_model
from seqsbi.simulators.galaxy.sps_grid import BC03_METALLICITIES_ZSUN, BC03_Z_SUN

BUILT_GRID_DIR = "results/galaxy/grids"
SVO_FILTER_CACHE = "results/galaxy/svo_filter_cache"
LIBRARY_DIR = "results/galaxy/libraries"


def grid_dir(galaxy: dict[str, Any]) -> str:
    return galaxy["sps_grid"].get("grid_dir", BUILT_GRID_DIR)


def grid_file(galaxy: dict[str, Any]) -> str:
    return f"{grid_dir(galaxy)}/{galaxy['sps_grid']['name']}.hdf5"


def stored_curves(galaxy: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Curves an existing library (library.path) carries in its Model group: code -> (Angstrom, T)."""
    library = existing_library(galaxy)
    return dict(library.filter_curves or {}) if library is not None else {}


def filter_cache_files(galaxy: dict[str, Any]) -> list[str]:
    """SVO-cache files (rule svo_filter) for the configured filters an existing library does not carry."""
    stored = stored_curves(galaxy)
    return [f"{SVO_FILTER_CACHE}/{filters.cache_key(code)}.hdf5" for code in galaxy["filters"] if code not in stored]


def filter_code(galaxy: dict[str, Any], key: str) -> str:
    """The configured filter code whose SVO-cache file stem is ``key`` (``HST_ACS_WFC.F606W``)."""
    codes = [code for code in galaxy["filters"] if filters.cache_key(code) == key]
    if not codes:
        raise ValueError(f"no configured galaxy filter has the cache file {key}.hdf5")
    return codes[0]


def filter_source(galaxy: dict[str, Any], key: str) -> dict[str, Any]:
    """rule svo_filter's params for cache file ``key``: the code and only its own settings (so editing
    another filter does not rewrite this one)."""
    code = filter_code(galaxy, key)
    source: dict[str, Any] = {"code": code}
    if code in galaxy.get("filter_files", {}):
        path, unit = filters.curve_file_spec(galaxy["filter_files"][code])
        source["filter_file"] = {"path": path, "wavelength_unit": unit}
    elif code in galaxy.get("tophat_filters", {}):
        source["tophat"] = galaxy["tophat_filters"][code]
    return source


def filter_file_inputs(galaxy: dict[str, Any], key: str) -> list[str]:
    """The user curve file behind cache file ``key`` (a rule input, so editing it rebuilds), or none."""
    code, files = filter_code(galaxy, key), galaxy.get("filter_files", {})
    return [filters.curve_file_spec(files[code])[0]] if code in files else []


def library_file(galaxy: dict[str, Any], suffix: str = ".hdf5") -> str:
    """The library (an existing one from library.path, or the one we build) or a file derived from it."""
    if suffix == ".hdf5" and "path" in galaxy["library"]:
        return galaxy["library"]["path"]
    return f"{LIBRARY_DIR}/{galaxy['library']['name']}{suffix}"


@lru_cache(maxsize=4)
def _existing_library(path: str, mtime: float):
    return read_library(path)


def existing_library(galaxy: dict[str, Any], need_model: bool = False):
    """The library named by library.path (read once per process), or None when we build it; with
    ``need_model``, a ConfigError when it has no Model group to rebuild the simulator from."""
    path = galaxy["library"].get("path")
    if path is None:
        return None
    try:
        library = _existing_library(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0)
        if need_model:
            require_model(library, path)
        return library
    except LibraryError as error:
        raise ConfigError(f"galaxy.library.path: {error}") from None


def model_grid_file(galaxy: dict[str, Any]) -> str:
    """The SPS grid the library's simulator is rebuilt with: an existing library's own grid (its Model
    group names it; in ``library.grid_dir`` when that is set), otherwise the configured one."""
    library = existing_library(galaxy)
    if library is not None and library.spec is not None:
        directory = galaxy["library"].get("grid_dir", library.spec.grid_dir)
        return f"{directory}/{library.spec.grid_name}.hdf5"
    return grid_file(galaxy)


def check_library_grid(galaxy: dict[str, Any]) -> None:
    """An existing library's SPS grid exists (or is one the workflow builds); ConfigError naming the Model
    attributes, the file and the fix otherwise."""
    library = existing_library(galaxy)
    if library is None or library.spec is None:
        return
    path = model_grid_file(galaxy)
    if Path(path).is_file() or Path(path).parent == Path(BUILT_GRID_DIR):
        return
    if "grid_dir" in galaxy["library"]:
        raise ConfigError(f"galaxy.library.grid_dir: {galaxy['library']['grid_dir']!r} holds no "
                          f"{library.spec.grid_name}.hdf5 (the library's Model attribute grid_name is "
                          f"{library.spec.grid_name!r}); point it at the directory holding that grid")
    raise ConfigError(f"galaxy.library.path: the library's Model attributes grid_dir {library.spec.grid_dir!r} and "
                      f"grid_name {library.spec.grid_name!r} name the SPS grid {path!r}, which does not exist; set "
                      f"galaxy.library.grid_dir to the directory holding {library.spec.grid_name}.hdf5")


def library_size(galaxy: dict[str, Any]) -> int:
    library = existing_library(galaxy)
    return len(library.theta) if library is not None else galaxy["library"]["n_galaxies"]


def library_prior(galaxy: dict[str, Any]) -> ParameterSpace:
    """The library's prior: configured ranges, or an existing library's parameter ranges."""
    library = existing_library(galaxy)
    if library is not None:
        return ParameterSpace(library.parameter_names, library.parameter_units,
                              library.theta.min(axis=0), library.theta.max(axis=0))
    return ParameterSpace.from_config(galaxy["library"]["prior"], key="galaxy.library.prior")


def library_prior_config(galaxy: dict[str, Any]) -> list[dict[str, Any]]:
    """library_prior as config parameter entries (for runs with prior.from_library)."""
    space = library_prior(galaxy)
    return [{"name": n, "low": float(lo), "high": float(hi), "unit": u}
            for n, u, lo, hi in zip(space.names, space.units, space.low, space.high)]


def model_spec(galaxy: dict[str, Any]):
    """The GalaxyModelSpec a library built from this config records (and rebuilds from)."""
    from seqsbi.simulators.galaxy.model import GalaxyModelSpec

    emission = galaxy["emission"]
    return GalaxyModelSpec(grid_name=galaxy["sps_grid"]["name"], grid_dir=grid_dir(galaxy),
                           filters=tuple(galaxy["filters"]), parameter_names=library_prior(galaxy).names,
                           emission_model=emission["model"], dust_law_params={"slope": emission["dust_slope"]})


def grid_log10_metallicity_range(galaxy: dict[str, Any]) -> tuple[float, float] | None:
    """log10 Z covered by the SPS grid: BC03's when we build it, read from an existing grid file."""
    if "grid_dir" not in galaxy["sps_grid"]:
        z = BC03_METALLICITIES_ZSUN * BC03_Z_SUN
        return float(np.log10(z.min())), float(np.log10(z.max()))
    path = Path(grid_file(galaxy))
    if not path.is_file():
        return None
    z = _grid_dataset(path, "axes/metallicities")
    return float(np.log10(z.min())), float(np.log10(z.max()))


def _grid_dataset(path: Path, dataset: str) -> np.ndarray:
    """One dataset of a synthesizer grid file; ConfigError naming the file and dataset when unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as hf:
            return np.asarray(hf[dataset])
    except (OSError, KeyError) as error:
        raise ConfigError(f"galaxy.sps_grid: grid {str(path)!r} cannot be read as a synthesizer grid with "
                          f"{dataset} ({type(error).__name__}: {error}); replace it (synthesizer-download), "
                          f"or remove galaxy.sps_grid.grid_dir to build the BC03 grid") from None


def grid_wavelength_range(galaxy: dict[str, Any]) -> tuple[float, float] | None:
    """Rest-frame wavelengths (Angstrom) the SPS grid covers: the configured resampling when we build
    it, read from the grid file otherwise (None when that file does not exist yet)."""
    if "grid_dir" not in galaxy["sps_grid"] and existing_library(galaxy) is None:
        settings = galaxy["sps_grid"]
        return float(settings["min_wavelength_angstrom"]), float(settings["max_wavelength_angstrom"])
    path = Path(model_grid_file(galaxy))
    if not path.is_file():
        return None
    wavelength = _grid_dataset(path, "spectra/wavelength")
    return float(wavelength.min()), float(wavelength.max())


def check_filters(galaxy: dict[str, Any]) -> None:
    """Every filter has one curve (checked), its cache file is unambiguous, and the SPS grid covers
    it at every redshift of the prior; each failure a ConfigError naming the filter."""
    codes, tophat, files = list(galaxy["filters"]), galaxy.get("tophat_filters", {}), galaxy.get("filter_files", {})
    both = sorted(set(tophat) & set(files))
    if both:
        raise ConfigError(f"galaxy.filter_files and galaxy.tophat_filters both define {both}; keep one")
    reserved = sorted(code for code in [*tophat, *files] if not filters.is_svo_code(code))
    if reserved:
        raise ConfigError(f"galaxy.filter_files / tophat_filters: {reserved} use the {filters.SEDPY_NAMESPACE} "
                          f"namespace, which names astro-sedpy's own curves; give your curve another code "
                          f"(Facility/Instrument.Band, e.g. Survey/Cam.NB815)")
    repeated = sorted({code for code in codes if codes.count(code) > 1})
    if repeated:
        raise ConfigError(f"galaxy.filters: {repeated} listed more than once; list each filter once")
    stored = stored_curves(galaxy)
    overridden = sorted(set(files) & set(stored))
    if overridden:
        raise ConfigError(f"galaxy.filter_files: {overridden} are stored in the library named by galaxy.library.path, "
                          f"whose simulator is rebuilt from its own curves; drop these filter_files entries (to use "
                          f"other curves, build a new library without library.path)")
    filters.check_filter_codes(codes, key="galaxy.filters", tophat=tophat, filter_files=files, stored=stored)
    keys: dict[str, str] = {}
    for code in codes:
        key = filters.cache_key(code)
        if key in keys:
            raise ConfigError(f"galaxy.filters: {keys[key]!r} and {code!r} share the filter cache file {key}.hdf5 "
                              f"(synthesizer replaces '/' by '_'); rename one of them")
        keys[key] = code
    curves = {code: stored[code] if code in stored else filters.filter_curve(code, tophat, files)[:2] for code in codes}
    for code in files:
        if code not in curves:  # still checked: a bad file fails now, not when someone lists it
            filters.filter_curve(code, tophat, files)
    grid_range = grid_wavelength_range(galaxy)
    space = library_prior(galaxy)
    if grid_range is None or "redshift" not in space.names:
        return
    j = space.names.index("redshift")
    z_low, z_high = float(space.low[j]), float(space.high[j])
    for code, (wavelength, transmission) in curves.items():
        low, high = filters.curve_span(wavelength, transmission)
        if low / (1 + z_high) < grid_range[0] or high / (1 + z_low) > grid_range[1]:
            raise ConfigError(
                f"galaxy.filters: {code!r} spans {low:.6g}-{high:.6g} Angstrom (transmission above "
                f"{filters.SPAN_FRACTION:g} of its peak), rest frame {low / (1 + z_high):.6g}-{high / (1 + z_low):.6g} "
                f"Angstrom at redshift {z_low:g}-{z_high:g}, outside the SPS grid's {grid_range[0]:.6g}-"
                f"{grid_range[1]:.6g} Angstrom; drop the filter or widen galaxy.sps_grid "
                f"(min_wavelength_angstrom, max_wavelength_angstrom)")


def noise_model(galaxy: dict[str, Any]) -> FluxNoise | None:
    return FluxNoise.from_config(galaxy["features"]["noise"], len(galaxy["filters"]))


def check_galaxy_config(galaxy: dict[str, Any]) -> None:
    """Filters (curves, grid coverage), prior ranges and noise depths, each failure a ConfigError naming key
    and value."""
    sps = galaxy["sps_grid"]
    if not sps["min_wavelength_angstrom"] < sps["max_wavelength_angstrom"]:
        raise ConfigError(f"galaxy.sps_grid.min_wavelength_angstrom: {sps['min_wavelength_angstrom']:g} must be below "
                          f"max_wavelength_angstrom ({sps['max_wavelength_angstrom']:g})")
    library = existing_library(galaxy, need_model=True)
    if library is None and "grid_dir" in galaxy["library"]:
        raise ConfigError("galaxy.library.grid_dir: only used with galaxy.library.path (a built library uses "
                          "galaxy.sps_grid); remove it or set library.path")
    if library is not None:
        check_library_grid(galaxy)
        if list(library.filter_codes) != list(galaxy["filters"]):
            raise ConfigError(f"galaxy.filters: {list(galaxy['filters'])} differ from the library's FilterCodes "
                              f"{list(library.filter_codes)}; list the library's filters, in its order")
    check_filters(galaxy)
    space = library_prior(galaxy)
    z_range = grid_log10_metallicity_range(galaxy)
    if z_range is not None and "log10metallicity" in space.names:
        j = space.names.index("log10metallicity")
        if space.low[j] < z_range[0] - 1e-9 or space.high[j] > z_range[1] + 1e-9:
            raise ConfigError(
                f"galaxy.library.prior.parameters[{j}] (log10metallicity): [{space.low[j]:g}, {space.high[j]:g}] "
                f"leaves the SPS grid's range [{z_range[0]:.3g}, {z_range[1]:.3g}]; narrow it to lie inside")
    if galaxy["emission"]["model"] == "incident" and "tau_v" in space.names:
        raise ConfigError(f"galaxy.library.prior.parameters[{space.names.index('tau_v')}] (tau_v): has no effect with "
                          f"galaxy.emission.model 'incident'; drop it or use 'attenuated_incident'")
    missing = {"redshift", "log_mass", "tau", "peak_age", "log10metallicity"} - set(space.names)
    if missing:
        raise ConfigError(f"galaxy.library.prior.parameters: the model needs {sorted(missing)} too; "
                          f"every parameter of the LogNormal-SFH model must have a range")
    noise = galaxy["features"]["noise"]
    depths = None if noise is None else noise["depth_5sigma_ab"]
    if isinstance(depths, list) and len(depths) != len(galaxy["filters"]):
        raise ConfigError(f"galaxy.features.noise.depth_5sigma_ab: {len(depths)} depths for "
                          f"{len(galaxy['filters'])} filters; give one number or one per filter")
    scale = galaxy["features"].get("flux_scale_njy")
    if isinstance(scale, list) and len(scale) != len(galaxy["filters"]):
        raise ConfigError(f"galaxy.features.flux_scale_njy: {len(scale)} scales for {len(galaxy['filters'])} filters; "
                          f"give one number or one per filter")
    if galaxy["features"]["kind"] == "asinh_magnitude" and noise is None:
        raise ConfigError("galaxy.features.kind: 'asinh_magnitude' needs galaxy.features.noise (its softening is the "
                          "1-sigma flux)")


def draw_parameters(space: ParameterSpace, n: int, sampling: str, seed: int) -> np.ndarray:
    """n parameter vectors (n, d) inside ``space``: Latin hypercube (one draw per stratum and
    dimension, strata shuffled independently) or independent uniform draws."""
    rng = np.random.default_rng(seed)
    if sampling == "uniform":
        unit = rng.uniform(size=(n, space.dim))
    elif sampling == "latin_hypercube":
        strata = np.stack([rng.permutation(n) for _ in range(space.dim)], axis=1)
        unit = (strata + rng.uniform(size=(n, space.dim))) / n
    else:
        raise ValueError(f"sampling {sampling!r} unknown; allowed: latin_hypercube, uniform")
    return space.low + unit * (space.high - space.low)


def resolve_galaxy_run(name: str, run: dict, galaxy: dict) -> dict:
    """A galaxy run with everything made explicit: the prior (library ranges with overrides) and the
    simulator settings (library, filters, features, noise), so round jobs need nothing else.

    Other simulators' runs come back unchanged. Raises:
        ConfigError: a galaxy-only setting on another simulator, simulator_settings on a galaxy run,
            an override or prior that does not name the library's parameters in order.
    """
    key = f"runs.{name}"
    if run["simulator"] != "galaxy":
        if run["prior"].get("from_library"):
            raise ConfigError(f"{key}.prior.from_library: only the galaxy simulator has a library; "
                              f"give prior.parameters for simulator {run['simulator']!r}")
        if run["prior"].get("distributions"):
            raise ConfigError(f"{key}.prior.distributions: only with from_library (galaxy runs); give distribution, "
                              f"mean, std or value in the entries of prior.parameters")
        return run
    if run["simulator_settings"]:
        raise ConfigError(f"{key}.simulator_settings: {run['simulator_settings']} not allowed for the galaxy "
                          f"simulator; it takes its settings from the galaxy block (library, filters, features)")
    resolved = copy.deepcopy(run)
    prior = run["prior"]
    if prior.get("from_library"):
        parameters = library_prior_config(galaxy)
        names = [p["name"] for p in parameters]
        for parameter, bounds in prior.get("override_prior_ranges", {}).items():
            if parameter not in names:
                raise ConfigError(f"{key}.prior.override_prior_ranges: {parameter!r} is not a library parameter; "
                                  f"library parameters: {', '.join(names)}")
            parameters[names.index(parameter)].update(low=bounds[0], high=bounds[1])
        for parameter, distribution in prior.get("distributions", {}).items():
            if parameter not in names:
                raise ConfigError(f"{key}.prior.distributions: {parameter!r} is not a library parameter; "
                                  f"library parameters: {', '.join(names)}")
            parameters[names.index(parameter)].update(distribution)
        resolved["prior"] = {"type": "box_uniform", "parameters": parameters}
    else:
        if prior.get("distributions"):
            raise ConfigError(f"{key}.prior.distributions: only with from_library; give distribution, mean, std or "
                              f"value in the entries of prior.parameters")
        library_names = list(library_prior(galaxy).names)
        given = [p["name"] for p in prior["parameters"]]
        if given != library_names:
            raise ConfigError(f"{key}.prior.parameters: names {given} must be the library's, in order: {library_names}")
    check_run_prior_in_grid(key, prior, resolved["prior"]["parameters"], galaxy)
    resolved["simulator_settings"] = {
        "library": library_file(galaxy),
        "svo_filter_cache": SVO_FILTER_CACHE,
        "filters": list(galaxy["filters"]),
        "features": galaxy["features"]["kind"],
        "noise": galaxy["features"]["noise"],
        "backend": galaxy["backend"],
    }
    if galaxy["features"].get("flux_scale_njy") is not None:
        resolved["simulator_settings"]["flux_scale_njy"] = galaxy["features"]["flux_scale_njy"]
    if "grid_dir" in galaxy["library"]:
        resolved["simulator_settings"]["grid_dir"] = galaxy["library"]["grid_dir"]
    return resolved


def check_run_prior_in_grid(key: str, prior: dict, parameters: list[dict], galaxy: dict) -> None:
    """A galaxy run's log10metallicity range must lie inside the SPS grid's metallicities: past them the
    simulator clamps Z to the grid's end (every value beyond gives the same photometry), so the posterior
    there would be the prior's. ConfigError naming the key, the range, the grid's range and the fix."""
    z_range = grid_log10_metallicity_range(galaxy)
    names = [p["name"] for p in parameters]
    if z_range is None or "log10metallicity" not in names:
        return
    entry = parameters[names.index("log10metallicity")]
    if entry["low"] < z_range[0] - 1e-9 or entry["high"] > z_range[1] + 1e-9:
        where = (f"{key}.prior.override_prior_ranges.log10metallicity" if "log10metallicity"
                 in prior.get("override_prior_ranges", {}) else
                 f"{key}.prior.parameters[{names.index('log10metallicity')}] (log10metallicity)")
        raise ConfigError(f"{where}: [{entry['low']:g}, {entry['high']:g}] leaves the SPS grid's log10 Z range "
                          f"[{z_range[0]:.3g}, {z_range[1]:.3g}]; the simulator would clamp Z to the grid's end, so "
                          f"every value past it gives the same photometry: narrow the range to lie inside "
                          f"[{z_range[0]:.3g}, {z_range[1]:.3g}], or use a grid with more metallicities "
                          f"(galaxy.sps_grid.grid_dir)")


def check_library_row(run: str, simulator_name: str, observation: str, library_index: int, sheet: str,
                      galaxy: dict) -> None:
    """Raise ConfigError unless ``observation``'s library row exists and ``run`` is a galaxy run."""
    if simulator_name != "galaxy":
        raise ConfigError(f"{sheet} row {observation!r} column library_index: only galaxy runs have a model library, "
                          f"but run {run!r} uses simulator {simulator_name!r}; give x_o instead")
    n_galaxies = library_size(galaxy)
    if library_index >= n_galaxies:
        raise ConfigError(f"{sheet} row {observation!r} column library_index: {library_index} is past the library's "
                          f"last row ({n_galaxies - 1}; the library has {n_galaxies} galaxies)")
