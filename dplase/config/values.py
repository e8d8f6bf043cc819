"""Values of the options a config passes through to the code (method params and grids, `models.*.train`,
`evaluation.options`, `predictor.options`): checked against the annotations of the dataclass field or argument
they set, so a wrong type or a negative count stops the config at parse time, naming the key, instead of
failing a job hours later. The schema cannot do this: those mappings take whatever the code accepts."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from dplase.config.errors import ConfigError


def matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a type hint (lists stand for tuples, ints for floats; bool is not a number).

    Hints this does not know (a class such as torch.device) accept anything: the function decides."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[float, float]
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def describe(hint: Any) -> str:
    """A hint as a config author reads it ("an integer or null")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0])}s" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def check_value(value: Any, hint: Any, key: str) -> None:
    """A `ConfigError` naming ``key`` when ``value`` does not fit ``hint``, or is a negative integer (every
    integer option of the code is a count, a size or a seed)."""
    if not matches(value, hint):
        hint_text = describe(hint)
        tip = ""
        if isinstance(value, str) and "a number" in hint_text:
            try:
                float(value)
                tip = " (YAML reads a number like 1e-3 as a string: write 1.0e-3)"
            except ValueError:
                pass
        raise ConfigError(key, f"expected {hint_text}, got {value!r} ({type(value).__name__}){tip}")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ConfigError(key, f"must be >= 0 (a count, size or seed), got {value}")


def check_by_building(build: Callable[..., Any], name: str, value: Any, key: str) -> None:
    """Build the config object with this one option set, so its own validation (ranges, known names) names
    the key that broke it."""
    try:
        build(**{name: value})
    except (TypeError, ValueError) as err:
        raise ConfigError(key, str(err)) from None


@functools.lru_cache(maxsize=64)
def method_hints(method: str) -> dict[str, Any]:
    """Option name (config spelling and field name) -> type hint of the method config's field."""
    from dplase.config.options import method_fields
    from dplase.methods import get_method

    hints = typing.get_type_hints(get_method(method).config_cls)
    out = {f.name: hints[f.name] for f in method_fields(method).values()}
    out.update({option: hints[f.name] for option, f in method_fields(method).items()})
    return out


@functools.lru_cache(maxsize=8)
def dataclass_hints(target: str) -> dict[str, Any]:
    """Field -> hint of ``"gan"`` (GanConfig) or ``"eval"`` (EvalConfig); argument -> hint of
    ``"predictor"`` (train_predictor)."""
    if target == "gan":
        from dplase.training.gan import GanConfig as cls
    elif target == "eval":
        from dplase.metrics.context import EvalConfig as cls
    else:
        from dplase.metrics.predictor import train_predictor

        return {k: v for k, v in typing.get_type_hints(train_predictor).items() if k != "return"}
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}


def check_method_option(method: str, option: str, value: Any, key: str) -> None:
    """One method option's value: its type, its sign, and the method config's own validation."""
    from dplase.methods import make_config

    hint = method_hints(method).get(option)
    if hint is None:  # not an option of this method: _check_method_accepts reports it
        return
    check_value(value, hint, key)
    check_by_building(functools.partial(make_config, method), option, value, key)


def check_target_options(options: Mapping[str, Any], key: str, target: str) -> None:
    """Values of `models.*.train` (target "gan"), `evaluation.options` ("eval") or `predictor.options`
    ("predictor"); unknown names are reported elsewhere."""
    hints = dataclass_hints(target) if options else {}
    for name, value in options.items():
        if name in hints:
            check_value(value, hints[name], f"{key}.{name}")
            if target != "predictor":  # train_predictor has no config object to build cheaply
                check_by_building(_builder(target), name, value, f"{key}.{name}")


def _builder(target: str) -> Callable[..., Any]:
    if target == "gan":
        from dplase.training.gan import GanConfig

        return GanConfig
    from dplase.metrics.context import EvalConfig

    return EvalConfig

