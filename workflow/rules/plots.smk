# Figures and tables per (run, observation), from the rounds' posterior samples.


rule pairplot:
    input:
        unpack(observation_inputs),
        unpack(reference_input),
        samples=round_samples,
    output:
        report(
            "results/runs/{run}/{obs}/pairplot.png",
            caption="../report/pairplot.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "pair plot"},
        ),
    log:
        "results/logs/pairplot/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        run=run_config,
        observation=observation_params,
    script:
        "../scripts/pairplot.py"


rule summarize_posterior:
    input:
        unpack(observation_inputs),
        samples=final_samples,
        round_summary=final_round_summary,
    output:
        report(
            "results/runs/{run}/{obs}/posterior_summary.tsv",
            caption="../report/posterior_summary.rst",
            category="{run}",
            subcategory="{obs}",
            labels={"result": "summary table"},
        ),
    log:
        "results/logs/summarize_posterior/{run}/{obs}.log",
    conda:
        "../../envs/seqsbi.yaml"
    params:
        observation=observation_params,
    script:
        "../scripts/summarize_posterior.py"
