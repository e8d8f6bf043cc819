"""Rule train_gan: train one model x dataset GAN (dplase.jobs.train_gan_job)."""

import torch

from dplase.jobs import job_log, train_gan_job

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)  # the job's share of the cores, as Snakemake scheduled it
    train_gan_job(out=snakemake.output.generator, **snakemake.params.job)
