"""Reading workflow configs: YAML files merged like Snakemake's --configfile, checked against the JSON schema
(workflow/schemas/config.schema.yaml) with every default filled in.

Schema nodes marked ``x-dplase-registry: KIND`` name a registered thing (a method, a metric, a generator
family); their ``enum`` is filled from that registry at validation time, so the schema file holds no copy of
the names and an unknown one is reported like every registry reports it.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dplase.config.errors import ConfigError
from dplase.config.registries import registry

#: schema keyword naming the registry whose names a string property takes
REGISTRY_KEYWORD = "x-dplase-registry"


def default_schema_path() -> Path:
    """The workflow's JSON schema (workflow/schemas/config.schema.yaml at the repository root)."""
    path = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
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


def read_configs(*paths: str | os.PathLike) -> dict[str, Any]:
    """YAML config files, later ones merged onto earlier ones (not yet validated)."""
    config: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError("<root>", f"{path} must hold a mapping, got {type(data).__name__}")
        config = merge_configs(config, data)
    return config


def key_path(parts: Iterable[Any]) -> str:
    """``["sweeps", 0, "methods", 1]`` -> ``sweeps[0].methods[1]``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _fill_registry_enums(node: Any) -> Any:
    """A copy of a schema node with the enums of registry-backed properties filled in."""
    if isinstance(node, dict):
        out = {k: _fill_registry_enums(v) for k, v in node.items()}
        if REGISTRY_KEYWORD in node:
            nullable = "null" in (node.get("type") if isinstance(node.get("type"), list) else [])
            out["enum"] = [*registry(node[REGISTRY_KEYWORD]), *([None] if nullable else [])]
        return out
    if isinstance(node, list):
        return [_fill_registry_enums(v) for v in node]
    return node


@functools.lru_cache(maxsize=8)
def _schema(path: str) -> dict[str, Any]:
    return _fill_registry_enums(read_yaml(path))


def load_schema(schema_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The config schema with every registry-backed enum filled in (a fresh copy)."""
    return copy.deepcopy(_schema(str(Path(schema_path or default_schema_path()).resolve())))


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Validate ``config`` against the JSON schema in place, filling every default; returns it.

    Raises `ConfigError` naming the first offending key (for example ``models.dcgan.train.steps``).
    """
    import jsonschema

    schema = load_schema(schema_path)
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
        raise _config_error(error)
    return config


def _config_error(error) -> ConfigError:
    """A jsonschema error as a ConfigError naming the key (and the registry's names for a registry enum)."""
    key = key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if extra:
            return ConfigError(key_path([*error.absolute_path, extra[0]]),
                               f"unknown key; allowed here: {', '.join(allowed)}")
    if error.validator == "enum" and REGISTRY_KEYWORD in error.schema:
        kind = error.schema[REGISTRY_KEYWORD]
        return ConfigError(key, f"unknown {kind} '{error.instance}'; known: "
                                f"{', '.join(str(e) for e in error.schema['enum'] if e is not None)}")
    return ConfigError(key, error.message)

