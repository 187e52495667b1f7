# Catalogues' plan and input functions (rules in catalogue.smk): the amortized and catalogues config blocks
# checked at parse time (every catalogue read and checked in full). Included before rule all, which takes
# catalogue_targets(); a config without those blocks adds no jobs.
from seqsbi.amortized import AMORTIZED_FILES
from seqsbi.catalogue_config import AMORTIZED_DIR, CATALOGUE_DIR, check_amortized_round_zero, plan_catalogues

try:
    CATALOGUES = plan_catalogues(PLAN.config)
    check_amortized_round_zero(PLAN, CATALOGUES)
except ConfigError as error:
    raise WorkflowError(f"seqsbi: invalid configuration\n{error}") from None
for line in CATALOGUES.auto_lines():  # what each estimator's auto keys became, before any job runs
    print(f"seqsbi: {line}", file=sys.stderr)


#: A refined catalogue's outputs: every galaxy's samples and summary row, refined where it was (catalogue_merged).
MERGED_FILES = ("merged_samples.hdf5", "merged_summary.fits", "merged_summary.csv")


wildcard_constraints:
    estimator="[A-Za-z0-9][A-Za-z0-9_.-]*",
    catalogue="[A-Za-z0-9][A-Za-z0-9_.-]*",
    batch="[0-9]+",


#: Keys of an amortized block its training set depends on (amortized_simulate's params): editing the network or
#: training settings retrains without resimulating. simulation_chunks only says where blocks run.
TRAINING_SET_KEYS = (
    "simulator",
    "simulator_settings",
    "prior",
    "source",
    "simulations",
    "simulation_block_size",
    "seed",
    "test_fraction",
    "training_depth_range_ab",
    "training_missing_bands",
)


#: Keys left out of a job's params while null (their default): added to the schema later, so estimators and
#: catalogues made before them keep their params and are not rerun (complete_block fills the default back in).
NULL_DEFAULT_KEYS = ("training_depth_range_ab", "training_missing_bands")


def without_null_defaults(block):
    return {key: value for key, value in block.items() if not (key in NULL_DEFAULT_KEYS and value is None)}


def amortized_block(wildcards):
    """amortized_train's params: the block without simulation_chunks (the same training set for any count)."""
    block = dict(CATALOGUES.estimator_blocks[wildcards.estimator])
    block.pop("simulation_chunks")
    return canonical(without_null_defaults(block))


def training_set_block(wildcards):
    """amortized_simulate's params: only what the training set depends on (TRAINING_SET_KEYS)."""
    block = CATALOGUES.estimator_blocks[wildcards.estimator]
    return canonical(without_null_defaults({key: block[key] for key in TRAINING_SET_KEYS}))


def amortized_galaxy_inputs(wildcards):
    """A galaxy estimator's model files (as galaxy_inputs for runs); a custom simulator's source file."""
    return estimator_model_inputs(wildcards.estimator)


def estimator_model_inputs(estimator):
    block = CATALOGUES.estimator_blocks[estimator]
    if block["simulator"] != "galaxy":
        source = simulator_source(block["simulator"], key=f"amortized.{estimator}.simulator")
        return {"simulator": source} if source else {}
    return {
        "library": galaxy_config.library_file(GALAXY),
        "reconstruction": galaxy_config.library_file(GALAXY, ".reconstruction.tsv"),
        "grid": galaxy_config.model_grid_file(GALAXY),
        "filters": galaxy_config.filter_cache_files(GALAXY),
    }


def amortized_training_set(wildcards):
    """The library's features (source library) or the training set's chunk files."""
    settings = CATALOGUES.estimators[wildcards.estimator]
    if CATALOGUES.estimator_blocks[wildcards.estimator]["source"] == "library":
        return {
            "features": galaxy_config.library_file(GALAXY, ".features.npz"),
            "library": galaxy_config.library_file(GALAXY),
        }
    directory = AMORTIZED_DIR.format(estimator=wildcards.estimator)
    return {"chunks": [f"{directory}/chunks/chunk_{chunk}.npz" for chunk in range(settings.simulation_chunks)]}


