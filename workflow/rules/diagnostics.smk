# Can the posterior be trusted? Per (run, observation): posterior predictive check, round-to-round
# convergence (C2ST, and against a reference run's posterior when runs.<run>.reference names one) and
# training curves. Logic in seqsbi.diagnostics; figures in seqsbi.plots.


rule predictive_check:
    input:
        unpack(observation_inputs),
        # A custom simulator's file is no input of its own: editing it reruns the rounds, so the samples.
        unpack(galaxy_inputs),
        samples=final_samples,
    output:
        plot=report(
            "results/runs/{run}/{obs}/predictive_check.png",
            caption="../report/predictive_check.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "predictive check"},
        ),
        table=report(
            "results/runs/{run}/{obs}/predictive_check.tsv",
            caption="../report/predictive_table.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "predictive check table"},
        ),
    log:
        "results/logs/predictive_check/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=run_config,
        observation=observation_params,
    script:
        "../scripts/predictive_check.py"


rule convergence:
    input:
        unpack(reference_input),
        samples=round_samples,
    output:
        table=report(
            "results/runs/{run}/{obs}/convergence.csv",
            caption="../report/convergence_table.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "convergence table"},
        ),
        plot=report(
            "results/runs/{run}/{obs}/convergence.png",
            caption="../report/convergence.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "convergence"},
        ),
    log:
        "results/logs/convergence/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=run_config,
    script:
        "../scripts/convergence.py"


rule training_curves:
    input:
        logs=round_files("training_log"),
    output:
        plot=report(
            "results/runs/{run}/{obs}/training_curves.png",
            caption="../report/training_curves.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "training curves"},
        ),
        table=report(
            "results/runs/{run}/{obs}/training_summary.tsv",
            caption="../report/training_summary.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "training summary"},
        ),
    log:
        "results/logs/training_curves/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=run_config,
    script:
        "../scripts/training_curves.py"
