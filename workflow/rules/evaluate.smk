# Evaluation of every run on the same seeded samples, and collection into one long-format table.


rule evaluate_walks:
    input:
        generator=generator_of,
        directions=rules.discover_directions.output.directions,
        predictor=predictor_of,
    output:
        metrics="results/runs/{run_id}/metrics.parquet",
    log:
        "results/logs/evaluate_walks/{run_id}.log",
    benchmark:
        "results/benchmarks/evaluate_walks/{run_id}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        **gpu_resources(),
    params:
        job=lambda wildcards: SWEEP.evaluate_params(wildcards.run_id),
    script:
        "../scripts/evaluate_walks.py"


rule write_runs_table:
    output:
        runs="results/runs.parquet",
    log:
        "results/logs/write_runs_table.log",
    benchmark:
        "results/benchmarks/write_runs_table.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda wildcards: [run.to_dict() for run in SWEEP.runs],
    script:
        "../scripts/write_runs_table.py"


rule collect_metrics:
    input:
        metrics=all_run_files("run_metrics"),
        runs=rules.write_runs_table.output.runs,
    output:
        metrics="results/metrics.parquet",
    log:
        "results/logs/collect_metrics.log",
    benchmark:
        "results/benchmarks/collect_metrics.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/collect_metrics.py"


rule collect_losses:
    input:
        runs=all_run_files("losses"),
        generators=generator_loss_files,
    output:
        losses="results/losses.parquet",
    log:
        "results/logs/collect_losses.log",
    benchmark:
        "results/benchmarks/collect_losses.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        generator_labels=[
            {"model": m, "dataset": d, "run_id": None, "seed": None}
            for m, d in SWEEP.trained_generators()
        ],
    script:
        "../scripts/collect_losses.py"
