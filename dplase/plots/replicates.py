"""Replicates and their intervals, shared by the figures, the recovery table and the method comparison.

A replicate is one (generator seed, run seed) pair (`dplase.seeds`); every interval the project draws is a
Student-t interval over replicates, never over directions or a hyperparameter grid.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
#: run-level labels of a replicate (model_seed may be absent from older tables: then all null)
REPLICATE = ["model_seed", "seed"]


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student-t interval of the mean over ``values`` (NaN bounds for fewer than two finite values)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def replicate_intervals(reps: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys`` in a frame of one ``value`` per replicate: n_replicates, mean, sd and the 95%
    Student-t interval (ci_low, ci_high; sd and the bounds NaN for a single replicate)."""
    rows = []
    for key, part in reps.groupby(keys, dropna=False, sort=True):
        values = part["value"].to_numpy(dtype=float)
        low, high = t_interval(values)
        rows.append({**dict(zip(keys, key, strict=True)), "n_replicates": len(values),
                     "mean": float(values.mean()),
                     "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*keys, "n_replicates", "mean", "sd", "ci_low", "ci_high"])
