# Catalogues (config blocks amortized and catalogues): a training set from the prior (scattered over
# amortized_simulate jobs) or the galaxy library -> one amortized NPE (amortized_train) -> batched posterior
# samples and trust flags for every catalogue row (catalogue_chunk jobs) -> samples HDF5 and summary tables
# (catalogue_summary). Included before rule all, which takes catalogue_targets(); no config block, no jobs.
from seqsbi.amortized import AMORTIZED_FILES
from seqsbi.catalogue_config import AMORTIZED_DIR, CATALOGUE_DIR, plan_catalogues

try:
    CATALOGUES = plan_catalogues(PLAN.config)
except ConfigError as error:
    raise WorkflowError(f"seqsbi: invalid configuration\n{error}") from None


wildcard_constraints:
    estimator="[A-Za-z0-9][A-Za-z0-9_.-]*",
    catalogue="[A-Za-z0-9][A-Za-z0-9_.-]*",


def amortized_block(wildcards):
    return canonical(CATALOGUES.estimator_blocks[wildcards.estimator])


def amortized_galaxy_inputs(wildcards):
    """A galaxy estimator's model files (as galaxy_inputs for runs); a custom simulator's source file."""
    block = CATALOGUES.estimator_blocks[wildcards.estimator]
    if block["simulator"] != "galaxy":
        source = simulator_source(block["simulator"], key=f"amortized.{wildcards.estimator}.simulator")
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
        return {"features": galaxy_config.library_file(GALAXY, ".features.npz")}
    directory = AMORTIZED_DIR.format(estimator=wildcards.estimator)
    return {"chunks": [f"{directory}/chunks/chunk_{chunk}.npz" for chunk in range(settings.simulation_chunks)]}


def catalogue_block(wildcards):
    return canonical(CATALOGUES.catalogues[wildcards.catalogue].block)


def catalogue_estimator(wildcards):
    directory = AMORTIZED_DIR.format(estimator=CATALOGUES.catalogues[wildcards.catalogue].block["estimator"])
    return {key: f"{directory}/{AMORTIZED_FILES[key]}" for key in ("estimator", "held_out", "summary")}


def catalogue_chunks(wildcards):
    plan = CATALOGUES.catalogues[wildcards.catalogue]
    directory = CATALOGUE_DIR.format(catalogue=wildcards.catalogue)
    return [f"{directory}/chunks/chunk_{chunk}.npz" for chunk in range(plan.chunks)]


def catalogue_targets():
    """Every estimator's files and every catalogue's samples and tables."""
    targets = []
    for name in CATALOGUES.estimators:
        directory = AMORTIZED_DIR.format(estimator=name)
        targets.extend(f"{directory}/{file}" for file in AMORTIZED_FILES.values())
    for name in CATALOGUES.catalogues:
        directory = CATALOGUE_DIR.format(catalogue=name)
        targets.extend(f"{directory}/{file}" for file in ("samples.hdf5", "summary.fits", "summary.csv"))
    return targets


rule amortized_simulate:
    input:
        unpack(amortized_galaxy_inputs),
    output:
        chunk=temp(AMORTIZED_DIR + "/chunks/chunk_{chunk}.npz"),
    log:
        "results/logs/amortized_simulate/{estimator}/chunk_{chunk}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=amortized_block,
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/amortized_simulate.py"


rule amortized_train:
    input:
        unpack(amortized_training_set),
    output:
        **{key: f"{AMORTIZED_DIR}/{name}" for key, name in AMORTIZED_FILES.items()},
    log:
        "results/logs/amortized_train/{estimator}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=amortized_block,
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/amortized_train.py"


rule catalogue_chunk:
    input:
        unpack(catalogue_estimator),
        catalogue=lambda wildcards: CATALOGUES.catalogues[wildcards.catalogue].block["path"],
    output:
        chunk=temp(CATALOGUE_DIR + "/chunks/chunk_{chunk}.npz"),
    log:
        "results/logs/catalogue_chunk/{catalogue}/chunk_{chunk}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=catalogue_block,
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/catalogue_chunk.py"


rule catalogue_summary:
    input:
        unpack(catalogue_estimator),
        chunks=catalogue_chunks,
    output:
        samples=CATALOGUE_DIR + "/samples.hdf5",
        fits=CATALOGUE_DIR + "/summary.fits",
        csv=CATALOGUE_DIR + "/summary.csv",
    log:
        "results/logs/catalogue_summary/{catalogue}.log",
    conda:
        "../../envs/seqsbi.yaml"
    script:
        "../scripts/catalogue_summary.py"