def catalogue_block(wildcards):
    return canonical(CATALOGUES.catalogues[wildcards.catalogue].block)


def catalogue_model_inputs(wildcards):
    """catalogue_chunk's galaxy model files: its posterior predictive check simulates with the estimator's model."""
    return estimator_model_inputs(CATALOGUES.catalogues[wildcards.catalogue].block["estimator"])


def catalogue_estimator_block(wildcards):
    """The catalogue's estimator's simulator and prior (TRAINING_SET_KEYS): the predictive check's simulator."""
    block = CATALOGUES.estimator_blocks[CATALOGUES.catalogues[wildcards.catalogue].block["estimator"]]
    return canonical(without_null_defaults({key: block[key] for key in TRAINING_SET_KEYS}))


def catalogue_estimator(wildcards):
    directory = AMORTIZED_DIR.format(estimator=CATALOGUES.catalogues[wildcards.catalogue].block["estimator"])
    return {key: f"{directory}/{AMORTIZED_FILES[key]}" for key in ("estimator", "held_out", "summary")}


def catalogue_training_set(wildcards):
    """The estimator's training set: its noise-free model fluxes are what the model-fit flag fits."""
    directory = AMORTIZED_DIR.format(estimator=CATALOGUES.catalogues[wildcards.catalogue].block["estimator"])
    return f"{directory}/{AMORTIZED_FILES['training_set']}"


def catalogue_chunks(wildcards):
    plan = CATALOGUES.catalogues[wildcards.catalogue]
    directory = CATALOGUE_DIR.format(catalogue=wildcards.catalogue)
    return [f"{directory}/chunks/chunk_{chunk}.npz" for chunk in range(plan.chunks)]


def refine_inputs(wildcards):
    """A refinement's round 0: the amortized posterior (its proposal) and training set (its simulations)."""
    return amortized_round_zero_files(CATALOGUES.catalogues[wildcards.catalogue].block["estimator"])


def amortized_round_zero_files(estimator):
    """What a round 0 from amortized estimator ``estimator`` reads: its posterior and training set."""
    directory = AMORTIZED_DIR.format(estimator=estimator)
    return {key: f"{directory}/{AMORTIZED_FILES[key]}" for key in ("posterior", "training_set")}


def refined_batches(wildcards):
    """The refine_batch files of a catalogue's flagged galaxies: known once its summary table is written
    (catalogue_summary is a checkpoint), so only flagged galaxies get jobs."""
    from seqsbi import refine

    summary = checkpoints.catalogue_summary.get(catalogue=wildcards.catalogue).output.fits
    block = CATALOGUES.catalogues[wildcards.catalogue].block
    rows, _ = refine.selection(refine.read_flags(summary), block["refine"])
    directory = CATALOGUE_DIR.format(catalogue=wildcards.catalogue)
    count = len(refine.batches(rows, block["refine"]["galaxies_per_job"]))
    return [f"{directory}/refined/batch_{batch}.npz" for batch in range(count)]


def catalogue_targets():
    """Every estimator's files and every catalogue's samples and tables (and merged ones when it is refined)."""
    targets = []
    for name in CATALOGUES.estimators:
        directory = AMORTIZED_DIR.format(estimator=name)
        targets.extend(f"{directory}/{file}" for file in AMORTIZED_FILES.values())
    for name in CATALOGUES.catalogues:
        directory = CATALOGUE_DIR.format(catalogue=name)
        targets.extend(f"{directory}/{file}" for file in ("samples.hdf5", "summary.fits", "summary.csv"))
        if CATALOGUES.catalogues[name].refinement is not None:
            targets.extend(f"{directory}/{file}" for file in MERGED_FILES)
    return targets
