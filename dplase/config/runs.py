"""Sweep expansion: the run list a config describes, each run with a short stable id.

A config's sweeps expand to runs: models x datasets x methods x seeds x grid, minus the explicit `exclude`
entries, plus the explicit `include` runs. A run id hashes the run's parameters, so the same run has the same
id (and the same result paths) on every machine and in both launch routes (Snakemake and submitit).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: run keys that are not method options
RUN_KEYS = ("model", "dataset", "method", "seed")


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


def make_run_id(model: str, dataset: str, method: str, seed: int, params: Mapping[str, Any]) -> str:
    """Short stable id: ``{method}-{10 hex digits}`` hashing model, dataset, method, seed and params."""
    payload = {"model": model, "dataset": dataset, "method": method, "seed": int(seed), "params": params}
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

    @property
    def walk(self) -> str:
        """The walk the run's directions are fitted for (the method's default when the config names none)."""
        from dplase.config.options import method_default

        return str(self.params.get("walk", method_default(self.method, "walk") or "linear"))

    def labels(self) -> dict[str, Any]:
        """The run's identity as the columns of its result and loss rows."""
        return {"run_id": self.run_id, "model": self.model, "dataset": self.dataset, "method": self.method,
                "walk": self.walk, "seed": int(self.seed)}

    def to_row(self) -> dict[str, Any]:
        """One row of the runs table (`dplase.results.RUNS_COLUMNS`; the common options also as columns)."""
        p = self.params
        return {
            "run_id": self.run_id, "sweep": self.sweep, "model": self.model, "dataset": self.dataset,
            "method": self.method, "walk": self.walk, "k": _opt(int, p.get("k")), "layer": _opt(str, p.get("layer")),
            "lambda": _opt(float, p.get("lambda")), "zeta": _opt(float, p.get("zeta")), "seed": int(self.seed),
            "params": json.dumps(canonical(p), sort_keys=True),
        }


def _opt(kind: type, value: Any) -> Any:
    return None if value is None else kind(value)


def _matches(run: Run, pattern: Mapping[str, Any]) -> bool:
    for key, want in pattern.items():
        have = getattr(run, key) if key in RUN_KEYS else run.params.get(key, "<unset>")
        if canonical(have) != canonical(want):
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
