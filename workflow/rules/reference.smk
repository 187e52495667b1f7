# Reference runs (engine 'likelihood'): the exact-likelihood posterior of one (run, observation), sampled by
# nautilus (seqsbi.reference). Its samples.npz has a round's layout, so pairplot and summarize_posterior
# read it unchanged (final_samples, round_samples in common.smk point at it).


rule reference_fit:
    input:
        unpack(galaxy_inputs),
    output:
        **{key: f"{REFERENCE_DIR}/{name}" for key, name in REFERENCE_FILES.items()},
    log:
        "results/logs/reference_fit/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=reference_config,
        observation=observation_params,
    script:
        "../scripts/reference_fit.py"
