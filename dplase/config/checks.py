"""What the JSON schema cannot check: names defined elsewhere in the config or in a registry, options of the
functions a config drives, files that must exist, and the combinations the runs make (K <= z_dim, the learned
walk only where a method fits a density correction). Every failure is a `ConfigError` naming the key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dplase.config import options as opts
from dplase.config.errors import ConfigError
from dplase.config.registries import is_imported, is_planted, registry
from dplase.config.runs import Run, expand_runs
from dplase.config.values import check_method_option, check_target_options

#: the schema's default sweep name: sweeps left unnamed may share it (their identical runs collapse to one)
UNNAMED_SWEEP = "sweep"


def check_config(config: Mapping[str, Any]) -> None:
    """Reject a config that validates but cannot run. Expects defaults filled (`validate_config`)."""
    _check_datasets(config["datasets"])
    _check_models(config["models"])
    weights = config["evaluation"].get("inception_weights")
    if weights and not Path(weights).is_file():
        raise ConfigError("evaluation.inception_weights", f"file {weights} does not exist")
    _check_options(config["evaluation"]["options"], "evaluation.options", opts.eval_options)
    _check_eval_walks(config["evaluation"]["options"], "evaluation.options")
    check_target_options(config["evaluation"]["options"], "evaluation.options", "eval")
    _check_options(config["predictor"]["options"], "predictor.options", opts.predictor_options)
    check_target_options(config["predictor"]["options"], "predictor.options", "predictor")
    names: dict[str, int] = {}
    for i, sweep in enumerate(config["sweeps"]):
        where = f"sweeps[{i}]"
        # the runs table and the report tell sweeps apart by name; unnamed sweeps share the schema's default
        if sweep["name"] in names and sweep["name"] != UNNAMED_SWEEP:
            raise ConfigError(f"{where}.name", f"sweep name '{sweep['name']}' is already used by "
                                               f"sweeps[{names[sweep['name']]}]; give each sweep its own name")
        names[sweep["name"]] = i
        _check_names(sweep.get("models"), config["models"], f"{where}.models", "model")
        _check_names(sweep.get("datasets"), config["datasets"], f"{where}.datasets", "dataset")
        _check_options(sweep["evaluation"].get("options", {}), f"{where}.evaluation.options", opts.eval_options)
        _check_eval_walks(sweep["evaluation"].get("options", {}), f"{where}.evaluation.options")
        check_target_options(sweep["evaluation"].get("options", {}), f"{where}.evaluation.options", "eval")
        for part in ("params", "grid"):
            for option, value in sweep[part].items():
                for j, v in enumerate(value if part == "grid" else [value]):
                    item = f"{where}.{part}.{option}" + (f"[{j}]" if part == "grid" else "")
                    _check_option(option, v, f"{where}.{part}.{option}")
                    for method in sweep["methods"]:
                        check_method_option(method, option, v, item)
            for method in sweep["methods"]:
                _check_method_accepts(method, sweep[part], f"{where}.{part}")
    for i, extra in enumerate(config["include"]):
        where = f"include[{i}]"
        _check_names([extra["model"]], config["models"], f"{where}.model", "model")
        _check_names([extra["dataset"]], config["datasets"], f"{where}.dataset", "dataset")
        for option, value in extra["params"].items():
            _check_option(option, value, f"{where}.params.{option}")
            check_method_option(extra["method"], option, value, f"{where}.params.{option}")
        _check_method_accepts(extra["method"], extra["params"], f"{where}.params")
    _check_runs(config)


def _check_datasets(datasets: Mapping[str, Any]) -> None:
    known = registry("dataset")
    for ds_id, ds in datasets.items():
        name = ds.get("name") or ds_id
        if name not in known:
            key = f"datasets.{ds_id}.name" if ds.get("name") else f"datasets.{ds_id}"
            raise ConfigError(key, f"unknown dataset '{name}'; known: {', '.join(known)}")
        for option in ("path", "factors"):
            value = ds.get("options", {}).get(option)
            if isinstance(value, str) and not Path(value).exists():
                raise ConfigError(f"datasets.{ds_id}.options.{option}", f"{value} does not exist")


def _check_models(models: Mapping[str, Any]) -> None:
    families = registry("generator family")
    made = (*families.where(trainable=True), *families.where(planted=True))
    for model_id, model in models.items():
        if model.get("checkpoint") and not Path(model["checkpoint"]).exists():
            raise ConfigError(f"models.{model_id}.checkpoint", f"file {model['checkpoint']} does not exist")
        if is_imported(model):
            _check_import(model_id, model)
        if not model.get("checkpoint") and model["family"] not in made:
            raise ConfigError(f"models.{model_id}.checkpoint",
                              f"family '{model['family']}' is not trained or planted by the workflow: give its "
                              f"checkpoint (families the workflow makes: {', '.join(made)})")
        _check_options(model["train"], f"models.{model_id}.train", opts.gan_options, "not a GAN training option")
        check_target_options(model["train"], f"models.{model_id}.train", "gan")
        if is_planted(model) and not model.get("checkpoint"):
            _check_planted(model_id, model["planted"])


def _check_import(model_id: str, model: Mapping[str, Any]) -> None:
    """A foreign checkpoint's format must be known and import into the model's family."""
    formats = registry("checkpoint format")
    fmt = model["format"]
    if fmt not in formats:
        raise ConfigError(f"models.{model_id}.format", formats.unknown_message(fmt))
    target = formats[fmt].get("family")
    if target is not None and model["family"] != target:
        raise ConfigError(f"models.{model_id}.family", f"format '{fmt}' imports into family '{target}', not "
                          f"'{model['family']}'")


def _check_planted(model_id: str, planted: Mapping[str, Any]) -> None:
    """A planted generator's options (unknown factors, z_dim below the factor count, gains that are not
    positive, an unknown level), each a ConfigError naming the key."""
    from dplase.generators.planted import DEFAULT_GAINS, PlantedConfigError, check_planted_config

    factors = list(planted["factors"])
    gains = planted.get("gains")
    gains = list(gains) if gains is not None else list(DEFAULT_GAINS[: len(factors)])
    try:
        check_planted_config(int(planted["z_dim"]), factors, gains, planted["level"])
    except PlantedConfigError as err:
        raise ConfigError(f"models.{model_id}.planted.{err.option}", str(err)) from None


#: options a `planted` dataset shares with a planted model's `planted` entry, with the dataset's defaults
PLANTED_DATASET_OPTIONS = {"z_dim": 16, "gains": None, "prior": "gaussian", "channels": 1}


def planted_dataset_mismatch(model: Mapping[str, Any], dataset: Mapping[str, Any]) -> str | None:
    """Why a planted model and a `planted` dataset describe different image distributions (None if they
    agree): the dataset's images stand in for real ones (FID reference, predictor, disentanglement codes).
    Level and seed are free: under an isotropic prior the factors' distribution does not depend on them."""
    options = dataset.get("options", {})
    for option, default in PLANTED_DATASET_OPTIONS.items():
        have, want = options.get(option, default), model["planted"].get(option, default)
        if have != want:
            return f"its {option} is {have!r}, the model's {want!r}"
    return None


