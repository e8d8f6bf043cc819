# Evaluation of every run on the same seeded samples, and collection into one long-format table.


rule evaluate_walks:
    input:
        unpack(stage_inputs("evaluate_walks")),
    output:
        out=stage_output("evaluate_walks", "out"),
    log:
        "results/logs/evaluate_walks/{run_id}.log",
    benchmark:
        "results/benchmarks/evaluate_walks/{run_id}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["evaluate_walks"]["threads"]
    resources:
        **stage_resources("evaluate_walks"),
    params:
        job=stage_params("evaluate_walks"),
    script:
        "../scripts/run_job.py"


rule write_runs_table:
    output:
        out=stage_output("write_runs_table", "out"),
    log:
        "results/logs/write_runs_table.log",
    benchmark:
        "results/benchmarks/write_runs_table.tsv"
    localrule: STAGES["write_runs_table"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["write_runs_table"]["threads"]
    resources:
        **stage_resources("write_runs_table"),
    params:
        job=stage_params("write_runs_table"),
    script:
        "../scripts/run_job.py"


rule collect_metrics:
    input:
        unpack(stage_inputs("collect_metrics")),
    output:
        out=stage_output("collect_metrics", "out"),
    log:
        "results/logs/collect_metrics.log",
    benchmark:
        "results/benchmarks/collect_metrics.tsv"
    localrule: STAGES["collect_metrics"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["collect_metrics"]["threads"]
    resources:
        **stage_resources("collect_metrics"),
    params:
        job=stage_params("collect_metrics"),
    script:
        "../scripts/run_job.py"


rule collect_losses:
    input:
        unpack(stage_inputs("collect_losses")),
    output:
        out=stage_output("collect_losses", "out"),
    log:
        "results/logs/collect_losses.log",
    benchmark:
        "results/benchmarks/collect_losses.tsv"
    localrule: STAGES["collect_losses"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["collect_losses"]["threads"]
    resources:
        **stage_resources("collect_losses"),
    params:
        job=stage_params("collect_losses"),
    script:
        "../scripts/run_job.py"


rule compare_methods:
    input:
        unpack(stage_inputs("compare_methods")),
    output:
        out=stage_output("compare_methods", "out"),
        table=stage_output("compare_methods", "table"),
        paired=stage_output("compare_methods", "paired"),
        html=report(
            stage_output("compare_methods", "html"),
            caption="../report/comparison.rst",
            category="8. Method comparison",
        ),
    log:
        "results/logs/compare_methods.log",
    benchmark:
        "results/benchmarks/compare_methods.tsv"
    localrule: STAGES["compare_methods"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["compare_methods"]["threads"]
    resources:
        **stage_resources("compare_methods"),
    params:
        job=stage_params("compare_methods"),
    script:
        "../scripts/run_job.py"
