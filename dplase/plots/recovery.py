"""Recovery of planted directions: how closely each method finds the known directions of planted generators
(`dplase.generators.planted`), from the ``recovery`` metric rows of the results table alone.

A *replicate* is one (model_seed, seed) pair: a generator seed and a discovery seed. Runs of one variant that
share a replicate (a lambda/zeta grid) are averaged first, so every replicate counts once; intervals are 95%
Student-t intervals over replicates (none with a single replicate: a CI over one run would be invented).
Variants are those of `dplase.plots.figures.prepare_metrics`: the method, plus its training walk where a
method was trained with several.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dplase.plots.figures import _empty, _style, prepare_metrics
from dplase.plots.replicates import REPLICATE, t_interval

#: the recovery metric's rows: the mean matched |cos|, per factor ``recovery.<factor>``, and per direction
RECOVERY, LEAKAGE, FACTOR_PREFIX = "recovery", "null_leakage", "recovery."


def _recovery_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The recovery, per-factor and null-leakage rows, with ``train_walk``/``variant`` and a model_seed column."""
    names = metrics["metric"].astype(str)
    data = metrics[(names == RECOVERY) | names.str.startswith(FACTOR_PREFIX) | (names == LEAKAGE)]
    data = prepare_metrics(data)
    if "model_seed" not in data.columns:
        data["model_seed"] = pd.NA
    return data


def replicate_values(metrics: pd.DataFrame) -> pd.DataFrame:
    """One value per (model, variant, replicate, metric): directions averaged within a run (null_leakage),
    then runs averaged within a replicate."""
    data = _recovery_rows(metrics)
    keys = ["model", "method", "train_walk", "variant", *REPLICATE, "metric"]
    per_run = data.groupby([*keys, "run_id"], dropna=False, sort=False)["value"].mean()
    return per_run.groupby(level=keys, dropna=False, sort=False).mean().reset_index()



