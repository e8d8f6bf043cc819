# Direction discovery, one job per run (any method), and the run's traversal grid.


rule discover_directions:
    input:
        generator=generator_of,
    output:
        directions="results/runs/{run_id}/directions.pt",
        losses="results/runs/{run_id}/losses.parquet",
    log:
        "results/logs/discover_directions/{run_id}.log",
    benchmark:
        "results/benchmarks/discover_directions/{run_id}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        **gpu_resources(),
    params:
        job=lambda wildcards: SWEEP.discover_params(wildcards.run_id),
    script:
        "../scripts/discover_directions.py"


rule plot_traversals:
    input:
        generator=generator_of,
        directions=rules.discover_directions.output.directions,
    output:
        grid=report(
            "results/runs/{run_id}/traversal.png",
            caption="../report/traversal.rst",
            category="2. Traversals",
            subcategory=lambda wildcards: run_of(wildcards).method,
            labels=lambda wildcards: SWEEP.report_labels(wildcards.run_id),
        ),
    log:
        "results/logs/plot_traversals/{run_id}.log",
    benchmark:
        "results/benchmarks/plot_traversals/{run_id}.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dplase=DPLASE,
        n_steps=config["traversal"]["n_steps"],
        max_eps=config["traversal"]["max_eps"],
        walk=lambda wildcards: run_of(wildcards).walk,
    shell:
        "{params.dplase} traverse --generator {input.generator} --directions {input.directions}"
        " --out {output.grid} --n-steps {params.n_steps} --max-eps {params.max_eps}"
        " --walk {params.walk} > {log} 2>&1"