def _check_options(options: Mapping[str, Any], key: str, known: Callable[[], set[str]],
                   message: str = "unknown option") -> None:
    """Options must be fields of the function's config (``known`` is called only when there are options, so
    the module behind it is imported only then)."""
    names = known() if options else set()
    for option in options:
        if option not in names:
            raise ConfigError(f"{key}.{option}", f"{message}; known: {', '.join(sorted(names))}")


def _check_eval_walks(options: Mapping[str, Any], key: str) -> None:
    """The evaluation's ``walks`` (when given) must be registered evaluation walks (latent walks, masked)."""
    walks = registry("evaluation walk")
    for j, walk in enumerate(options.get("walks") or []):
        if walk not in walks:
            raise ConfigError(f"{key}.walks[{j}]", f"unknown walk '{walk}'; choose one of {', '.join(walks)}")


def _check_names(names: Sequence[str] | None, defined: Mapping[str, Any], key: str, what: str) -> None:
    """Every name must be defined; the key gets an index when ``names`` is a config list."""
    indexed = len(names or []) != 1 or not key.endswith(f".{what}")
    for j, name in enumerate(names or []):
        if name not in defined:
            raise ConfigError(f"{key}[{j}]" if indexed else key,
                              f"unknown {what} '{name}'; defined {what}s: {', '.join(defined)}")


def _check_option(option: str, value: Any, key: str) -> None:
    if option.endswith("steps") and isinstance(value, int | float) and value < 0:
        raise ConfigError(key, f"steps must be >= 0, got {value}")
    walks = registry("walk")
    if option == "walk" and (not isinstance(value, str) or value not in walks):
        raise ConfigError(key, f"unknown walk '{value}'; choose one of {', '.join(walks)}")
    if option == "k" and (not isinstance(value, int) or value < 1):
        raise ConfigError(key, f"K must be a positive integer, got {value!r}")


def _check_method_accepts(method: str, options: Iterable[str], key: str) -> None:
    for option in options:
        if not opts.method_accepts(method, option):
            accepted = ", ".join(sorted(opts.method_fields(method)))
            raise ConfigError(f"{key}.{option}", f"method '{method}' has no option '{option}'; its options: {accepted}")


