"""Seeded fuzz of config/config.yaml: one mutation per config (a key's type changed, an unknown key, an empty
list, a negative count, a duplicate sweep name, a path that does not exist), each a ConfigError naming the key,
raised by `load_config` (what the Snakefile runs at parse time, before any job); and `snakemake -n` with a bad
config fails with that message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dplase.config import ConfigError, check_config, load_config, read_yaml, validate_config
from dplase.config.loading import key_path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: mutated configs per kind (the RNG picks which key; duplicate names and paths have fewer places to go)
PER_KIND = {"type": 60, "unknown_key": 30, "empty_list": 30, "negative": 30, "duplicate_sweep_name": 10,
            "missing_path": 8}
#: keys that take a file or folder that must exist
PATH_KEYS = (("datasets", "shapes", "options", "path"), ("datasets", "shapes", "options", "factors"),
             ("models", "dcgan", "checkpoint"), ("evaluation", "inception_weights"))
#: lists of config.yaml that may be empty: no traversal grids at all is a choice, not a mistake
MAY_BE_EMPTY = ("traversal.model_seeds",)

Path_ = tuple[Any, ...]


def base_config() -> dict[str, Any]:
    """config/config.yaml as plain data (a JSON round trip undoes YAML aliases, so a mutation hits one key)."""
    return json.loads(json.dumps(read_yaml(ROOT / "config/config.yaml")))


def nodes(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from nodes(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from nodes(value, (*path, i))


def _put(config: dict[str, Any], path: Path_, value: Any) -> None:
    node = config
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[path[-1]] = value


def _other_type(value: Any, rng: np.random.Generator) -> Any:
    """A value of another JSON type (never an int for a float or null: a number key takes both)."""
    pool: list[Any] = ["seven", ["a", 1], {"nested": 1}, True]
    if isinstance(value, bool):
        pool = ["yes", [True], {"on": 1}, 1]
    elif isinstance(value, int | float):
        pool = ["many", [value], {"value": value}, True]
    elif isinstance(value, str):
        pool = [7, [value], {"value": value}, False, None]
    elif isinstance(value, list):
        pool = ["list", 3, {"items": value}]
    elif isinstance(value, dict):
        pool = [["entry"], "entry", 5]
    return pool[int(rng.integers(0, len(pool)))]


def mutations(seed: int = 0) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(kind, mutated config, the key its ConfigError must name), seeded."""
    rng = np.random.default_rng(seed)
    base = base_config()
    everything = [(p, v) for p, v in nodes(base) if p]
    dicts = [p for p, v in nodes(base) if isinstance(v, dict)]
    lists = [p for p, v in everything if isinstance(v, list) and v and key_path(p) not in MAY_BE_EMPTY]
    ints = [p for p, v in everything if isinstance(v, int) and not isinstance(v, bool)]
    names = [i for i, sweep in enumerate(base["sweeps"]) if "name" in sweep]
    for kind, count in PER_KIND.items():
        for n in range(count):
            config = base_config()
            if kind == "type":
                path, value = everything[int(rng.integers(0, len(everything)))]
                _put(config, path, _other_type(value, rng))
            elif kind == "unknown_key":
                path = (*dicts[int(rng.integers(0, len(dicts)))], f"bogus_{n}")
                _put(config, path, int(rng.integers(0, 100)))
            elif kind == "empty_list":
                path = lists[int(rng.integers(0, len(lists)))]
                _put(config, path, [])
            elif kind == "negative":
                path = ints[int(rng.integers(0, len(ints)))]
                _put(config, path, -int(rng.integers(1, 1000)))
            elif kind == "duplicate_sweep_name":
                first, second = sorted(rng.choice(names, 2, replace=False).tolist())
                config["sweeps"][second]["name"] = config["sweeps"][first]["name"]
                path = ("sweeps", second, "name")
            else:
                path = PATH_KEYS[n % len(PATH_KEYS)]
                _put(config, path, f"/nonexistent/{rng.integers(0, 2**32):08x}/file.pt")
            yield kind, config, key_path(path)


