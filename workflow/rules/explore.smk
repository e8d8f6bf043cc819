# The walk explorer: one self-contained HTML page of every shown run's walks (sliders per direction over the
# evaluation's step grid, two runs side by side), frames rendered from each run's own evaluation start latents.


rule explore_walks:
    input:
        unpack(stage_inputs("explore_walks")),
    output:
        out=report(
            stage_output("explore_walks", "out"),
            caption="../report/explorer.rst",
            category="9. Walk explorer",
        ),
    log:
        "results/logs/explore_walks.log",
    benchmark:
        "results/benchmarks/explore_walks.tsv"
    localrule: STAGES["explore_walks"]["local"]
    conda:
        "../envs/dplase.yaml"
    threads: STAGES["explore_walks"]["threads"]
    resources:
        **stage_resources("explore_walks"),
    params:
        job=stage_params("explore_walks"),
    script:
        "../scripts/run_job.py"
