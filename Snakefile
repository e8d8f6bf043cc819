# dplase workflow: train small GANs, discover latent directions with DP-LaSE and the baselines, evaluate every
# run on the same samples, collect one long-format Parquet and draw the figures from it.
#
#   snakemake --cores all                                             default CPU study (config/config.yaml)
#   snakemake --cores all --configfile config/ablation_density.yaml   density ablation (overlay)
#   snakemake --report results/report.html                            HTML report of the figures
#
# Results layout (templates in dplase.config.paths.PATHS; a run id is "{method}-{hash of the run's parameters}",
# results/runs.parquet maps ids to parameters):
#   results/generators/{dataset}/{model}/seed{s}.pt       trained or planted generator (+ .png, .losses.parquet)
#   results/predictors/{dataset}.pt                       factor predictor trained on real images
#   results/runs/{run_id}/directions.pt                   discovered directions (DirectionSet)
#   results/runs/{run_id}/losses.parquet                  discovery loss curves (empty for closed-form methods)
#   results/runs/{run_id}/metrics.parquet                 this run's metrics (long format)
#   results/runs/{run_id}/traversal.png                   traversal grid: rows = directions, columns = steps
#   results/runs/{run_id}/traversal.masked.png            with channel masks: direction 0 unmasked vs masked
#   results/runs.parquet                                  run id -> model, dataset, method, parameters
#   results/metrics.parquet                               every metric of every run: the source of all figures
#   results/losses.parquet                                every loss curve (GANs and trained methods)
#   results/comparison.md (.csv, _paired.csv)             methods compared: means, CIs, paired differences
#   results/figures/{figure}.png and .pdf                 figures
#   results/logs/{rule}/...  results/benchmarks/{rule}/...  one log and one timing file per job


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/discover.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/explore.smk"


# Light rules (the stage table's `local` ones, and the figures) run on the submitting node under a cluster
# executor (snakemake --profile slurm): each such rule says so itself (`localrule:`); the heavy ones go to SLURM.
localrules:
    all,


rule all:
    default_target: True
    input:
        final_targets,
        SWEEP.path("explorer"),
