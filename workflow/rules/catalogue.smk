# Catalogues (config blocks amortized and catalogues; plan and input functions in catalogue_common.smk): a
# training set from the prior (scattered over amortized_simulate jobs) or the galaxy library -> one amortized
# NPE (amortized_train) -> batched posterior samples and trust flags for every catalogue row (catalogue_chunk
# jobs; the posterior predictive check simulates with the galaxy model) -> samples HDF5 and summary tables
# (catalogue_summary, a checkpoint) -> with catalogues.<name>.refine, sequential rounds for the flagged galaxies
# (refine_batch jobs, known once the summary is) -> merged samples and table (catalogue_merged).


rule amortized_simulate:
    input:
        unpack(amortized_galaxy_inputs),
    output:
        chunk=temp(f"{AMORTIZED_DIR}/chunks/chunk_{{chunk}}.npz"),
    log:
        "results/logs/amortized_simulate/{estimator}/chunk_{chunk}.log",
    # Seconds-long jobs: a cluster profile submits several as one job (group-components in profiles/slurm).
    group:
        "amortized_simulate"
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=training_set_block,
        chunks=lambda wildcards: CATALOGUES.estimators[wildcards.estimator].simulation_chunks,
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
        unpack(catalogue_model_inputs),
        training_set=catalogue_training_set,
        catalogue=lambda wildcards: CATALOGUES.catalogues[wildcards.catalogue].block["path"],
    output:
        chunk=temp(f"{CATALOGUE_DIR}/chunks/chunk_{{chunk}}.npz"),
    log:
        "results/logs/catalogue_chunk/{catalogue}/chunk_{chunk}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=catalogue_block,
        estimator_block=catalogue_estimator_block,
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/catalogue_chunk.py"


checkpoint catalogue_summary:
    input:
        unpack(catalogue_estimator),
        chunks=catalogue_chunks,
    output:
        samples=f"{CATALOGUE_DIR}/samples.hdf5",
        fits=f"{CATALOGUE_DIR}/summary.fits",
        csv=f"{CATALOGUE_DIR}/summary.csv",
    log:
        "results/logs/catalogue_summary/{catalogue}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        samples=lambda wildcards: CATALOGUES.catalogues[wildcards.catalogue].block["posterior_samples"],
    script:
        "../scripts/catalogue_summary.py"


rule refine_batch:
    input:
        unpack(catalogue_estimator),
        unpack(catalogue_model_inputs),
        unpack(refine_inputs),
        catalogue=lambda wildcards: CATALOGUES.catalogues[wildcards.catalogue].block["path"],
        table=f"{CATALOGUE_DIR}/summary.fits",
        samples=f"{CATALOGUE_DIR}/samples.hdf5",
    output:
        batch=f"{CATALOGUE_DIR}/refined/batch_{{batch}}.npz",
    log:
        "results/logs/refine_batch/{catalogue}/batch_{batch}.log",
    # Each job refines refine.galaxies_per_job galaxies in one Python process (one torch and sbi import); a
    # cluster profile also submits several jobs as one (group-components in profiles/slurm). Ignored locally.
    group:
        "refine"
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=catalogue_block,
        estimator_block=catalogue_estimator_block,
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/refine_batch.py"


rule catalogue_merged:
    input:
        table=f"{CATALOGUE_DIR}/summary.fits",
        samples=f"{CATALOGUE_DIR}/samples.hdf5",
        batches=refined_batches,
    output:
        samples=f"{CATALOGUE_DIR}/merged_samples.hdf5",
        fits=f"{CATALOGUE_DIR}/merged_summary.fits",
        csv=f"{CATALOGUE_DIR}/merged_summary.csv",
    log:
        "results/logs/catalogue_merged/{catalogue}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        block=catalogue_block,
    script:
        "../scripts/catalogue_merged.py"
