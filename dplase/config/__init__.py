"""Workflow configs: loading with defaults (`loading`), checks that name the offending key (`checks`), the
option names of the functions a config drives (`options`), run expansion and ids (`runs`), the results path
scheme (`paths`) and each job's arguments (`study.Sweep`). The registries it checks names against are listed
in `registries`. Nothing in the library imports this package: it sits above the library and below the launch
routes (Snakemake rules, `dplase sweep`).
"""

from dplase.config.checks import check_config
from dplase.config.errors import ConfigError
from dplase.config.loading import merge_configs, read_yaml, validate_config
from dplase.config.paths import PATHS
from dplase.config.runs import Run, expand_runs, make_run_id
from dplase.config.study import Sweep, load_config, prepare

__all__ = [
    "PATHS",
    "ConfigError",
    "Run",
    "Sweep",
    "check_config",
    "expand_runs",
    "load_config",
    "make_run_id",
    "merge_configs",
    "prepare",
    "read_yaml",
    "validate_config",
]
