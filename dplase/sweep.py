"""Workflow configs: loading with defaults, validation that names the offending key, and sweep expansion.

A config names models, datasets, methods and parameter grids (see workflow/schemas/config.schema.yaml). Its
sweeps expand to runs: models x datasets x methods x seeds x grid, minus the explicit `exclude` entries, plus
the explicit `include` runs. Every run gets a short stable id, a hash of its parameters, so the same run has
the same id (and the same result paths) on every machine and in both launch routes (Snakemake and submitit).

Result paths (relative to the results root, "results" by default) are declared once, in `PATHS`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: result path templates (relative to the results root); the Snakemake rules use the same scheme
PATHS = {
    "generator": "generators/{dataset}/{model}.pt",
    "generator_grid": "generators/{dataset}/{model}.png",
    "generator_losses": "generators/{dataset}/{model}.losses.parquet",
    "predictor": "predictors/{dataset}.pt",
    "directions": "runs/{run_id}/directions.pt",
    "losses": "runs/{run_id}/losses.parquet",
    "run_metrics": "runs/{run_id}/metrics.parquet",
    "traversal": "runs/{run_id}/traversal.png",
    "runs_table": "runs.parquet",
    "metrics": "metrics.parquet",
    "all_losses": "losses.parquet",
}

#: metric groups `dplase evaluate --metrics` accepts (used when dplase.metrics.evaluate is not importable)
KNOWN_METRICS = ("attr", "disent", "fid", "density", "rca")
#: dataset registry names (dplase.data.DATASET_NAMES; the registry is consulted for any other name)
KNOWN_DATASETS = ("shapes", "color_shapes", "digits", "folder")
#: method names (used when dplase.methods is not importable)
KNOWN_METHODS = ("dplase", "sefa", "ganspace", "voynov", "random", "coordinate")
#: walks a run may name
WALKS = ("linear", "norm", "learned")
#: methods whose DirectionSet carries a learned density correction (the only ones a learned walk can use)
LEARNED_WALK_METHODS = ("dplase",)
#: run keys that are not method options
RUN_KEYS = ("model", "dataset", "method", "seed")


class ConfigError(ValueError):
    """A config that cannot run; the message starts with the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


# ----------------------------------------------------------------------------------------------------- loading


