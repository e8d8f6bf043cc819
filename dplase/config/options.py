"""The option names each configurable function takes, read from the functions' own config dataclasses and
signatures (so a config is checked against the code, never against a copy of its field names)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

#: GanConfig fields the workflow sets itself (from the dataset entry and the top-level keys)
GAN_FIELDS_FROM_WORKFLOW = ("dataset", "image_size", "dataset_options", "checkpoint_every", "family")
#: EvalConfig fields the evaluation entry sets by its own keys, or the job itself
EVAL_FIELDS_SET_ELSEWHERE = ("metrics", "n_samples", "seed", "extractor", "inception_weights", "progress")
#: train_predictor arguments the predictor entry sets by its own keys, or the job itself
PREDICTOR_ARGS_SET_ELSEWHERE = ("dataset", "steps", "seed", "device", "checkpoint_path", "progress")


def gan_options() -> set[str]:
    """`models.*.train` keys: GanConfig fields the config may set."""
    from dplase.training.gan import GanConfig

    return {f.name for f in dataclasses.fields(GanConfig)} - set(GAN_FIELDS_FROM_WORKFLOW)


def eval_options() -> set[str]:
    """`evaluation.options` keys: the further EvalConfig fields."""
    from dplase.metrics.evaluate import EvalConfig

    return {f.name for f in dataclasses.fields(EvalConfig)} - set(EVAL_FIELDS_SET_ELSEWHERE)


def predictor_options() -> set[str]:
    """`predictor.options` keys: the further train_predictor arguments."""
    from dplase.metrics.predictor import train_predictor

    return set(inspect.signature(train_predictor).parameters) - set(PREDICTOR_ARGS_SET_ELSEWHERE)


@functools.lru_cache(maxsize=64)
def method_fields(method: str) -> dict[str, dataclasses.Field]:
    """Option name (config spelling, e.g. ``lambda``) -> dataclass field of the method's config."""
    from dplase.methods import get_method, option_fields

    cls = get_method(method).config_cls
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    return {option: by_name[name] for option, name in option_fields(cls).items()}


def method_accepts(method: str, option: str) -> bool:
    """Whether a run option (config spelling or field name) is an option of the method."""
    fields = method_fields(method)
    return option in fields or option in {f.name for f in fields.values()}


@functools.lru_cache(maxsize=256)
def method_default(method: str, option: str) -> Any:
    """The default of a method option (config spelling), or None when it has none."""
    field = method_fields(method).get(option)
    return None if field is None or field.default is dataclasses.MISSING else field.default

