# One job per (run, observation, round): round k's artifacts on disk are the state round k+1 reads.
# With runs.<run>.simulation_chunks > 1 the round's simulations come from chunk jobs instead:
# propose_round draws theta (torch), simulate_chunk jobs simulate whole seeded blocks of it (numpy
# only), and train_round gathers them. The gathered set is the same for any chunk count.


rule train_round:
    input:
        unpack(train_round_inputs),
    output:
        **{key: f"{ROUND_DIR}/{name}" for key, name in ROUND_FILES.items()},
    log:
        "results/logs/train_round/{run}/{obs}/round_{round}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=round_config,
        observation=observation_params,
    script:
        "../scripts/train_round.py"


rule propose_round:
    input:
        unpack(previous_round),
    output:
        proposal=temp(f"{ROUND_DIR}/{PROPOSAL_FILE}"),
    log:
        "results/logs/propose_round/{run}/{obs}/round_{round}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=round_config,
    script:
        "../scripts/propose_round.py"


rule simulate_chunk:
    input:
        unpack(galaxy_inputs),
        unpack(simulator_inputs),
        proposal=f"{ROUND_DIR}/{PROPOSAL_FILE}",
    output:
        chunk=temp(f"{ROUND_DIR}/{CHUNK_FILE}"),
    log:
        "results/logs/simulate_chunk/{run}/{obs}/round_{round}/chunk_{chunk}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=round_config,
        chunks=lambda wildcards: PLAN.runs[wildcards.run].simulation_chunks,
    script:
        "../scripts/simulate_chunk.py"