def default_schema_path() -> Path:
    """The workflow's JSON schema (workflow/schemas/config.schema.yaml at the repository root)."""
    path = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"config schema not found at {path}; pass schema_path= explicitly")
    return path


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file (safe loader)."""
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def merge_configs(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overlay`` into a copy of ``base`` the way Snakemake merges --configfile onto configfile:.

    Mappings merge key by key; every other value (lists included) replaces the base value.
    """
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_configs(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | os.PathLike, schema_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read YAML config files (later ones merged onto earlier ones), validate them and fill defaults.

    ``load_config("config/config.yaml", "config/test.yaml")`` gives what
    ``snakemake --configfile config/test.yaml`` sees.
    """
    config: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError("<root>", f"{path} must hold a mapping, got {type(data).__name__}")
        config = merge_configs(config, data)
    validate_config(config, schema_path)
    check_config(config)
    return config


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Validate ``config`` against the JSON schema in place, filling every default; returns it.

    Raises `ConfigError` naming the first offending key (for example ``models.dcgan.train.steps``).
    """
    import jsonschema

    schema = read_yaml(schema_path or default_schema_path())
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        # fill defaults before descending, so nested defaults of a defaulted object are filled too
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, subschema)

    validator_cls = jsonschema.validators.extend(base, {"properties": properties_with_defaults})
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(config))
    if error is not None:
        key = _key_path(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            if extra:
                key = _key_path([*error.absolute_path, extra[0]])
                raise ConfigError(key, f"unknown key; allowed here: {', '.join(allowed)}")
        raise ConfigError(key, error.message)
    return config


# ------------------------------------------------------------------------------------------- semantic checks


def _registry_methods() -> tuple[str, ...]:
    try:
        from dplase.methods import METHOD_NAMES
    except ImportError:
        return KNOWN_METHODS
    return tuple(METHOD_NAMES)


def _registry_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """The metric groups the evaluator knows. Names in `KNOWN_METRICS` need no import of the (heavy)
    evaluation module, which keeps DAG construction fast; any other name is looked up in the registry."""
    if set(names) <= set(KNOWN_METRICS):
        return KNOWN_METRICS
    try:
        from dplase.metrics.evaluate import METRIC_GROUPS
    except ImportError:
        return KNOWN_METRICS
    return tuple(METRIC_GROUPS)


def _registry_datasets(names: Sequence[str]) -> tuple[str, ...]:
    """The registered dataset names (the registry is imported only for a name outside `KNOWN_DATASETS`)."""
    if set(names) <= set(KNOWN_DATASETS):
        return KNOWN_DATASETS
    try:
        from dplase.data import DATASET_NAMES
    except ImportError:
        return KNOWN_DATASETS
    return tuple(DATASET_NAMES)


#: GanConfig fields the workflow sets itself (from the dataset entry and the top-level keys)
GAN_FIELDS_FROM_WORKFLOW = ("dataset", "image_size", "dataset_options", "checkpoint_every")


def _gan_option_names() -> set[str] | None:
    try:
        from dplase.training.gan import GanConfig
    except ImportError:
        return None
    return {f.name for f in dataclasses.fields(GanConfig)} - set(GAN_FIELDS_FROM_WORKFLOW)


def _eval_option_names() -> set[str] | None:
    try:
        from dplase.metrics.evaluate import EvalConfig
    except ImportError:
        return None
    set_by_job = {"metrics", "n_samples", "seed", "extractor", "inception_weights", "progress"}
    return {f.name for f in dataclasses.fields(EvalConfig)} - set_by_job


def _predictor_option_names() -> set[str] | None:
    try:
        import inspect

        from dplase.metrics.predictor import train_predictor
    except ImportError:
        return None
    set_by_job = {"dataset", "steps", "seed", "device", "checkpoint_path", "progress"}
    return set(inspect.signature(train_predictor).parameters) - set_by_job


def _check_options(options: Mapping[str, Any], key: str, known: Callable[[], set[str] | None]) -> None:
    """Options must be fields of the function's config (``known`` is called only when there are options, so
    the heavy module behind it is imported only then)."""
    names = known() if options else None
    for option in options:
        if names is not None and option not in names:
            raise ConfigError(f"{key}.{option}", f"unknown option; known: {', '.join(sorted(names))}")


@functools.lru_cache(maxsize=64)
def _method_option_names(method: str) -> frozenset[str] | None:
    """Option names a method accepts (config dataclass fields), or None when it cannot be imported yet."""
    try:
        from dplase.methods import get_method

        spec = get_method(method)
    except (ImportError, AttributeError):
        return None
    return frozenset(f.name for f in dataclasses.fields(spec.config_cls))


@functools.lru_cache(maxsize=256)
def _method_default(method: str, option: str, fallback: Any) -> Any:
    try:
        from dplase.methods import get_method

        fields = {f.name: f for f in dataclasses.fields(get_method(method).config_cls)}
    except (ImportError, AttributeError):
        return fallback
    field = fields.get(option)
    return fallback if field is None or field.default is dataclasses.MISSING else field.default


#: config spelling -> spellings a method's config class may use instead (``lambda`` is a Python keyword)
OPTION_SPELLINGS = {"lambda": ("lam", "lambda_", "lmbda", "lambda_var")}


def option_field(option: str, fields: Iterable[str]) -> str:
    """The config-class field a run option sets (``lambda`` -> ``lam`` where the class spells it so)."""
    if option in fields:
        return option
    return next((alias for alias in OPTION_SPELLINGS.get(option, ()) if alias in fields), option)


def method_config(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Run parameters as keyword arguments of the method's config class."""
    fields = _method_option_names(method)
    return dict(params) if fields is None else {option_field(k, fields): v for k, v in params.items()}


def model_z_dim(model: Mapping[str, Any]) -> int | None:
    """The latent dimension of a model entry (from its checkpoint when it has one)."""
    if model.get("checkpoint"):
        try:
            from dplase.generators.registry import generator_meta

            return int(generator_meta(model["checkpoint"])["arch"]["z_dim"])
        except Exception:  # an unreadable checkpoint is reported when the job loads it
            return None
    return int(model.get("train", {}).get("z_dim", 16))


def check_config(config: Mapping[str, Any]) -> None:
    """Reject a config that validates but cannot run (unknown names, negative steps, K > z_dim, missing files).

    Expects a config already passed through `validate_config` (defaults filled). Raises `ConfigError`.
    """
    models, datasets = config["models"], config["datasets"]
    known_datasets = _registry_datasets([ds.get("name") or ds_id for ds_id, ds in datasets.items()])
    for ds_id, ds in datasets.items():
        name = ds.get("name") or ds_id
        if name not in known_datasets:
            key = f"datasets.{ds_id}.name" if ds.get("name") else f"datasets.{ds_id}"
            raise ConfigError(key, f"unknown dataset '{name}'; known: {', '.join(known_datasets)}")
        _check_paths(ds.get("options", {}), f"datasets.{ds_id}.options")
    gan_options = _gan_option_names()
    for model_id, model in models.items():
        if model.get("checkpoint") and not Path(model["checkpoint"]).is_file():
            raise ConfigError(f"models.{model_id}.checkpoint", f"file {model['checkpoint']} does not exist")
        for option in model["train"]:
            if gan_options is not None and option not in gan_options:
                raise ConfigError(f"models.{model_id}.train.{option}",
                                  f"not a GAN training option; known: {', '.join(sorted(gan_options))}")
    weights = config["evaluation"].get("inception_weights")
    if weights and not Path(weights).is_file():
        raise ConfigError("evaluation.inception_weights", f"file {weights} does not exist")
    _check_options(config["evaluation"]["options"], "evaluation.options", _eval_option_names)
    _check_options(config["predictor"]["options"], "predictor.options", _predictor_option_names)
    known_metrics = _registry_metrics(config["evaluation"]["metrics"])
    for i, metric in enumerate(config["evaluation"]["metrics"]):
        if metric not in known_metrics:
            raise _unknown(f"evaluation.metrics[{i}]", "metric", metric, known_metrics)
    known_methods = _registry_methods()
    for i, sweep in enumerate(config["sweeps"]):
        where = f"sweeps[{i}]"
        _check_names(sweep.get("models"), models, f"{where}.models", "model")
        _check_names(sweep.get("datasets"), datasets, f"{where}.datasets", "dataset")
        for j, method in enumerate(sweep["methods"]):
            if method not in known_methods:
                raise _unknown(f"{where}.methods[{j}]", "method", method, known_methods)
        for part in ("params", "grid"):
            for option, value in sweep[part].items():
                for v in value if part == "grid" else [value]:
                    _check_option(option, v, f"{where}.{part}.{option}")
            for method in sweep["methods"]:
                _check_method_accepts(method, sweep[part], f"{where}.{part}")
    for i, extra in enumerate(config["include"]):
        where = f"include[{i}]"
        _check_names([extra["model"]], models, f"{where}.model", "model")
        _check_names([extra["dataset"]], datasets, f"{where}.dataset", "dataset")
        if extra["method"] not in known_methods:
            raise _unknown(f"{where}.method", "method", extra["method"], known_methods)
        for option, value in extra["params"].items():
            _check_option(option, value, f"{where}.params.{option}")
        _check_method_accepts(extra["method"], extra["params"], f"{where}.params")
    _check_runs(config)


def _unknown(key: str, what: str, name: str, known: Iterable[str]) -> ConfigError:
    return ConfigError(key, f"unknown {what} '{name}'; known: {', '.join(known)}")


def _check_names(names: Sequence[str] | None, defined: Mapping[str, Any], key: str, what: str) -> None:
    """Every name must be defined; the key gets an index when ``names`` is a config list."""
    indexed = len(names or []) != 1 or not key.endswith(f".{what}")
    for j, name in enumerate(names or []):
        if name not in defined:
            raise ConfigError(f"{key}[{j}]" if indexed else key,
                              f"unknown {what} '{name}'; defined {what}s: {', '.join(defined)}")


def _check_paths(options: Mapping[str, Any], key: str) -> None:
    for name in ("path", "factors"):
        value = options.get(name)
        if isinstance(value, str) and not Path(value).exists():
            raise ConfigError(f"{key}.{name}", f"{value} does not exist")


def _check_option(option: str, value: Any, key: str) -> None:
    if option.endswith("steps") and isinstance(value, int | float) and value < 0:
        raise ConfigError(key, f"steps must be >= 0, got {value}")
    if option == "walk" and value not in WALKS:
        raise ConfigError(key, f"unknown walk '{value}'; choose one of {', '.join(WALKS)}")
    if option == "k" and (not isinstance(value, int) or value < 1):
        raise ConfigError(key, f"K must be a positive integer, got {value!r}")


def _check_method_accepts(method: str, options: Mapping[str, Any], key: str) -> None:
    accepted = _method_option_names(method)
    if accepted is None:
        return
    for option in options:
        if option_field(option, accepted) not in accepted:
            raise ConfigError(f"{key}.{option}",
                              f"method '{method}' has no option '{option}'; its options: {', '.join(sorted(accepted))}")


def _check_runs(config: Mapping[str, Any]) -> None:
    """Checks that depend on the combination a run makes (after `exclude`): K <= z_dim of its model, and a
    learned walk only for methods that fit a density correction."""
    z_dims = {m: model_z_dim(spec) for m, spec in config["models"].items()}
    seen: set[tuple[str, str, Any, str]] = set()
    for run in expand_runs(config):
        marker = (run.model, run.method, run.params.get("k"), run.walk)
        if marker in seen:
            continue
        seen.add(marker)
        if run.walk == "learned" and run.method not in LEARNED_WALK_METHODS:
            raise ConfigError(_param_key(config, run, "walk"),
                              f"walk 'learned' needs a learned density correction, which only "
                              f"{', '.join(LEARNED_WALK_METHODS)} fits, not {run.method} (add an exclude entry)")
        k = run.params.get("k")
        k = k if k is not None else _method_default(run.method, "k", 10)
        z_dim = z_dims.get(run.model)
        if z_dim is not None and isinstance(k, int) and k > z_dim:
            raise ConfigError(_param_key(config, run, "k"), f"K={k} exceeds z_dim={z_dim} of model '{run.model}' "
                              f"(method {run.method}{'' if 'k' in run.params else ', its default K'})")


def _param_key(config: Mapping[str, Any], run: Run, option: str) -> str:
    """The config key that sets (or should set) a run's option."""
    if run.origin.startswith("include"):
        return f"{run.origin}.params.{option}"
    index = int(run.origin[len("sweeps["):-1])
    return f"{run.origin}.{'grid' if option in config['sweeps'][index]['grid'] else 'params'}.{option}"


# ------------------------------------------------------------------------------------------------------ runs


def _canonical(value: Any) -> Any:
    """JSON-stable form for hashing: 1 and 1.0 hash alike, dict order never matters."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        f = float(value)
        return int(f) if math.isfinite(f) and f.is_integer() else f
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


def make_run_id(model: str, dataset: str, method: str, seed: int, params: Mapping[str, Any]) -> str:
    """Short stable id: ``{method}-{10 hex digits}`` hashing model, dataset, method, seed and params."""
    payload = {"model": model, "dataset": dataset, "method": method, "seed": int(seed), "params": params}
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return f"{method}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Run:
    """One discovery + evaluation run."""

    run_id: str
    model: str
    dataset: str
    method: str
    seed: int
    params: dict[str, Any]
    sweep: str = ""
    origin: str = ""  # config key the run came from (for error messages)

    @property
    def walk(self) -> str:
        """The walk the run's directions are fitted for (the method's default when the config names none)."""
        return str(self.params.get("walk", _method_default(self.method, "walk", "linear")))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able description the job functions take."""
        return {"run_id": self.run_id, "model": self.model, "dataset": self.dataset, "method": self.method,
                "seed": self.seed, "params": dict(self.params), "sweep": self.sweep}

    def to_row(self) -> dict[str, Any]:
        """One row of the runs table (the common options also as columns)."""
        p = self.params
        return {
            "run_id": self.run_id, "sweep": self.sweep, "model": self.model, "dataset": self.dataset,
            "method": self.method, "walk": self.walk, "k": _opt_int(p.get("k")), "layer": _opt_str(p.get("layer")),
            "lambda": _opt_float(p.get("lambda")), "zeta": _opt_float(p.get("zeta")), "seed": int(self.seed),
            "params": json.dumps(_canonical(p), sort_keys=True),
        }


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _matches(run: Run, pattern: Mapping[str, Any]) -> bool:
    for key, want in pattern.items():
        have = getattr(run, key) if key in RUN_KEYS else run.params.get(key, "<unset>")
        if _canonical(have) != _canonical(want):
            return False
    return True


def _iter_runs(config: Mapping[str, Any]) -> Iterable[Run]:
    """Every run of every sweep and include entry, before exclusion and de-duplication."""
    for i, sweep in enumerate(config["sweeps"]):
        models = sweep.get("models") or list(config["models"])
        datasets = sweep.get("datasets") or list(config["datasets"])
        grid_keys = list(sweep["grid"])
        grid_values = [sweep["grid"][k] for k in grid_keys]
        for model, dataset, method, seed, point in itertools.product(
            models, datasets, sweep["methods"], sweep["seeds"], itertools.product(*grid_values)
        ):
            params = {**sweep["params"], **dict(zip(grid_keys, point, strict=True))}
            yield Run(make_run_id(model, dataset, method, seed, params), model, dataset, method, int(seed),
                      params, sweep.get("name", "sweep"), f"sweeps[{i}]")
    for i, extra in enumerate(config["include"]):
        params = dict(extra.get("params", {}))
        seed = int(extra.get("seed", 0))
        yield Run(make_run_id(extra["model"], extra["dataset"], extra["method"], seed, params), extra["model"],
                  extra["dataset"], extra["method"], seed, params, extra.get("sweep", "include"), f"include[{i}]")


def expand_runs(config: Mapping[str, Any]) -> list[Run]:
    """The run list: all sweeps' products minus `exclude` matches, plus `include`; unique by run id, in order.

    Explicitly included runs are kept even when an exclude pattern matches them.
    """
    runs: dict[str, Run] = {}
    for run in _iter_runs(config):
        if run.origin.startswith("sweeps") and any(_matches(run, pat) for pat in config["exclude"]):
            continue
        runs.setdefault(run.run_id, run)
    return list(runs.values())


def runs_table(runs: Sequence[Run]):
    """The runs as a DataFrame (one row per run, columns as `Run.to_row`)."""
    import pandas as pd

    columns = ["run_id", "sweep", "model", "dataset", "method", "walk", "k", "layer", "lambda", "zeta", "seed",
               "params"]
    frame = pd.DataFrame([r.to_row() for r in runs], columns=columns)
    return frame.astype({"k": "Int64", "lambda": "Float64", "zeta": "Float64", "seed": "int64"})


def write_runs_table(runs: Sequence[Run], path: str | os.PathLike) -> Path:
    """Write the runs table as Parquet, atomically."""
    from dplase.artifacts import atomic_write

    frame = runs_table(runs)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


# ---------------------------------------------------------------------------------------------------- sweeps


@dataclass
class Sweep:
    """A validated config and its runs, with the lookups the workflow's input functions need."""

    config: dict[str, Any]
    runs: list[Run]
    root: str = "results"

    def __post_init__(self) -> None:
        self.by_id = {run.run_id: run for run in self.runs}

    def run(self, run_id: str) -> Run:
        try:
            return self.by_id[run_id]
        except KeyError:
            raise KeyError(f"run id '{run_id}' is not part of this config's sweep") from None

    def path(self, name: str, **fields: Any) -> str:
        """A result path from `PATHS` under the results root."""
        return f"{self.root}/{PATHS[name].format(**fields)}"

    def generator_path(self, model: str, dataset: str) -> str:
        """The generator a run uses: the model's pretrained checkpoint, or the one the workflow trains."""
        checkpoint = self.config["models"][model].get("checkpoint")
        return checkpoint or self.path("generator", model=model, dataset=dataset)

    def run_paths(self, run: Run | str) -> dict[str, str]:
        """Every path of one run (its generator and predictor included)."""
        run = self.run(run) if isinstance(run, str) else run
        paths = {name: self.path(name, run_id=run.run_id)
                 for name in ("directions", "losses", "run_metrics", "traversal")}
        paths["generator"] = self.generator_path(run.model, run.dataset)
        paths["predictor"] = self.path("predictor", dataset=run.dataset)
        return paths

    def traversal_runs(self) -> list[Run]:
        """Runs that get a traversal grid (all, or those whose seed is in the config's traversal.seeds)."""
        seeds = self.config["traversal"].get("seeds")
        return [r for r in self.runs if seeds is None or r.seed in seeds]

    def trained_generators(self) -> list[tuple[str, str]]:
        """(model, dataset) pairs whose generator the workflow trains, in run order."""
        pairs = {(r.model, r.dataset): None for r in self.runs if not self.config["models"][r.model].get("checkpoint")}
        return list(pairs)

    def datasets(self) -> list[str]:
        """Datasets the runs use (each needs a factor predictor)."""
        return list({r.dataset: None for r in self.runs})

    # The *_params methods give the JSON-able, path-free keyword arguments of the dplase.jobs functions, so the
    # Snakemake rules and the submitit launcher pass exactly the same values (paths are added by the caller).

    def dataset_spec(self, dataset: str) -> dict[str, Any]:
        """``{"id", "name", "image_size", "options"}`` of a dataset id (registry name resolved)."""
        entry = self.config["datasets"][dataset]
        return {"id": dataset, "name": entry.get("name") or dataset, "image_size": int(entry["image_size"]),
                "options": dict(entry.get("options", {}))}

    def gan_params(self, model: str, dataset: str) -> dict[str, Any]:
        """Keyword arguments of `dplase.jobs.train_gan_job` (without ``out``)."""
        return {"dataset": self.dataset_spec(dataset), "train": dict(self.config["models"][model]["train"]),
                "device": self.config["device"], "checkpoint_every": int(self.config["checkpoint_every"])}

    def predictor_params(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments of `dplase.jobs.train_predictor_job` (without ``out``)."""
        return {"dataset": self.dataset_spec(dataset), "predictor": dict(self.config["predictor"]),
                "device": self.config["device"]}

    def discover_params(self, run_id: str) -> dict[str, Any]:
        """Keyword arguments of `dplase.jobs.discover_job` (without paths)."""
        return {"run": self.run(run_id).to_dict(), "device": self.config["device"],
                "checkpoint_every": int(self.config["checkpoint_every"])}

    def evaluate_params(self, run_id: str) -> dict[str, Any]:
        """Keyword arguments of `dplase.jobs.evaluate_job` (without paths)."""
        return {"run": self.run(run_id).to_dict(), "evaluation": dict(self.config["evaluation"]),
                "device": self.config["device"]}

    def figure_options(self) -> dict[str, Any]:
        """Options of the figure functions."""
        return dict(self.config["figures"])

    def report_labels(self, run_id: str) -> dict[str, str]:
        """Labels of a run's entries in the HTML report."""
        run = self.run(run_id)
        labels = {"run": run.run_id, "dataset": run.dataset, "model": run.model, "walk": run.walk,
                  "seed": str(run.seed)}
        for key in ("k", "lambda", "zeta"):
            if key in run.params:
                labels[key] = str(run.params[key])
        return labels


def prepare(config: dict[str, Any], root: str = "results", schema_path: str | os.PathLike | None = None) -> Sweep:
    """Validate (filling defaults in place), check and expand a config: what the workflow does at parse time."""
    validate_config(config, schema_path)
    check_config(config)
    return Sweep(config, expand_runs(config), root)
