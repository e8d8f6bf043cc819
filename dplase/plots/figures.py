"""The study's figures, drawn from the collected Parquet tables alone (seaborn; PNG and PDF).

Every function takes the long-format results frame (`dplase.results` schema) or the loss table
(`dplase.results.LOSS_COLUMNS`) and returns a matplotlib Figure; `draw_figure` reads a table, draws one figure
by name and writes it as PNG and PDF. The names, and the table each figure reads, are registered in
`dplase.plots.FIGURES` (re-exported here). No figure needs a model or a GPU, so all of them can be redrawn after
the fact. Traversal grids need the generator and are drawn by `dplase traverse`.

Runs are grouped into *variants*: the method, plus the walk it was trained with where a method was trained
with several (DP-LaSE linear / norm / learned). Bands and error bars are 95% intervals over everything a
variant pools: seeds, directions and any lambda/zeta grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dplase.plots import FIGURES
from dplase.plots.replicates import REPLICATE, replicate_intervals

#: how the walk a method was trained with is named in the ablation (masked, an evaluation's feature-space edit,
#: is never a training walk; labelled for completeness)
WALK_LABELS = {"linear": "linear\n(no density term)", "norm": "norm\n(analytic)", "learned": "learned\n(density net)",
               "masked": "masked\n(channel subspace)"}
DEFAULT_ABLATION_METRICS = ("fid", "abs_logp_drift", "outside_share", "attr_top_share", "mig", "rca")
#: axis labels with units
METRIC_LABELS = {
    "fid": "FID (lower = more realistic)",
    "abs_logp_drift": "|Δ log p0| (nats)",
    "logp_drift": "Δ log p0 (nats)",
    "outside_share": "share outside central 98% of ||z||",
    "norm_ratio": "||z_walk|| / ||z0||",
    "attr_top_share": "top-factor share of attribute change",
    "mig": "MIG",
    "modularity": "modularity",
    "rca": "RCA (accuracy)",
}


# --------------------------------------------------------------------------------------------------- tables


def prepare_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``train_walk`` (the walk a run was trained with, from its params) and ``variant`` columns."""
    frame = frame.copy()
    if "space" in frame:  # a model walked in another latent space than z is another model to compare within
        space = frame["space"].astype(object).where(frame["space"].notna(), "z")
        frame["model"] = [m if s == "z" else f"{m} ({s})" for m, s in zip(frame["model"], space, strict=True)]
    frame["train_walk"] = [_param(p, "walk", "linear") for p in frame["params"]]
    walks_per_method = frame.groupby("method")["train_walk"].nunique()
    several = set(walks_per_method[walks_per_method > 1].index)
    frame["variant"] = [f"{m} ({w})" if m in several else m for m, w in zip(frame["method"], frame["train_walk"],
                                                                             strict=True)]
    return frame


def _param(params: Any, key: str, default: Any) -> Any:
    if not isinstance(params, str) or not params:
        return default
    try:
        value = json.loads(params).get(key, default)
    except (json.JSONDecodeError, AttributeError):
        return default
    return default if value is None else value


def _empty(fig: Figure, ax, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()
    return fig


def _style():
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    return sns


def _legend_outside(ax) -> None:
    """Move the axes' legend to its right, outside the plot, so it never hides data."""
    import seaborn as sns

    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)


def _legend(ax, axes) -> str | bool:
    """Only the last panel of a row draws the legend."""
    return "auto" if ax is axes[-1] else False


# -------------------------------------------------------------------------------------------------- figures