def model_family(model: Mapping[str, Any]) -> str | None:
    """The generator family of a model entry (from its checkpoint when it has one; None if unreadable)."""
    if is_imported(model):
        return model.get("family", "dcgan")
    if model.get("checkpoint"):
        try:
            from dplase.generators.registry import generator_meta

            return generator_meta(model["checkpoint"]).get("family")
        except Exception:  # an unreadable checkpoint is reported when the job loads it
            return None
    return model.get("family", "dcgan")


def model_z_dim(model: Mapping[str, Any], space: str = "z") -> int | None:
    """The latent dimension of a model entry in latent space ``space`` (from its checkpoint when it has one;
    w: a StyleGAN2's w_dim, by default its z_dim)."""
    key = "w_dim" if space == "w" else "z_dim"
    if is_imported(model):  # known once imported
        return None
    if model.get("checkpoint"):
        try:
            from dplase.generators.registry import generator_meta

            return int(generator_meta(model["checkpoint"])["arch"][key])
        except Exception:  # an unreadable checkpoint is reported when the job loads it
            return None
    if is_planted(model):
        return int(model.get("planted", {}).get("z_dim", 16))
    train = model.get("train", {})
    z_dim = int(train.get("z_dim", 16))
    return int((train.get("arch") or {}).get("w_dim", z_dim)) if space == "w" else z_dim


def _check_runs(config: Mapping[str, Any]) -> None:
    """Checks that depend on the combination a run makes (after `exclude`): K <= z_dim of its model, and a
    learned walk only for methods that fit a density correction."""
    families = {m: model_family(spec) for m, spec in config["models"].items()}
    methods = registry("method")
    correcting = methods.where(fits_correction=True)
    planted = registry("generator family").where(planted=True)
    seen: set[tuple[str, str, str, Any, str]] = set()
    runs = expand_runs(config)
    if not runs:  # a study that would silently do nothing is a mistake
        key = "exclude" if config["sweeps"] and config["exclude"] else "sweeps"
        raise ConfigError(key, "the config has no runs (no sweeps or include entries, or exclude drops them all)")
    for run in runs:
        marker = (run.model, run.dataset, run.method, run.params.get("k"), run.walk, run.space)
        if marker in seen:
            continue
        seen.add(marker)
        if registry("walk")[run.walk].get("needs_correction") and run.method not in correcting:
            raise ConfigError(_param_key(config, run, "walk"),
                              f"walk '{run.walk}' needs a learned density correction, which only "
                              f"{', '.join(correcting)} fits, not {run.method} (add an exclude entry)")
        if methods[run.method].get("needs_planted") and families[run.model] not in (*planted, None):
            raise ConfigError(_method_key(config, run),
                              f"method '{run.method}' needs a generator with planted directions (family "
                              f"{', '.join(planted)}); model '{run.model}' is family '{families[run.model]}'")
        dataset = config["datasets"][run.dataset]
        if families[run.model] in planted and (dataset.get("name") or run.dataset) == "planted":
            why = planted_dataset_mismatch(config["models"][run.model], dataset)
            if why:
                raise ConfigError(f"datasets.{run.dataset}.options", f"planted dataset '{run.dataset}' does not "
                                  f"match planted model '{run.model}': {why}")
        spaces = ("z",) if families[run.model] is None else registry("generator family")[
            families[run.model]].get("spaces", ("z",))
        if families[run.model] is not None and run.space not in spaces:
            raise ConfigError(_param_key(config, run, "space"), f"model '{run.model}' (family "
                              f"{families[run.model]}) has no latent space '{run.space}'; its spaces: "
                              f"{', '.join(spaces)}")
        k = run.params.get("k")
        k = k if k is not None else opts.method_default(run.method, "k")
        z_dim = model_z_dim(config["models"][run.model], run.space)
        if z_dim is not None and isinstance(k, int) and k > z_dim:
            raise ConfigError(_param_key(config, run, "k"), f"K={k} exceeds {run.space}_dim={z_dim} of model "
                              f"'{run.model}' (method {run.method}"
                              f"{'' if 'k' in run.params else ', its default K'})")


def _method_key(config: Mapping[str, Any], run: Run) -> str:
    """The config key that names a run's method."""
    if run.origin.startswith("include"):
        return f"{run.origin}.method"
    methods = config["sweeps"][int(run.origin[len("sweeps["):-1])]["methods"]
    return f"{run.origin}.methods[{methods.index(run.method)}]"


def _param_key(config: Mapping[str, Any], run: Run, option: str) -> str:
    """The config key that sets (or should set) a run's option."""
    if run.origin.startswith("include"):
        return f"{run.origin}.params.{option}"
    index = int(run.origin[len("sweeps["):-1])
    return f"{run.origin}.{'grid' if option in config['sweeps'][index]['grid'] else 'params'}.{option}"
