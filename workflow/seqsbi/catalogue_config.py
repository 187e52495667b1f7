"""The config's ``amortized`` and ``catalogues`` blocks checked together, at Snakefile parse time.

Each catalogue names an amortized estimator and is read and checked in full here (astropy is imported only
when a config has catalogues), so a bad catalogue stops the workflow before any job runs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from seqsbi import scatter
from seqsbi.amortized import AUTO_KEYS, held_out_count, settings_for
from seqsbi.errors import ConfigError

logger = logging.getLogger("seqsbi.catalogue_config")

if TYPE_CHECKING:
    from seqsbi.config import RunSettings

AMORTIZED_DIR = "results/amortized/{estimator}"
CATALOGUE_DIR = "results/catalogues/{catalogue}"


@dataclass(frozen=True)
class CataloguePlan:
    """One catalogue: its validated block, its row count and the chunk count its jobs use."""

    name: str
    block: dict
    n_rows: int
    chunks: int
    refinement: RunSettings | None = None  # refine.run's settings (seqsbi.refine); None: no refinement


@dataclass(frozen=True)
class CataloguesPlan:
    estimators: dict[str, RunSettings]
    estimator_blocks: dict[str, dict]
    catalogues: dict[str, CataloguePlan]
    auto: dict[str, dict[str, str]] = field(default_factory=dict)  # resolve_auto_inputs' reasons

    def auto_lines(self) -> list[str]:
        """One line per resolved ``auto`` key: what it became and why (printed when the Snakefile is parsed)."""
        return [f"amortized.{name}.{key}: auto -> {json.dumps(self.estimator_blocks[name][key])} ({reason})"
                for name, keys in self.auto.items() for key, reason in keys.items()]


def sampling_rows(n_rows: int, block: dict, chunk: int) -> slice:
    """Rows of a catalogue that chunk job ``chunk`` samples (whole sampling blocks)."""
    return scatter.chunk_rows(n_rows, block["sampling_block_size"], chunk_count(n_rows, block), chunk)


def chunk_count(n_rows: int, block: dict) -> int:
    """The configured chunk count, capped at the number of sampling blocks (a chunk is whole blocks)."""
    return min(block["chunks"], scatter.block_count(n_rows, block["sampling_block_size"]))


#: Predictive draws per galaxy when ``flags.ppc_draws`` is null (capped at ``posterior_samples``): with the default
#: ``ppc_min_p_value`` of 0.02 the smallest reachable p-value, 1 / 51, can still flag.
DEFAULT_PPC_DRAWS = 50


def check_ppc_flags(key: str, block: dict) -> None:
    """Resolve ``flags.ppc_draws`` in place (null: min(DEFAULT_PPC_DRAWS, posterior_samples)) and check that the
    posterior predictive check's settings can run and can flag.

    Raises:
        ConfigError: ``flags.ppc_draws`` above ``posterior_samples`` (the draws are a subset of the samples), or
            ``flags.ppc_min_p_value`` in (0, 1 / (1 + ppc_draws)], below the smallest p-value that many draws give.
    """
    flags = block["flags"]
    chosen = flags["ppc_draws"] is not None
    if not chosen:
        flags["ppc_draws"] = min(DEFAULT_PPC_DRAWS, block["posterior_samples"])
    draws, threshold = flags["ppc_draws"], flags["ppc_min_p_value"]
    if draws > block["posterior_samples"]:
        raise ConfigError(f"{key}.flags.ppc_draws: {draws} predictive draws but posterior_samples is "
                          f"{block['posterior_samples']}; the draws are a subset of each galaxy's samples: use at most "
                          f"{block['posterior_samples']} (or 0 to skip the check)")
    if draws and 0 < threshold <= 1 / (1 + draws):
        where = "" if chosen else (f" (ppc_draws unset: min({DEFAULT_PPC_DRAWS}, posterior_samples "
                                   f"{block['posterior_samples']}))")
        raise ConfigError(f"{key}.flags.ppc_min_p_value: {threshold:g} can never flag: {draws} draws{where} give "
                          f"p-values of at least 1 / (1 + {draws}) = {1 / (1 + draws):.4g}; raise ppc_draws (and "
                          f"posterior_samples) to at least {int(np.floor(1 / threshold - 1)) + 1} or the threshold "
                          f"(0 keeps the values without the flag; ppc_draws: 0 skips the check)")


def check_refine_flags(key: str, block: dict) -> None:
    """Every flag in ``refine.flags`` can be raised with the catalogue's thresholds.

    Raises:
        ConfigError: a refine flag switched off: ``ood`` with ``ood_min_p_value: 0``, ``ppc`` with ``ppc_draws: 0``
            or ``ppc_min_p_value: 0``, ``prior_edge`` with ``prior_edge_max_share: 1``, ``fit`` with
            ``fit_min_p_value: 0``.
    """
    if block["refine"] is None:
        return
    flags = block["flags"]
    off = {"ood": flags["ood_min_p_value"] == 0 and "flags.ood_min_p_value is 0",
           "ppc": (flags["ppc_draws"] == 0 and "flags.ppc_draws is 0") or (
               flags["ppc_min_p_value"] == 0 and "flags.ppc_min_p_value is 0"),
           "prior_edge": flags["prior_edge_max_share"] >= 1 and "flags.prior_edge_max_share is 1",
           "fit": flags["fit_min_p_value"] == 0 and "flags.fit_min_p_value is 0"}
    for name in block["refine"]["flags"]:
        if off.get(name):
            raise ConfigError(f"{key}.refine.flags: {name!r} can never be raised ({off[name]}); drop it from "
                              f"refine.flags or give the flag a threshold")


def check_held_out_flags(key: str, block: dict, estimator: str, held_out: int) -> None:
    """``flags.ood_min_p_value`` and ``flags.fit_min_p_value`` can flag: both p-values are calibrated on the
    held-out split, (1 + count) / (1 + held_out), so they are at least 1 / (1 + held_out) and a threshold at or
    below that never flags.

    Raises:
        ConfigError: naming the threshold, the held-out count and the fixes.
    """
    for name in ("ood_min_p_value", "fit_min_p_value"):
        threshold = block["flags"][name]
        if 0 < threshold <= 1 / (1 + held_out):
            raise ConfigError(f"{key}.flags.{name}: {threshold:g} can never flag: estimator {estimator!r} holds out "
                              f"{held_out} simulations, so its p-values are at least 1 / (1 + {held_out}) = "
                              f"{1 / (1 + held_out):.4g}; hold out at least {int(np.floor(1 / threshold - 1)) + 1} "
                              f"(amortized.{estimator}.simulations or test_fraction) or raise the threshold (0 keeps "
                              f"the values without the flag)")


def resolve_auto_inputs(config: dict, read: dict) -> dict[str, dict[str, str]]:
    """Resolve ``auto`` (the default of AUTO_KEYS and of ``simulations``) in every ``amortized`` block of a
    validated config, in place, from the catalogues each estimator serves (``read``: catalogue name -> its
    :class:`seqsbi.catalogue_table.Catalogue`), and log each resolution with its reason.

    ``training_depth_range_ab``: :func:`seqsbi.amortized.auto_depth_range` of the served catalogues' errors;
    ``training_missing_bands``: :func:`seqsbi.amortized.auto_band_masks` of their missing bands. Both resolve to
    null for an estimator that serves no catalogue, is not a simulated galaxy estimator with noise
    (``source: simulate``, ``galaxy.features.noise``), is a run's ``round0_amortized``, or serves a catalogue with
    ``refine.warm_start: true`` (those need a network that takes the features alone). ``simulations``: then
    :func:`seqsbi.amortized.auto_simulations` of the resolved block (more when the network takes depths or masks).

    Returns:
        estimator -> key -> the reason, as logged.
    """
    from seqsbi.amortized import auto_band_masks, auto_depth_range, auto_simulations

    galaxy, blocks = config["galaxy"], config.get("amortized") or {}
    served: dict[str, list[str]] = {}
    for name, block in (config.get("catalogues") or {}).items():
        served.setdefault(block["estimator"], []).append(name)
    round_zero = {run.get("round0_amortized") for run in (config.get("runs") or {}).values()}
    reasons: dict[str, dict[str, str]] = {}
    for name, block in blocks.items():
        auto = [key for key in AUTO_KEYS if block.get(key) == "auto"]
        catalogues = [read[c] for c in served.get(name, []) if c in read]
        warm = [c for c in served.get(name, []) if (config["catalogues"][c].get("refine") or {}).get("warm_start")]
        why = ("it serves no catalogue" if not catalogues else
               "a run's round0_amortized" if name in round_zero else
               f"catalogue {warm[0]!r} continues its network (refine.warm_start)" if warm else
               f"simulator {block['simulator']!r}" if block["simulator"] != "galaxy" else
               "source: library" if block["source"] != "simulate" else
               "galaxy.features.noise is null" if galaxy["features"].get("noise") is None else None)
        settings = settings_for(name, block, galaxy) if auto else None  # auto reads as null here
        for key in auto:
            if why is not None:
                block[key], reason = None, f"null: {why}"
            elif key == "training_depth_range_ab":
                value, reason = auto_depth_range(settings, np.vstack([c.error_njy for c in catalogues]))
                block[key] = None if value is None else list(value)
            else:
                block[key], reason = auto_band_masks(settings, np.vstack([np.isnan(c.flux_njy) for c in catalogues]))
            reasons.setdefault(name, {})[key] = reason
        if block.get("simulations") == "auto":  # after the inputs: their resolved values decide it
            block["simulations"], reasons.setdefault(name, {})["simulations"] = auto_simulations(block)
        for key, reason in reasons.get(name, {}).items():
            logger.info("amortized.%s.%s: auto -> %s (%s)", name, key, block[key], reason)
    return reasons


def plan_catalogues(config: dict) -> CataloguesPlan:
    """Check every amortized estimator and catalogue of a validated (defaults-filled) config.

    ``auto`` values of the estimators (AUTO_KEYS) are resolved in ``config`` itself (:func:`resolve_auto_inputs`),
    so the plan's estimator blocks, and the job params made from them, hold the resolved values.

    Raises:
        ConfigError: naming the key: an unknown estimator, a catalogue of an estimator whose simulator is not
            the galaxy model, ``source: library`` without the galaxy simulator, or any problem of the catalogue
            file (see :func:`seqsbi.catalogue_table.read_catalogue`).
    """

    galaxy = config["galaxy"]
    blocks = dict(config.get("amortized") or {})
    estimators = {}
    for name, block in blocks.items():
        if block["source"] == "library" and block["simulator"] != "galaxy":
            raise ConfigError(f"amortized.{name}.source: 'library' needs simulator: galaxy (the model library's rows); "
                              f"use source: simulate for simulator {block['simulator']!r}")
        estimators[name] = settings_for(name, block, galaxy)  # simulations: auto checked again once resolved
        estimators[name].simulator().output_dim(estimators[name].prior)  # a custom simulator fails now, not in a job
    read = {}
    for name, block in (config.get("catalogues") or {}).items():  # config checks, then the file
        key = f"catalogues.{name}"
        if block["estimator"] not in blocks:
            raise ConfigError(f"{key}.estimator: {block['estimator']!r} is not under amortized; "
                              f"defined: {', '.join(blocks) or 'none'}")
        if blocks[block["estimator"]]["simulator"] != "galaxy":
            raise ConfigError(f"{key}.estimator: {block['estimator']!r} uses simulator "
                              f"{blocks[block['estimator']]['simulator']!r}; a catalogue of fluxes per filter needs "
                              f"an estimator with simulator: galaxy")
        check_ppc_flags(key, block)
        check_refine_flags(key, block)
        from seqsbi.catalogue_table import read_catalogue

        read[name] = read_catalogue(block["path"], galaxy["filters"], block["id_column"], key=f"{key}.path",
                                    missing_value=galaxy.get("missing_value"))
    auto = resolve_auto_inputs(config, read)
    for name in auto:  # the estimators' auto keys, from what they serve
        estimators[name] = settings_for(name, blocks[name], galaxy)
    for name, block in (config.get("catalogues") or {}).items():  # with the resolved training-set sizes
        n = training_set_size(estimators[block["estimator"]], blocks[block["estimator"]], galaxy)
        check_held_out_flags(f"catalogues.{name}", block, block["estimator"], held_out_count(n, blocks[block[
            "estimator"]]["test_fraction"]))
    catalogues = {}
    for name, block in (config.get("catalogues") or {}).items():
        estimator_block, refinement = blocks[block["estimator"]], None
        if block["refine"] is not None:
            from seqsbi import refine

            refinement = refine.refinement_settings(name, block, estimator_block, galaxy)
            check_round_zero_rows(f"catalogues.{name}.refine.run.simulations_per_round",
                                  refinement.simulations_per_round, block["estimator"], estimator_block,
                                  training_set_size(estimators[block["estimator"]], estimator_block, galaxy))
        n_rows = len(read[name].ids)
        catalogues[name] = CataloguePlan(name, block, n_rows, chunk_count(n_rows, block), refinement)
    return CataloguesPlan(estimators, blocks, catalogues, auto)


def check_amortized_round_zero(plan, catalogues: CataloguesPlan) -> None:
    """Runs with ``round0_amortized``: the estimator exists and fits the run at every observation.

    Raises:
        ConfigError: naming ``runs.<run>.round0_amortized``: an estimator not under amortized or with inputs
            beside the features (seqsbi.refine.EXTRA_INPUT_KEYS: depths, band masks), an engine that cannot continue
            from it (seqsbi.refine.REFINE_ENGINES), another simulator, filters or features, a prior (the
            observation's own, where it has prior columns) other than the estimator's, or more simulations_per_round
            than the estimator has training rows.
    """
    from seqsbi import refine

    for name, run in plan.config["runs"].items():
        estimator = run.get("round0_amortized")
        if estimator is None:
            continue
        key = f"runs.{name}.round0_amortized"
        if estimator not in catalogues.estimators:
            raise ConfigError(f"{key}: {estimator!r} is not under amortized; defined: "
                              f"{', '.join(catalogues.estimators) or 'none'}")
        settings, trained = plan.runs[name], catalogues.estimators[estimator]
        extra = refine.extra_inputs(catalogues.estimator_blocks[estimator])
        if extra:
            raise ConfigError(f"{key}: estimator {estimator!r} takes more than the features ({', '.join(extra)}), "
                              f"which a run's round 0 does not supply yet (catalogue refinements do); set "
                              + " and ".join(f"amortized.{estimator}.{k}: null" for k in extra)
                              + " (auto resolves to null for a round0_amortized estimator) or name an estimator "
                                "without them")
        if settings.engine not in refine.REFINE_ENGINES:
            raise ConfigError(f"{key}: engine {settings.engine!r} cannot continue from an amortized round 0 (rounds "
                              f"1 onwards draw from a proposal built at x_o); use one of "
                              f"{', '.join(refine.REFINE_ENGINES)}")
        if settings.simulator_name != "galaxy" or trained.simulator_name != "galaxy":
            raise ConfigError(f"{key}: round 0 re-noises the estimator's galaxy fluxes; run and estimator need "
                              f"simulator: galaxy (run: {settings.simulator_name!r}, estimator: "
                              f"{trained.simulator_name!r})")
        for part in ("filters", "features"):
            if settings.simulator_settings[part] != trained.simulator_settings[part]:
                raise ConfigError(f"{key}: the run's {part} {settings.simulator_settings[part]} differ from estimator "
                                  f"{estimator!r}'s {trained.simulator_settings[part]}")
        block = catalogues.estimator_blocks[estimator]
        check_round_zero_rows(f"runs.{name}.simulations_per_round", settings.simulations_per_round, estimator, block,
                              training_set_size(trained, block, plan.config["galaxy"]))
        for obs in settings.observation_names:
            difference = prior_difference(plan.settings(name, obs).prior, trained.prior)
            if difference:
                raise ConfigError(f"{key}: at observation {obs!r} the run's prior differs from the estimator's "
                                  f"({difference}): the amortized posterior is over the estimator's prior; give the "
                                  f"run the same prior (parameters, ranges, distributions, fixed values) or drop "
                                  f"round0_amortized")


def training_set_size(settings: RunSettings, block: dict, galaxy: dict) -> int:
    """Rows of an amortized estimator's training set (held-out split included): its simulations, or the
    library's rows for ``source: library``."""
    from seqsbi.simulators.galaxy import config as galaxy_config

    return settings.simulations_per_round if block["source"] == "simulate" else galaxy_config.library_size(galaxy)


def check_round_zero_rows(key: str, simulations: int, estimator: str, block: dict, size: int) -> None:
    """A round 0 from amortized estimator ``estimator`` (its validated ``block``, a training set of ``size``
    rows) reuses the first ``simulations`` of its training rows.

    Raises:
        ConfigError: naming ``key``, when the estimator trains on fewer rows, with the key that adds rows.
    """
    rows = size - held_out_count(size, block["test_fraction"])
    if simulations > rows:
        more = ("galaxy.library.n_galaxies (its training set is the library)" if block["source"] == "library"
                else f"amortized.{estimator}.simulations")
        raise ConfigError(f"{key}: {simulations} but round 0 reuses the amortized estimator's training rows and "
                          f"{estimator!r} has only {rows}; lower it or raise {more}")


def prior_difference(prior, reference) -> str:
    """'' when two ParameterSpaces are the same prior; else the first difference, both sides' lines."""
    ours, theirs = prior.describe(), reference.describe()
    for mine, other in zip(ours, theirs):
        if mine != other:
            return f"run: {mine!r}; estimator: {other!r}"
    if len(ours) != len(theirs):
        return f"run: {len(ours)} parameter line(s); estimator: {len(theirs)}"
    if (prior.low.tolist(), prior.high.tolist()) != (reference.low.tolist(), reference.high.tolist()):
        return f"run's ranges {prior.low.tolist()} to {prior.high.tolist()}, estimator's {reference.low.tolist()} " \
               f"to {reference.high.tolist()}"
    return ""
