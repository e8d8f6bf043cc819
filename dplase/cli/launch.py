"""`dplase sweep`: run a config's sweep through submitit (SLURM job arrays, local processes or in-process)."""

from __future__ import annotations

import click

from dplase.launch.plan import LAUNCH_STAGES


@click.command()
@click.option("--config", "configs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Workflow config file (repeatable), merged onto --base-config like `snakemake --configfile`.")
@click.option("--cluster", type=click.Choice(["slurm", "local", "debug"]), default="slurm", show_default=True,
              help="slurm: SLURM job arrays; local: subprocesses on this machine; debug: in this process.")
@click.option("--base-config", default="config/config.yaml", show_default=True,
              help="The Snakefile's configfile the --config files overlay ('' for none).")
@click.option("--root", default="results", show_default=True, help="Results root (the Snakefile's is results).")
@click.option("--stage", "stages", multiple=True,
              type=click.Choice(LAUNCH_STAGES),
              help="Only these stages (repeatable; default all, then the collection).")
@click.option("--no-collect", is_flag=True, help="Skip writing runs.parquet, metrics.parquet and losses.parquet.")
@click.option("--logs", default="results/logs/submitit", show_default=True,
              help="submitit folder: one JOBID_TASK_0_log.out/.err per job.")
@click.option("--profile", default="profiles/slurm", show_default=True,
              help="Snakemake profile whose slurm_account/slurm_partition are the defaults.")
@click.option("--account", default=None, help="SLURM account (default: the profile's slurm_account).")
@click.option("--partition", default=None, help="SLURM partition (default: the profile's slurm_partition).")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=None,
              help="GPUs of each GPU stage job (default 1; 0 for CPU-only clusters).")
@click.option("--gpu-type", default=None, help="GPU type for --gres=gpu:TYPE:N (e.g. a100).")
@click.option("--array-parallelism", type=click.IntRange(min=1), default=None,
              help="At most this many tasks of an array run at once (default 50).")
@click.option("--dry-run", is_flag=True, help="List the tasks that would run, submit nothing.")
def sweep(configs, cluster, base_config, root, stages, no_collect, logs, profile, account, partition, gpus_per_job,
          gpu_type, array_parallelism, dry_run) -> None:
    """Fan a config's runs out as submitit job arrays: models, then discovery, then evaluation.

    Each stage is one job array calling the same job functions as the Snakemake rules and writing the same
    files at the same paths, so this route and `snakemake --profile slurm` are interchangeable. Tasks whose
    outputs exist are skipped; a failed task is reported with its log and the others go on; rerun the same
    command to do only the missing work. Jobs are pre-emption safe (requeued, resumed from their checkpoint).

    \b
    Examples:
      dplase sweep --config config/test.yaml --cluster slurm
      dplase sweep --config config/test.yaml --cluster local --stage discover_directions --no-collect
      dplase sweep --config config/test.yaml --cluster slurm --account myproj --partition gpu --gpu-type a100
    """
    from pathlib import Path

    from dplase.config import ConfigError
    from dplase.launch import launch, load_sweep, plan_tasks, slurm_options_from

    ctx = click.get_current_context()
    for path in configs:
        if not Path(path).is_file():
            raise click.BadParameter(f"config file {path} does not exist", param_hint="--config")
    try:
        the_sweep = load_sweep(configs, base_config or None, root)
    except (ConfigError, FileNotFoundError) as err:
        ctx.fail(str(err))
    if dry_run:
        tasks = plan_tasks(the_sweep, stages) if stages else plan_tasks(the_sweep)
        for task in tasks:
            click.echo(f"{'done' if task.done() else 'todo'}  {task.name}  -> {', '.join(task.outputs)}")
        return
    options = slurm_options_from(profile, {"account": account, "partition": partition,
                                           "gpus_per_job": gpus_per_job, "gpu_type": gpu_type,
                                           "array_parallelism": array_parallelism})
    report = launch(the_sweep, cluster, folder=logs, slurm=options, stages=stages or None,
                    collect=not no_collect, echo=click.echo)
    click.echo(report.summary())
    if not report.ok:
        ctx.exit(1)
