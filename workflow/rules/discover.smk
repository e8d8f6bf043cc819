# Direction discovery, one job per run (any method), and the run's traversal grid.


rule discover_directions:
    input:
        unpack(stage_inputs("discover_directions")),
    output:
        out=stage_output("discover_directions", "out"),
        losses=stage_output("discover_directions", "losses"),
    log:
        "results/logs/discover_directions/{run_id}.log",
    benchmark:
        "results/benchmarks/discover_directions/{run_id}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["discover_directions"]["threads"]
    resources:
        **stage_resources("discover_directions"),
    params:
        job=stage_params("discover_directions"),
    script:
        "../scripts/run_job.py"


rule plot_traversals:
    input:
        unpack(stage_inputs("plot_traversals")),
    output:
        out=report(
            stage_output("plot_traversals", "out"),
            caption="../report/traversal.rst",
            category="2. Traversals",
            subcategory=lambda wildcards: run_of(wildcards).method,
            labels=lambda wildcards: SWEEP.report_labels(wildcards.run_id),
        ),
    log:
        "results/logs/plot_traversals/{run_id}.log",
    benchmark:
        "results/benchmarks/plot_traversals/{run_id}.tsv"
    localrule: STAGES["plot_traversals"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["plot_traversals"]["threads"]
    resources:
        **stage_resources("plot_traversals"),
    params:
        job=stage_params("plot_traversals"),
    script:
        "../scripts/run_job.py"
