"""Rule evaluate_walks: every metric of one run (dplase.jobs.evaluate_job)."""

import torch

from dplase.jobs import evaluate_job, job_log

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    evaluate_job(
        generator=snakemake.input.generator,
        directions=snakemake.input.directions,
        predictor=snakemake.input.predictor,
        out=snakemake.output.metrics,
        **snakemake.params.job,
    )
