"""Every rule's script: run the job of the rule's stage (dplase.stages.STAGES) with the rule's files and params."""

import torch

from dplase.jobs import job_log
from dplase.stages import run_job


def files(namedlist):
    """Named inputs/outputs as name -> path, or -> list of paths for a list-valued input."""
    return {name: value if isinstance(value, str) else list(value) for name, value in namedlist.items()}


with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)  # the job's share of the cores, as Snakemake scheduled it
    run_job(
        snakemake.rule,
        {**files(snakemake.input), **files(snakemake.output)},
        snakemake.params.job,
    )
