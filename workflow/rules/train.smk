# The models every run needs: a GAN per model x dataset, and a factor predictor per dataset.


rule train_gan:
    output:
        generator="results/generators/{dataset}/{model}.pt",
        grid=report(
            "results/generators/{dataset}/{model}.png",
            caption="../report/gan_samples.rst",
            category="1. Generators",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
        losses="results/generators/{dataset}/{model}.losses.parquet",
    log:
        "results/logs/train_gan/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train_gan/{dataset}/{model}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: 2
    resources:
        **gpu_resources(),
    params:
        job=lambda wildcards: SWEEP.gan_params(wildcards.model, wildcards.dataset),
    script:
        "../scripts/train_gan.py"


rule train_factor_predictor:
    output:
        predictor="results/predictors/{dataset}.pt",
    log:
        "results/logs/train_factor_predictor/{dataset}.log",
    benchmark:
        "results/benchmarks/train_factor_predictor/{dataset}.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        job=lambda wildcards: SWEEP.predictor_params(wildcards.dataset),
    script:
        "../scripts/train_factor_predictor.py"