def fid_vs_step(metrics: pd.DataFrame) -> Figure:
    """FID of walked images vs |step|, one line per variant (colour) and evaluation walk (dashes)."""
    sns = _style()
    data = prepare_metrics(metrics)
    data = data[(data["metric"] == "fid") & data["step"].notna()]
    datasets = sorted(data["dataset"].dropna().unique()) or [None]
    fig = Figure(figsize=(6.5 * len(datasets) + 2.5, 4.5), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    fig.suptitle("Realism along walks: FID vs step size")
    if data.empty:
        return _empty(fig, axes[0], "no FID rows in the results table (metric group 'fid' not evaluated)")
    extractor = ", ".join(sorted(data["extractor"].dropna().unique())) or "unknown"
    for ax, dataset in zip(axes, datasets, strict=True):
        part = data[data["dataset"] == dataset]
        sns.lineplot(part, x="step", y="value", hue="variant", style="walk", markers=True, errorbar=("ci", 95),
                     seed=0, ax=ax, legend=_legend(ax, axes))
        ax.set(title=f"dataset: {dataset}", xlabel="|ε| (step size along the walk)",
               ylabel=f"FID ({extractor} features)")
    _legend_outside(axes[-1])
    return fig


def density_vs_step(metrics: pd.DataFrame) -> Figure:
    """Log-density drift and the out-of-typical-set share vs step, per variant and evaluation walk."""
    sns = _style()
    data = prepare_metrics(metrics)
    names = ["abs_logp_drift", "outside_share"]
    data = data[data["metric"].isin(names) & data["step"].notna()]
    fig = Figure(figsize=(14, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    fig.suptitle("Density along walks (mean over start points; bands: 95% CI over seeds and directions)")
    if data.empty:
        return _empty(fig, axes[0], "no density rows in the results table (metric group 'density' not evaluated)")
    for ax, name in zip(axes, names, strict=True):
        part = data[data["metric"] == name]
        sns.lineplot(part, x="step", y="value", hue="variant", style="walk", errorbar=("ci", 95), seed=0,
                     ax=ax, legend=_legend(ax, axes))
        ax.set(xlabel="ε (signed step)", ylabel=METRIC_LABELS[name], title=METRIC_LABELS[name])
    _legend_outside(axes[-1])
    return fig


def attribute_matrix(metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per variant (and dataset): the directions x factors matrix of normalised attribute change.

    Uses the summary rows (step null) evaluated with the walk each run was trained with, and the lowest seed
    (direction indices of different seeds do not correspond).
    """
    data = prepare_metrics(metrics)
    data = data[data["metric"].str.startswith("attr_change.") & data["step"].isna() & data["direction"].notna()]
    data = data[data["walk"] == data["train_walk"]]
    out: dict[str, pd.DataFrame] = {}
    n_datasets = data["dataset"].nunique()
    for (variant, dataset), part in data.groupby(["variant", "dataset"], sort=True):
        part = part[part["seed"] == part["seed"].min()]
        part = part[part["run_id"] == sorted(part["run_id"].unique())[0]]
        part = part.assign(factor=part["metric"].str.removeprefix("attr_change."))
        matrix = part.pivot_table(index="direction", columns="factor", values="value", aggfunc="mean")
        matrix = matrix[list(dict.fromkeys(part["factor"]))]  # the dataset's factor order, not alphabetical
        matrix.index = matrix.index.astype(int)
        out[f"{variant} | {dataset}" if n_datasets > 1 else variant] = matrix
    return out


def attribute_change(metrics: pd.DataFrame) -> Figure:
    """Heatmaps directions x factors of normalised attribute change, one panel per variant."""
    sns = _style()
    matrices = attribute_matrix(metrics)
    n = max(len(matrices), 1)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols + 1.5, 3.8 * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    fig.suptitle("Attribute change per direction (mean |Δ factor| / random-pair change)")
    if not matrices:
        return _empty(fig, axes[0], "no attribute-change rows in the results table (metric group 'attr')")
    vmax = max(float(np.nanmax(m.to_numpy())) for m in matrices.values())
    for i, (ax, (name, matrix)) in enumerate(zip(axes, matrices.items(), strict=False)):
        sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0, vmax=max(vmax, 1e-9), annot=matrix.shape[0] <= 12,
                    fmt=".2f", annot_kws={"fontsize": 7}, cbar=i == len(matrices) - 1,
                    cbar_kws={"label": "normalised change"})
        ax.set(title=name, xlabel="factor", ylabel="direction")
        ax.tick_params(axis="x", labelrotation=45)
    for ax in axes[len(matrices):]:
        ax.set_axis_off()
    return fig


def ablation_table(metrics: pd.DataFrame, names: Sequence[str] = DEFAULT_ABLATION_METRICS) -> pd.DataFrame:
    """One value per run and metric: DP-LaSE runs (all methods when there are none), each evaluated with the
    walk it was trained with; per-step metrics averaged over steps != 0 and directions."""
    data = prepare_metrics(metrics)
    if (data["method"] == "dplase").any():
        data = data[data["method"] == "dplase"]
    data = data[data["metric"].isin(list(names))]
    data = data[data["walk"].isna() | (data["walk"] == data["train_walk"])]
    data = data[data["step"].isna() | (data["step"] != 0)]
    # where a run-level summary row exists (direction and step null), it is the run's value
    summary = data["direction"].isna() & data["step"].isna()
    has_summary = summary.groupby([data["run_id"], data["metric"]]).transform("any")
    data = data[summary | ~has_summary]
    keys = ["run_id", "dataset", "method", "train_walk", "model_seed", "seed", "lambda", "zeta", "metric"]
    return data.groupby(keys, dropna=False, sort=True)["value"].mean().reset_index()


def ablation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """`ablation_table` per (metric, dataset, training walk): the runs of one replicate (model_seed, seed)
    averaged first (a lambda/zeta grid is not replication), then the mean over replicates, their count and
    the 95% Student-t interval (NaN bounds below two replicates: no error bar is drawn then)."""
    keys = ["metric", "dataset", "train_walk"]
    finite = table[np.isfinite(table["value"].to_numpy(dtype=float))]
    reps = finite.groupby([*keys, *REPLICATE], dropna=False, sort=True)["value"].mean().reset_index()
    return replicate_intervals(reps, keys)


def ablation(metrics: pd.DataFrame, names: Sequence[str] = DEFAULT_ABLATION_METRICS) -> Figure:
    """Bars of each metric per training walk (none / analytic / learned) and dataset: the mean over replicates,
    whiskers the 95% Student-t interval over replicates where there are at least two (`ablation_summary`)."""
    sns = _style()
    table = ablation_table(metrics, names)
    summary = ablation_summary(table)
    present = [n for n in names if n in set(summary["metric"])]
    cols = max(len(present), 1)
    fig = Figure(figsize=(3.3 * cols + 2.0, 4.6), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    method = ", ".join(sorted(table["method"].unique())) or "dplase"
    fig.suptitle(f"Density ablation ({method}): bars = mean over replicates (n under each bar), whiskers = 95% "
                 f"t-interval over replicates (none for n = 1)")
    if summary.empty:
        return _empty(fig, axes[0], "no rows for the ablation metrics " + ", ".join(names))
    present_walks = set(summary["train_walk"])
    order = [w for w in WALK_LABELS if w in present_walks] + sorted(present_walks - set(WALK_LABELS))
    datasets = sorted(summary["dataset"].dropna().unique())
    colours = sns.color_palette(n_colors=max(len(datasets), 1))
    width = 0.8 / max(len(datasets), 1)
    for ax, name in zip(axes, present, strict=True):
        part = summary[summary["metric"] == name]
        for d, dataset in enumerate(datasets):
            rows = part[part["dataset"] == dataset].set_index("train_walk").reindex(order)
            x = np.arange(len(order)) - 0.4 + width * (d + 0.5)
            ax.bar(x, rows["mean"], width, color=colours[d], label=dataset)
            has_ci = rows["ci_low"].notna().to_numpy()
            if has_ci.any():
                ax.errorbar(x[has_ci], rows["mean"][has_ci],
                            yerr=[(rows["mean"] - rows["ci_low"])[has_ci],
                                  (rows["ci_high"] - rows["mean"])[has_ci]],
                            fmt="none", ecolor="black", capsize=3, linewidth=1)
            for xi, n in zip(x, rows["n_replicates"], strict=True):
                if pd.notna(n):
                    ax.annotate(f"n={int(n)}", (xi, 0), xytext=(0, 2), textcoords="offset points", ha="center",
                                fontsize=6, color="white")
        ax.set_xticks(range(len(order)), [WALK_LABELS.get(w, w) for w in order], fontsize=8)
        ax.set(title=name, xlabel="training walk", ylabel=METRIC_LABELS.get(name, name))
        if ax is axes[-1]:
            ax.legend(title="dataset")
    _legend_outside(axes[-1])
    return fig


def loss_curves(losses: pd.DataFrame, max_panels: int = 12) -> Figure:
    """Every loss term vs step, one panel per trainer (GANs, then one run per trained variant, lowest seed)."""
    sns = _style()
    data = losses.copy()
    data["walk"] = data["walk"].fillna("")
    panels: list[tuple[str, pd.DataFrame]] = []
    for (source, method, walk, dataset), part in data.groupby(["source", "method", "walk", "dataset"], sort=True,
                                                            dropna=False):
        run = sorted(part["run_id"].dropna().unique())
        if run:
            part = part[part["run_id"] == run[0]]
        label = f"GAN {part['model'].iloc[0]} | {dataset}" if source == "gan" else f"{method} ({walk}) | {dataset}"
        panels.append((label, part))
    panels.sort(key=lambda p: (not p[0].startswith("GAN"), p[0]))
    panels = panels[:max_panels]
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    fig.suptitle("Training curves: every loss term per trainer")
    if not panels:
        return _empty(fig, axes[0], "no loss curves (no trained method or GAN in this study)")
    for ax, (label, part) in zip(axes, panels, strict=False):
        part = _smooth(part.sort_values("step"), window=max(1, part["step"].nunique() // 50))
        sns.lineplot(part, x="step", y="smoothed", hue="term", ax=ax, errorbar=None, linewidth=1.2)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set(title=label, xlabel="training step", ylabel="loss (symlog)")
        legend = ax.get_legend()
        if legend is not None:
            legend.set_title(None)
            for text in legend.get_texts():
                text.set_fontsize(7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return fig


def _smooth(part: pd.DataFrame, window: int) -> pd.DataFrame:
    """Running mean per term (light smoothing so trends read at a glance; raw values stay in the Parquet)."""
    smoothed = part.groupby("term")["value"].transform(lambda v: v.rolling(window, min_periods=1).mean())
    return part.assign(smoothed=smoothed)


# ---------------------------------------------------------------------------------------------------- files


def save_figure(fig: Figure, png: str | os.PathLike, pdf: str | os.PathLike | None = None, dpi: int = 120) -> Path:
    """Write a figure as PNG (and PDF), each atomically."""
    from dplase.artifacts import atomic_write

    png = Path(png)
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    if pdf is not None:
        atomic_write(pdf, lambda tmp: fig.savefig(tmp, format="pdf"))
    return png


def read_table(path: str | os.PathLike, kind: str) -> pd.DataFrame:
    """The metrics table (schema-checked by dplase.results) or the loss table."""
    if kind == "metrics":
        from dplase.results import read_results

        return read_results(path)
    return pd.read_parquet(path)


def draw_figure(name: str, table: str | os.PathLike, png: str | os.PathLike, pdf: str | os.PathLike | None = None,
                dpi: int = 120, ablation_metrics: Sequence[str] | None = None) -> Path:
    """Draw figure ``name`` (a key of `FIGURES`) from the Parquet file ``table`` and write PNG (+ PDF).

    ``ablation_metrics`` reaches the figures registered with ``uses_ablation_metrics`` (others ignore it).
    """
    entry = FIGURES[FIGURES.check(name)]
    frame = read_table(table, entry["table"])
    draw: Callable[..., Figure] = entry.load()
    fig = draw(frame, ablation_metrics) if ablation_metrics and entry.get("uses_ablation_metrics") else draw(frame)
    return save_figure(fig, png, pdf, dpi=dpi)