def recovery_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per model and variant: n_replicates, the mean matched |cos| over replicates with its 95% t-interval
    (ci_low, ci_high; NaN for one replicate), the mean null leakage and each factor's mean matched |cos|
    (columns ``recovery.<factor>``, the planted order). Rows: per model, the oracle first, then by mean."""
    reps = replicate_values(metrics)
    factors = list(dict.fromkeys(m for m in reps["metric"] if m.startswith(FACTOR_PREFIX)))
    columns = ["model", "method", "walk", "variant", "n_replicates", "mean", "ci_low", "ci_high", LEAKAGE, *factors]
    rows = []
    for (model, variant), part in reps.groupby(["model", "variant"], sort=True, dropna=False):
        main = part.loc[part["metric"] == RECOVERY, "value"].to_numpy(dtype=float)
        main = main[np.isfinite(main)]
        if not len(main):
            continue
        low, high = t_interval(main)
        means = part.groupby("metric")["value"].mean()
        rows.append({"model": model, "method": part["method"].iloc[0], "walk": part["train_walk"].iloc[0],
                     "variant": variant, "n_replicates": len(main), "mean": float(main.mean()), "ci_low": low,
                     "ci_high": high, **{m: float(means.get(m, math.nan)) for m in (LEAKAGE, *factors)}})
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    # the oracle is the upper bound every other bar is read against: it leads its model's rows
    table = table.assign(_rank=(table["method"] != "oracle").astype(int))
    table = table.sort_values(["model", "_rank", "mean", "variant"], ascending=[True, True, False, True])
    return table.drop(columns="_rank").reset_index(drop=True)


def _interval_text(row: pd.Series) -> str:
    if row["n_replicates"] < 2 or not np.isfinite(row["ci_low"]):
        return f"{row['mean']:.3f} (n={row['n_replicates']})"
    return f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] (n={row['n_replicates']})"


def recovery_markdown(metrics: pd.DataFrame) -> str:
    """`recovery_table` as a GitHub-markdown table (for the README); one line saying so when it is empty."""
    table = recovery_table(metrics)
    if table.empty:
        return "_no recovery rows (no planted generator in this study)_\n"
    factors = [c for c in table.columns if c.startswith(FACTOR_PREFIX)]
    header = ["model", "method", "recovery (95% CI)", *[f.removeprefix(FACTOR_PREFIX) for f in factors],
              "null leakage"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for _, row in table.iterrows():
        cells = [str(row["model"]), str(row["variant"]), _interval_text(row),
                 *[f"{row[f]:.3f}" for f in factors], f"{row[LEAKAGE]:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def model_z_dims(metrics: pd.DataFrame) -> dict[str, int]:
    """Each model's latent size where the table records it (the recovery metric's ``latent_dim`` row, a
    ``z_dim`` column or a ``z_dim`` run param)."""
    out: dict[str, int] = {}
    dims = metrics[metrics["metric"] == "latent_dim"].groupby("model")["value"].first()
    for model, part in metrics[metrics["metric"] == RECOVERY].groupby("model", sort=True):
        values = [int(dims[model])] if model in dims.index else []
        values += [int(v) for v in part["z_dim"].dropna()] if "z_dim" in part.columns else []
        values += [v for v in map(_z_dim_param, part["params"].dropna().unique()) if v is not None]
        if values:
            out[str(model)] = values[0]
    return out


def _z_dim_param(params: str) -> int | None:
    try:
        value = json.loads(params).get("z_dim")
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def recovery(metrics: pd.DataFrame, z_dim: int | Mapping[str, int] | None = None) -> Figure:
    """Per model (one row of panels): mean matched |cos| per variant (bars, 95% t-CI over replicates), the
    matched |cos| per planted factor (heatmap), and the mean null leakage; with the oracle's 1 and, where the
    latent size is known (``z_dim``, else from the table), the E|cos| of one random pair as references."""
    sns = _style()
    table = recovery_table(metrics)
    title = "Recovery of planted directions (mean matched |cos|, Hungarian matching)"
    if table.empty:
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        fig.suptitle(title)
        return _empty(fig, fig.subplots(), "no recovery rows in the results table (no planted generator in this "
                                           "study, or metric 'recovery' not evaluated)")
    models = list(dict.fromkeys(table["model"]))
    counts = [int((table["model"] == m).sum()) for m in models]  # bars per model: its row's height
    height = sum(max(2.4, 0.42 * n + 1.4) for n in counts)
    fig = Figure(figsize=(16, max(height + 1.0, 4.5)), layout="constrained")
    axes = fig.subplots(len(models), 3, squeeze=False, width_ratios=[3, 3, 1.4], height_ratios=counts)
    fig.suptitle(title)
    dims = dict(z_dim) if isinstance(z_dim, Mapping) else ({str(m): z_dim for m in models} if z_dim else {})
    dims = {**model_z_dims(metrics), **dims}
    for row_axes, model in zip(axes, models, strict=True):
        _draw_model(sns, row_axes, table[table["model"] == model].reset_index(drop=True), str(model),
                    dims.get(str(model)))
    # one legend for every row's reference lines, below the panels so it hides no bar
    handles = {h.get_label(): h for ax in axes[:, 0::2].ravel() for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8,
               frameon=False)
    return fig


def _draw_model(sns, axes, part: pd.DataFrame, model: str, z_dim: int | None) -> None:
    """One model's row: recovery bars, the factor heatmap, the null-leakage bars (same row order in all)."""
    from dplase.metrics.recovery import expected_abs_cosine

    bars, heat, leak = axes
    y = np.arange(len(part))
    labels = [f"{v} (n={n})" for v, n in zip(part["variant"], part["n_replicates"], strict=True)]
    has_ci = part["ci_low"].notna().to_numpy()
    colours = ["#4c4c4c" if m == "oracle" else "#4c72b0" for m in part["method"]]
    bars.barh(y, part["mean"], color=colours, height=0.7)
    err = np.vstack([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]])[:, has_ci]
    if has_ci.any():  # no whisker at all for a single replicate
        bars.errorbar(part["mean"][has_ci], y[has_ci], xerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
    bars.axvline(1.0, color="black", lw=1, ls="-", label="oracle / exact recovery (1)")
    if z_dim:
        bars.axvline(expected_abs_cosine(z_dim), color="#c44e52", lw=1.2, ls="--",
                     label=f"E|cos| of one random pair (before matching, d={z_dim})")
    else:  # say why the random reference is missing rather than leave the reader to wonder
        bars.text(0.99, 0.02, "no random reference: z_dim not in the table", transform=bars.transAxes,
                  ha="right", va="bottom", fontsize=7, color="#c44e52")
    bars.set_yticks(y, labels, fontsize=8)
    bars.set_ylim(len(part) - 0.5, -0.5)  # first row on top
    bars.set(xlim=(0, 1.05), xlabel="mean matched |cos| (bars: mean over replicates; whiskers: 95% t-CI)",
             title=f"model {model}")
    factors = [c for c in part.columns if c.startswith(FACTOR_PREFIX) and part[c].notna().any()]
    matrix = part.set_index("variant")[factors].rename(columns=lambda c: c.removeprefix(FACTOR_PREFIX))
    sns.heatmap(matrix, ax=heat, cmap="viridis", vmin=0, vmax=1, annot=True, fmt=".2f", annot_kws={"fontsize": 7},
                cbar_kws={"label": "matched |cos|"}, yticklabels=False)
    heat.set(title="matched |cos| per planted factor (mean over replicates)", xlabel="planted factor", ylabel="")
    heat.tick_params(axis="x", labelrotation=30)
    leak.barh(y, part[LEAKAGE], color=colours, height=0.7)
    if z_dim and z_dim > len(factors):
        leak.axvline(math.sqrt((z_dim - len(factors)) / z_dim), color="#c44e52", lw=1.2, ls="--",
                     label=f"random directions: √E[null leakage²] = √((d - F) / d), F={len(factors)}")
    leak.set_yticks(y, [])
    leak.set_ylim(len(part) - 0.5, -0.5)
    leak.set(xlim=(0, 1.05), xlabel="mean null leakage", title="off the planted span")
