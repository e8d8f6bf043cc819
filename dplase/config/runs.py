"""Sweep expansion: the run list a config describes, each run with a short stable id.

A config's sweeps expand to runs: models x their generator seeds x datasets x methods x seeds x grid, minus the
explicit `exclude` entries, plus the explicit `include` runs. A replicate is (generator seed, run seed): a model
lists its generator seeds (`models.X.seeds`; default its one training or planting seed), and every run of a
sweep is repeated on each of them. A run id hashes the run's parameters, so the same run has the same
id (and the same result paths) on every machine and in both launch routes (Snakemake and submitit).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dplase.config.registries import is_planted

#: run keys that are not method options
RUN_KEYS = ("model", "dataset", "method", "seed", "model_seed")


def canonical(value: Any) -> Any:
    """JSON-stable form for hashing: 1 and 1.0 hash alike, dict order never matters."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        f = float(value)
        return int(f) if math.isfinite(f) and f.is_integer() else f
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return str(value)


def make_run_id(model: str, dataset: str, method: str, seed: int, params: Mapping[str, Any],
                model_seed: int = 0, evaluation: Mapping[str, Any] | None = None) -> str:
    """Short stable id: ``{method}-{10 hex digits}`` hashing model, its seed, dataset, method, seed, params and
    the sweep's evaluation overrides (when it has any)."""
    payload = {"model": model, "dataset": dataset, "method": method, "seed": int(seed), "params": params,
               "model_seed": int(model_seed)}
    if evaluation:
        payload["evaluation"] = evaluation
    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"))
    return f"{method}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Run:
    """One discovery + evaluation run; ``params`` are method options as the config spells them."""

    run_id: str
    model: str
    dataset: str
    method: str
    seed: int
    params: dict[str, Any]
    sweep: str = ""
    origin: str = ""  # config key the run came from (for error messages)
    model_seed: int = 0  # the generator's seed (one of the model's `seeds`)
    #: the sweep's evaluation overrides ({"metrics": [...] or None, "options": {...}}; {} for none)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def walk(self) -> str:
        """The walk the run's directions are fitted for (the method's default when the config names none)."""
        from dplase.config.options import method_default

        return str(self.params.get("walk", method_default(self.method, "walk") or "linear"))

    @property
    def space(self) -> str:
        """The latent space the run's method runs in ("z" unless the config names another)."""
        return str(self.params.get("space", "z"))

    def labels(self) -> dict[str, Any]:
        """The run's identity as the columns of its result and loss rows."""
        return {"run_id": self.run_id, "model": self.model, "dataset": self.dataset, "method": self.method,
                "walk": self.walk, "space": self.space, "seed": int(self.seed), "model_seed": int(self.model_seed)}

    def to_row(self) -> dict[str, Any]:
        """One row of the runs table (`dplase.results.RUNS_COLUMNS`; the common options also as columns)."""
        p = self.params
        return {
            "run_id": self.run_id, "sweep": self.sweep, "model": self.model, "dataset": self.dataset,
            "method": self.method, "walk": self.walk, "space": self.space,
            "k": _opt(int, p.get("k")), "layer": _opt(str, p.get("layer")),
            "lambda": _opt(float, p.get("lambda")), "zeta": _opt(float, p.get("zeta")), "seed": int(self.seed),
            "model_seed": int(self.model_seed), "params": json.dumps(canonical(p), sort_keys=True),
        }


def _opt(kind: type, value: Any) -> Any:
    return None if value is None else kind(value)


def _matches(run: Run, pattern: Mapping[str, Any]) -> bool:
    for key, want in pattern.items():
        have = getattr(run, key) if key in RUN_KEYS else run.params.get(key, "<unset>")
        if canonical(have) != canonical(want):
            return False
    return True


def model_seeds(model: Mapping[str, Any]) -> list[int]:
    """A model entry's generator seeds: its ``seeds`` list, else its one training (``train.seed``) or planting
    (``planted.seed``) seed; a model with a checkpoint has the seed 0 (its file is what it is)."""
    if model.get("seeds"):
        return [int(s) for s in model["seeds"]]
    if model.get("checkpoint"):
        return [0]
    part = "planted" if is_planted(model) else "train"
    return [int(model.get(part, {}).get("seed", 0))]


def _iter_runs(config: Mapping[str, Any]) -> Iterable[Run]:
    """Every run of every sweep and include entry, before exclusion and de-duplication."""
    for i, sweep in enumerate(config["sweeps"]):
        models = sweep.get("models") or list(config["models"])
        datasets = sweep.get("datasets") or list(config["datasets"])
        grid_keys = list(sweep["grid"])
        grid_values = [sweep["grid"][k] for k in grid_keys]
        instances = [(m, s) for m in models for s in model_seeds(config["models"].get(m, {}))]
        evaluation = _overrides(sweep.get("evaluation"))
        for (model, model_seed), dataset, method, seed, point in itertools.product(
            instances, datasets, sweep["methods"], sweep["seeds"], itertools.product(*grid_values)
        ):
            params = {**sweep["params"], **dict(zip(grid_keys, point, strict=True))}
            yield Run(make_run_id(model, dataset, method, seed, params, model_seed, evaluation), model, dataset,
                      method, int(seed), params, sweep.get("name", "sweep"), f"sweeps[{i}]", model_seed, evaluation)
    for i, extra in enumerate(config["include"]):
        params = dict(extra.get("params", {}))
        seed = int(extra.get("seed", 0))
        model = extra["model"]
        model_seed = extra.get("model_seed")
        model_seed = int(model_seed if model_seed is not None else model_seeds(config["models"].get(model, {}))[0])
        yield Run(make_run_id(model, extra["dataset"], extra["method"], seed, params, model_seed), model,
                  extra["dataset"], extra["method"], seed, params, extra.get("sweep", "include"), f"include[{i}]",
                  model_seed)


def _overrides(evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    """A sweep's evaluation overrides without the empty parts ({} when it has none)."""
    evaluation = evaluation or {}
    out: dict[str, Any] = {}
    if evaluation.get("metrics"):
        out["metrics"] = list(evaluation["metrics"])
    if evaluation.get("options"):
        out["options"] = dict(evaluation["options"])
    return out


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
