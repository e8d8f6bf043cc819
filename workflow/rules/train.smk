# The models every run needs: a generator per model x dataset x generator seed (trained, or planted: built from
# its config), and a factor predictor per dataset.


rule train_gan:
    output:
        out=stage_output("train_gan", "out"),
        grid=report(
            stage_output("train_gan", "grid"),
            caption="../report/gan_samples.rst",
            category="1. Generators",
            subcategory="{model}",
            labels={
                "dataset": "{dataset}",
                "model": "{model}",
                "model seed": "{model_seed}",
            },
        ),
        losses=stage_output("train_gan", "losses"),
    log:
        "results/logs/train_gan/{dataset}/{model}/seed{model_seed}.log",
    benchmark:
        "results/benchmarks/train_gan/{dataset}/{model}/seed{model_seed}.tsv"
    retries: config["retries"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["train_gan"]["threads"]
    resources:
        **stage_resources("train_gan"),
    params:
        job=stage_params("train_gan"),
    script:
        "../scripts/run_job.py"


rule train_factor_predictor:
    output:
        out=stage_output("train_factor_predictor", "out"),
    log:
        "results/logs/train_factor_predictor/{dataset}.log",
    benchmark:
        "results/benchmarks/train_factor_predictor/{dataset}.tsv"
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["train_factor_predictor"]["threads"]
    resources:
        **stage_resources("train_factor_predictor"),
    params:
        job=stage_params("train_factor_predictor"),
    script:
        "../scripts/run_job.py"
