# One job per (run, observation, round): round k's artifacts on disk are the state round k+1 reads.


rule train_round:
    input:
        unpack(train_round_inputs),
    output:
        **{key: f"{ROUND_DIR}/{name}" for key, name in ROUND_FILES.items()},
    params:
        run=round_config,
        observation=observation_params,
    log:
        "results/logs/train_round/{run}/{obs}/round_{k}.log",
    conda:
        "../../envs/seqsbi.yaml"
    script:
        "../scripts/train_round.py"
