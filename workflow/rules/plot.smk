# Figures, drawn from the collected Parquet files alone (so they can be redrawn without recomputing).


rule plot_fid_vs_step:
    input:
        table=rules.collect_metrics.output.metrics,
    output:
        png=report(
            "results/figures/fid_vs_step.png",
            caption="../report/fid_vs_step.rst",
            category="3. Realism along walks",
        ),
        pdf="results/figures/fid_vs_step.pdf",
    log:
        "results/logs/plot_fid_vs_step.log",
    benchmark:
        "results/benchmarks/plot_fid_vs_step.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="fid_vs_step",
        options=lambda wildcards: SWEEP.figure_options(),
    script:
        "../scripts/plot_figure.py"


rule plot_density_vs_step:
    input:
        table=rules.collect_metrics.output.metrics,
    output:
        png=report(
            "results/figures/density_vs_step.png",
            caption="../report/density_vs_step.rst",
            category="4. Density along walks",
        ),
        pdf="results/figures/density_vs_step.pdf",
    log:
        "results/logs/plot_density_vs_step.log",
    benchmark:
        "results/benchmarks/plot_density_vs_step.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="density_vs_step",
        options=lambda wildcards: SWEEP.figure_options(),
    script:
        "../scripts/plot_figure.py"


rule plot_attribute_change:
    input:
        table=rules.collect_metrics.output.metrics,
    output:
        png=report(
            "results/figures/attribute_change.png",
            caption="../report/attribute_change.rst",
            category="5. Attribute change",
        ),
        pdf="results/figures/attribute_change.pdf",
    log:
        "results/logs/plot_attribute_change.log",
    benchmark:
        "results/benchmarks/plot_attribute_change.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="attribute_change",
        options=lambda wildcards: SWEEP.figure_options(),
    script:
        "../scripts/plot_figure.py"


rule plot_ablation:
    input:
        table=rules.collect_metrics.output.metrics,
    output:
        png=report(
            "results/figures/ablation.png",
            caption="../report/ablation.rst",
            category="6. Density ablation",
        ),
        pdf="results/figures/ablation.pdf",
    log:
        "results/logs/plot_ablation.log",
    benchmark:
        "results/benchmarks/plot_ablation.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="ablation",
        options=lambda wildcards: SWEEP.figure_options(),
    script:
        "../scripts/plot_figure.py"


rule plot_loss_curves:
    input:
        table=rules.collect_losses.output.losses,
    output:
        png=report(
            "results/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="7. Training curves",
        ),
        pdf="results/figures/loss_curves.pdf",
    log:
        "results/logs/plot_loss_curves.log",
    benchmark:
        "results/benchmarks/plot_loss_curves.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="loss_curves",
        options=lambda wildcards: SWEEP.figure_options(),
    script:
        "../scripts/plot_figure.py"