def names_the_key(err: ConfigError, key: str) -> bool:
    """The error names the mutated key, or the list that holds the mutated item (a grid's values)."""
    return str(err).startswith(f"config key '{err.key}'") and (err.key == key or key.startswith(err.key + "["))


def test_every_mutated_config_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    counts: Counter = Counter()
    failures = []
    for i, (kind, config, key) in enumerate(mutations()):
        try:
            if i % 10 == 0:  # the whole route from a YAML file (most of a case's time is YAML parsing)
                path = tmp_path / f"bad{i}.yaml"
                path.write_text(yaml.safe_dump(config, allow_unicode=True))
                load_config(path)
            else:  # what load_config does after reading the file
                check_config(validate_config(config))
        except ConfigError as err:
            if names_the_key(err, key):
                counts[kind] += 1
            else:
                failures.append(f"{kind} at {key}: the error names {err.key!r}: {err}")
        except Exception as err:  # any other type reaches the user as a traceback
            failures.append(f"{kind} at {key}: {type(err).__name__}: {err}")
        else:
            failures.append(f"{kind} at {key}: accepted")
    assert failures == [], "\n".join(failures[:10])
    assert dict(counts) == PER_KIND and sum(counts.values()) >= 100


def test_the_one_list_that_may_be_empty_is_accepted(tmp_path: Path) -> None:
    config = base_config()
    _put(config, ("traversal", "model_seeds"), [])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert load_config(path)["traversal"]["model_seeds"] == []


@pytest.mark.parametrize(
    ("overlay", "key", "message"),
    [
        ({"sweeps": []}, "sweeps", "the config has no runs"),
        ({"sweeps": [{"methods": ["sefa"], "models": []}]}, "sweeps[0].models", "should be non-empty"),
        ({"sweeps": [{"name": "main", "methods": ["sefa"]}, {"methods": ["random"]},
                     {"name": "main", "methods": ["random"]}]}, "sweeps[2].name",
         "sweep name 'main' is already used by sweeps[0]"),
        ({"sweeps": [{"methods": ["ganspace"], "params": {"n_regression": "many"}}]},
         "sweeps[0].params.n_regression", "expected an integer, got 'many'"),
        ({"sweeps": [{"methods": ["dplase"], "grid": {"lr": [0.1, "1e-3"]}}]}, "sweeps[0].grid.lr[1]",
         "YAML reads a number like 1e-3 as a string"),
        ({"sweeps": [{"methods": ["dplase"], "grid": {"walk": [["norm"]]}}]}, "sweeps[0].grid.walk",
         "unknown walk"),
        ({"evaluation": {"options": {"rca_steps": -1}}}, "evaluation.options.rca_steps", "must be >= 0"),
        ({"evaluation": {"options": {"dci_importance": ["lasso"]}}}, "evaluation.options.dci_importance",
         "expected a string"),
        ({"models": {"dcgan": {"train": {"betas": [0.5]}}}}, "models.dcgan.train.betas", "expected a list of 2"),
        ({"models": {"dcgan": {"train": {"ema_decay": 1.5}}}}, "models.dcgan.train.ema_decay",
         "invalid GAN config value"),
        ({"predictor": {"options": {"batch_size": "big"}}}, "predictor.options.batch_size", "expected an integer"),
    ],
)
def test_values_passed_to_the_code_are_checked(tmp_path: Path, overlay: dict, key: str, message: str) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "config/config.yaml", path)
    assert info.value.key == key and message in str(info.value), str(info.value)


def test_snakemake_dry_run_rejects_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    workdir = tmp_path / "wf"
    workdir.mkdir()
    shutil.copy(ROOT / "Snakefile", workdir / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, workdir / folder, ignore=shutil.ignore_patterns("__pycache__"))
    _, config, key = next(m for m in mutations(seed=1) if m[0] == "negative")
    (workdir / "config/bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as expected:  # the message the workflow must show
        load_config(workdir / "config/bad.yaml")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", "config/bad.yaml"],
                            cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    output = result.stdout + result.stderr  # Snakemake logs a dry run's errors to stdout
    assert result.returncode != 0
    assert f"config key '{key}'" in output and str(expected.value) in output, output
    assert not (workdir / "results").exists()  # no job ran, none was even planned
