"""Rule train_factor_predictor: the factor predictor of one dataset (dplase.jobs.train_predictor_job)."""

import torch

from dplase.jobs import job_log, train_predictor_job

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_predictor_job(out=snakemake.output.predictor, **snakemake.params.job)
