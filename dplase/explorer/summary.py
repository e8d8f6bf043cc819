"""What the explorer states about each run, read from the collected results table alone: its labels and
parameters, the evaluation protocol it was scored with (``params["eval"]``), and per walk and direction the
attribute-change row (top factors, per step too), the exact one on a planted generator, and the masked edit's
channel group.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: factors listed per direction (by attribute change over the whole walk)
TOP_FACTORS = 3
#: columns that pick the generator a run walks (``space``: only where the results table has it)
MODEL_COLUMNS = ("dataset", "model", "space", "model_seed")


def _number(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _label(value: Any) -> Any:
    """A JSON-able scalar label (pandas' NA and NaN -> None, numpy ints -> int)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def run_labels(rows: pd.DataFrame) -> dict[str, Any]:
    """Identity of one run (its first row), its parameters and its recorded evaluation protocol."""
    first = rows.iloc[0]
    params = json.loads(first["params"]) if isinstance(first["params"], str) and first["params"] else {}
    protocol = params.pop("eval", None)
    if not protocol:
        raise ValueError(f"run {first['run_id']}: its results record no evaluation protocol (params['eval'])")
    labels = {c: _label(first[c]) for c in ("run_id", "method", "variant", "train_walk", "k", "seed", "layer",
                                            "lambda", "zeta", *MODEL_COLUMNS) if c in rows.columns}
    return {**labels, "params": params, "protocol": protocol}


def _ranked(part: pd.DataFrame, prefix: str, skip: Sequence[str] = ()) -> list[tuple[str, float]]:
    """(factor, value) of the step-null rows ``prefix.<factor>``, largest first."""
    pairs = [(m[len(prefix):], _number(v)) for m, v in zip(part["metric"], part["value"], strict=True)
             if m.startswith(prefix) and m[len(prefix):] not in skip]
    return sorted(((f, v) for f, v in pairs if v is not None), key=lambda p: -p[1])


def direction_summary(per_direction: pd.DataFrame, per_step: pd.DataFrame, steps: Sequence[float]) -> dict:
    """One direction under one walk: its top factors by attribute change (with their values at each grid step,
    None at 0 and where not measured), top-factor share, exact top factors and masked group."""
    attr = _ranked(per_direction, "attr_change.")[:TOP_FACTORS]
    by_step = {(m, round(float(s), 6)): _number(v)
               for m, s, v in zip(per_step["metric"], per_step["step"], per_step["value"], strict=True)}
    value = dict(zip(per_direction["metric"], per_direction["value"], strict=True))
    out: dict[str, Any] = {
        "top": [[f, v] for f, v in attr],
        "per_step": [[by_step.get((f"attr_change.{f}", round(float(s), 6))) for s in steps] for f, _ in attr],
        "top_share": _number(value.get("attr_top_share")),
        "exact": [[f, v] for f, v in _ranked(per_direction, "attr_exact.", skip=("fidelity",))[:TOP_FACTORS]],
    }
    if "masked_group" in value and _number(value["masked_group"]) is not None:
        out["masked_group"] = [int(value["masked_group"]), _number(value.get("masked_group_share"))]
    return out


def walk_summaries(rows: pd.DataFrame, steps: Sequence[float]) -> dict[str, list[dict]]:
    """Walk -> per direction (0..k-1) `direction_summary` of one run's rows."""
    rows = rows[rows["walk"].notna() & rows["direction"].notna()]
    out: dict[str, list[dict]] = {}
    for walk, part in rows.groupby("walk", sort=False):
        k = int(part["direction"].max()) + 1
        per = {int(j): p for j, p in part.groupby("direction")}
        empty = part.iloc[0:0]
        out[str(walk)] = []
        for j in range(k):
            p = per.get(j, empty)
            out[str(walk)].append(direction_summary(p[p["step"].isna()], p[p["step"].notna()], steps))
    return out


def run_scalar(rows: pd.DataFrame, metric: str) -> float | None:
    """A run-level row (walk, direction and step null) of ``metric``, or None."""
    hit = rows[(rows["metric"] == metric) & rows["walk"].isna() & rows["direction"].isna() & rows["step"].isna()]
    return _number(hit["value"].iloc[0]) if len(hit) else None


def read_runs(metrics: pd.DataFrame, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`run_labels` plus the per-run rows (``rows``: that run's part of ``metrics``) of each run id, with the
    comparison's variant label ("dplase (norm)") and trained walk; a run without rows is an error."""
    from dplase.plots.figures import prepare_metrics

    labelled = prepare_metrics(metrics[metrics["run_id"].isin(list(run_ids))])
    by_run = {str(r): part for r, part in labelled.groupby("run_id", sort=False)}
    missing = [r for r in run_ids if r not in by_run]
    if missing:
        raise ValueError(f"run(s) {', '.join(missing)} have no rows in the results table")
    return {r: {**run_labels(by_run[r]), "rows": by_run[r]} for r in run_ids}


def masked_groups(rows: pd.DataFrame) -> dict[int, tuple[int, float]]:
    """Direction -> (masked_group, masked_group_share) the evaluation chose for the masked edit."""
    part = rows[rows["metric"].isin(["masked_group", "masked_group_share"]) & rows["direction"].notna()]
    values = {(int(j), m): v for j, m, v in zip(part["direction"], part["metric"], part["value"], strict=True)}
    return {j: (int(values[(j, "masked_group")]), float(values.get((j, "masked_group_share"), math.nan)))
            for j, m in values if m == "masked_group" and _number(values[(j, m)]) is not None}
