"""Method comparison from the results table alone: per-variant means with t-intervals over replicates, and
paired differences against a reference variant (bootstrap CI, paired t-test, Holm correction).

A *replicate* is one (model_seed, seed) pair (`dplase.plots.recovery.REPLICATE`). Within a replicate every
method is evaluated on the same seeded samples, so differences between variants are paired by (dataset, model,
model_seed, seed) and compared at the same evaluation walk (the ``walk`` column). Runs of one variant that
share a replicate (a lambda/zeta grid) are averaged first, so every replicate counts once. Variants are those
of `dplase.plots.figures.prepare_metrics` (e.g. "dplase (norm)": DP-LaSE trained with the norm walk).

`write_comparison` writes three files into ``out_dir``:
  ``comparison.csv``         `comparison_table` (one row per dataset, model, variant, eval walk and metric)
  ``comparison_paired.csv``  `paired_differences` against the reference (one row per test)
  ``comparison.md``          GitHub-markdown tables of the headline metrics, per dataset / model / eval walk
  ``comparison.html``        the same tables as a self-contained page (the HTML report's "Method comparison")
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from dplase.artifacts import atomic_write
from dplase.plots.figures import prepare_metrics
from dplase.plots.recovery import CONFIDENCE, REPLICATE, t_interval
from dplase.results import read_results

DEFAULT_REFERENCE = "dplase (norm)"
#: the metrics comparison.md shows where the frame has them (comparison.csv has every summary metric)
HEADLINE_METRICS = ("attr_top_share", "attr_exact_top_share", "mig", "dci_disentanglement", "encoder_r2",
                    "recovery", "mig_exact", "fid@max_step", "abs_logp_drift@max_step")
MAX_STEP_SUFFIX = "@max_step"
#: a mean held-out code-encoder R² below this flags the variant's MIG/DCI in comparison.md
ENCODER_R2_FLAG = 0.5
N_BOOT = 10_000
#: paired differences with a Holm-adjusted p below this are bold in comparison.html
SIGNIFICANCE = 0.05
_P_VALUE = re.compile(r" p=([0-9.eE+-]+)")


class UnknownReferenceError(ValueError):
    """The reference variant is not in the results table."""

#: run-level labels carried with every summary value
RUN_LABELS = ["dataset", "model", "method", "train_walk", "variant", *REPLICATE]
#: one comparison_table row; one paired_differences test
GROUP = ["dataset", "model", "variant", "method", "train_walk", "walk", "metric"]
TEST = ["dataset", "model", "walk", "metric"]


# --------------------------------------------------------------------------------------------- summaries


def _split_extractors(data: pd.DataFrame) -> pd.DataFrame:
    """Name a metric ``<metric>[<extractor>]`` where the frame holds it from several feature extractors, so
    domain and Inception FIDs are never averaged together."""
    extractors = data.dropna(subset=["extractor"]).groupby("metric")["extractor"].nunique()
    several = data["metric"].isin(extractors[extractors > 1].index) & data["extractor"].notna()
    data = data.copy()
    data["metric"] = data["metric"].astype(object)
    data.loc[several, "metric"] = data.loc[several, "metric"] + "[" + data.loc[several, "extractor"] + "]"
    return data


def summary_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """One value per run, eval walk and metric: the scalar summaries to compare.

    * rows with direction and step null, as they are;
    * every metric with no such run-level row but with per-step rows (fid, abs_logp_drift,
      attr_exact.fidelity, ...): the mean over directions and both signs of the rows at the run's largest
      |step|, named ``<metric>@max_step``.

    Per-direction rows of metrics without a step (e.g. null_leakage) are not summarised. Columns: run_id,
    RUN_LABELS, walk, metric, value.
    """
    data = _split_extractors(prepare_metrics(metrics))
    scalar = data["direction"].isna() & data["step"].isna()
    stepped = data[data["step"].notna() & ~data["metric"].isin(set(data.loc[scalar, "metric"]))].copy()
    stepped["abs_step"] = stepped["step"].abs()
    largest = stepped.groupby(["run_id", "walk", "metric"], dropna=False)["abs_step"].transform("max")
    at_max = stepped[np.isclose(stepped["abs_step"], largest)].assign(metric=lambda f: f["metric"] + MAX_STEP_SUFFIX)
    keys = ["run_id", "walk", "metric"]
    values = pd.concat([data[scalar], at_max], ignore_index=True)
    values = values.groupby(keys, dropna=False, sort=True)["value"].mean().reset_index()
    labels = data.drop_duplicates("run_id")[["run_id", *RUN_LABELS]]
    return values.merge(labels, on="run_id", how="left")[["run_id", *RUN_LABELS, "walk", "metric", "value"]]


def replicate_summaries(metrics: pd.DataFrame, metrics_wanted: Sequence[str] | None = None) -> pd.DataFrame:
    """`summary_metrics` averaged over the runs of one replicate: one value per GROUP and replicate."""
    data = summary_metrics(metrics)
    if metrics_wanted is not None:
        data = data[data["metric"].isin(list(metrics_wanted))]
    data = data[np.isfinite(data["value"].to_numpy(dtype=float))]
    return data.groupby([*GROUP, *REPLICATE], dropna=False, sort=True)["value"].mean().reset_index()


def comparison_table(metrics: pd.DataFrame, metrics_wanted: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (dataset, model, variant, eval walk, metric): n_replicates, mean, sd and the 95% Student-t interval
    over replicates (ci_low, ci_high; NaN for a single replicate, sd too)."""
    reps = replicate_summaries(metrics, metrics_wanted)
    rows = []
    for key, part in reps.groupby(GROUP, dropna=False, sort=True):
        values = part["value"].to_numpy(dtype=float)
        low, high = t_interval(values, CONFIDENCE)
        rows.append({**dict(zip(GROUP, key, strict=True)), "n_replicates": len(values),
                     "mean": float(values.mean()),
                     "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=[*GROUP, "n_replicates", "mean", "sd", "ci_low", "ci_high"])


# --------------------------------------------------------------------------------------- paired tests


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error); NaN entries stay NaN and are not in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    # the i-th smallest p times (m - i), made monotone so a larger p never gets a smaller adjusted value
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def _test_seed(seed: int, key: tuple) -> np.random.Generator:
    """A generator per test, from the seed and the test's labels: a test's CI does not depend on which
    other tests the frame holds."""
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def bootstrap_mean_ci(diff: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT,
                      confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diff`` (NaN bounds for fewer than two values)."""
    if len(diff) < 2:
        return math.nan, math.nan
    means = rng.choice(diff, size=(n_boot, len(diff)), replace=True).mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_t_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value; NaN for fewer than two pairs or differences without variance."""
    from scipy import stats

    diff = a - b
    if len(diff) < 2 or np.ptp(diff) == 0:
        return math.nan
    return float(stats.ttest_rel(a, b).pvalue)


PAIRED_COLUMNS = [*TEST, "variant", "reference", "n_pairs", "mean_diff", "boot_low", "boot_high", "p_value",
                  "p_holm"]


def paired_differences(metrics: pd.DataFrame, reference: str = DEFAULT_REFERENCE,
                       metrics_wanted: Sequence[str] | None = None, seed: int = 0,
                       n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per other variant and (dataset, model, eval walk, metric): the mean paired difference (variant -
    reference) over the replicates both have, its seeded percentile-bootstrap 95% CI, the paired t-test
    p-value and the Holm-adjusted p-value over all tests of one (dataset, model).

    A (dataset, model) without the reference variant has no rows.
    """
    reps = replicate_summaries(metrics, metrics_wanted)
    rows = []
    for _, part in reps.groupby(["dataset", "model"], dropna=False, sort=True):
        ref = part[part["variant"] == reference]
        if ref.empty:
            continue
        ref = ref[[*TEST, *REPLICATE, "value"]].rename(columns={"value": "ref_value"})
        # inner join: a replicate only one side has is dropped from that pair
        pairs = part[part["variant"] != reference].merge(ref, on=[*TEST, *REPLICATE], how="inner")
        tests = []
        for key, test in pairs.groupby([*TEST, "variant"], dropna=False, sort=True):
            a, b = test["value"].to_numpy(dtype=float), test["ref_value"].to_numpy(dtype=float)
            diff = a - b
            low, high = bootstrap_mean_ci(diff, _test_seed(seed, key), n_boot)
            tests.append({**dict(zip([*TEST, "variant"], key, strict=True)), "reference": reference,
                          "n_pairs": len(diff), "mean_diff": float(diff.mean()), "boot_low": low,
                          "boot_high": high, "p_value": paired_t_p(a, b)})
        adjusted = holm([t["p_value"] for t in tests])
        rows += [{**t, "p_holm": float(p)} for t, p in zip(tests, adjusted, strict=True)]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


# ------------------------------------------------------------------------------------------- markdown


def _num(x: float) -> str:
    """Three decimals for scores in [0, 1]-ish ranges, one for large values such as FID."""
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}"


def _mean_cell(row: pd.Series) -> str:
    if row["n_replicates"] < 2 or not np.isfinite(row["ci_low"]):
        return f"{_num(row['mean'])} (n={row['n_replicates']})"
    return f"{_num(row['mean'])} [{_num(row['ci_low'])}, {_num(row['ci_high'])}] (n={row['n_replicates']})"


def _diff_cell(row: pd.Series) -> str:
    diff = f"{row['mean_diff']:+.3f}" if abs(row["mean_diff"]) < 100 else f"{row['mean_diff']:+.1f}"
    ci = f" [{_num(row['boot_low'])}, {_num(row['boot_high'])}]" if np.isfinite(row["boot_low"]) else ""
    p = f" p={row['p_holm']:.3g}" if np.isfinite(row["p_holm"]) else " p=n/a"
    return f"{diff}{ci}{p} (n={row['n_pairs']})"


def _cells(part: pd.DataFrame, names: list[str], cell, variants: list[str]) -> list[tuple[str, list[str]]]:
    """One (variant, cells) row per variant; ``cell`` formats one table row; a missing cell is a dash."""
    out = []
    for variant in variants:
        cells = []
        for name in names:
            hit = part[(part["variant"] == variant) & (part["metric"] == name)]
            cells.append(cell(hit.iloc[0]) if len(hit) else "–")
        out.append((variant, cells))
    return out


@dataclass
class Section:
    """One dataset / model / eval walk of the comparison: the means grid, the paired-differences grid (None
    without the reference) and flag lines, each grid a list of (variant, cells) over the section's metrics."""

    title: str
    means: list[tuple[str, list[str]]]
    diffs: list[tuple[str, list[str]]] | None
    notes: list[str] = field(default_factory=list)


def undefined_notes(metrics: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """Per (dataset, model): one line per metric whose rows are NaN with a ``note`` (e.g. DCI on a
    one-factor dataset), so the tables say why a cell is empty instead of dropping it silently."""
    if "note" not in metrics.columns:
        return {}
    nan = metrics[~np.isfinite(metrics["value"].to_numpy(dtype=float)) & metrics["note"].notna()]
    out: dict[tuple[str, str], list[str]] = {}
    for (dataset, model), part in nan.groupby(["dataset", "model"], dropna=False, sort=True):
        lines = [f"{metric}: NaN ({'; '.join(sorted(set(rows['note'])))})"
                 for metric, rows in part.groupby("metric", sort=True)]
        out[(dataset, model)] = lines
    return out


def comparison_sections(table: pd.DataFrame, paired: pd.DataFrame, reference: str,
                        headline: Sequence[str] = HEADLINE_METRICS,
                        undefined: dict[tuple[str, str], list[str]] | None = None,
                        ) -> tuple[list[str], list[Section]]:
    """The headline metrics (those the table holds) and one `Section` per dataset, model and eval walk.
    Metrics without a walk (mig, dci_*, recovery) appear in every walk's section. ``undefined``
    (`undefined_notes`) adds the reasons of NaN metrics to their dataset/model's sections."""
    undefined = undefined or {}
    present = list(dict.fromkeys(table["metric"]))
    names = [m for m in headline if m in present] or present[:6]
    sections = []
    for (dataset, model), part in table.groupby(["dataset", "model"], dropna=False, sort=True):
        walks = sorted(w for w in part["walk"].dropna().unique()) or [None]
        pair_part = paired[(paired["dataset"] == dataset) & (paired["model"] == model)] if len(paired) else paired
        for walk in walks:
            here = part[part["walk"].isna() | (part["walk"] == walk)]
            variants = sorted(here["variant"].unique(), key=lambda v: (v != reference, v))
            diffs = None
            if not pair_part.empty:
                shown = pair_part[pair_part["walk"].isna() | (pair_part["walk"] == walk)]
                diffs = _cells(shown, names, _diff_cell, [v for v in variants if v != reference])
            notes = poor_encoder_lines(here) + undefined.get((dataset, model), [])
            sections.append(Section(f"{dataset} / {model} — eval walk: {walk or '–'}",
                                    _cells(here, names, _mean_cell, variants), diffs, notes))
    return names, sections


def _legend(reference: str) -> str:
    return (f"Cells: mean [95% Student-t CI] over replicates (model_seed, seed); no interval for n=1. "
            f"Paired: mean difference (variant − {reference}) over shared replicates "
            f"[95% percentile-bootstrap CI], Holm-adjusted paired t-test p over all tests of the dataset/model "
            f"(every metric in comparison_paired.csv). Full tables: comparison.csv, comparison_paired.csv.")


def _markdown_grid(names: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = ["| variant | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    return lines + [f"| {variant} | " + " | ".join(cells) + " |" for variant, cells in rows]


def comparison_markdown(table: pd.DataFrame, paired: pd.DataFrame, reference: str,
                        headline: Sequence[str] = HEADLINE_METRICS,
                        undefined: dict[tuple[str, str], list[str]] | None = None) -> str:
    """The headline metrics as GitHub tables: per dataset, model and eval walk, variant x metric with
    "mean [lo, hi] (n=N)", then the paired differences against ``reference`` with Holm p-values."""
    lines = ["# Method comparison", "", _legend(reference), ""]
    if table.empty:
        return "\n".join([*lines, "_no summary metrics in the results table_", ""])
    names, sections = comparison_sections(table, paired, reference, headline, undefined)
    for sec in sections:
        lines += [f"## {sec.title}", "", *_markdown_grid(names, sec.means), ""]
        lines += [line for note in sec.notes for line in (f"**Flag:** {note}", "")]
        if sec.diffs is None:
            lines += [f"_no paired differences: reference '{reference}' absent_", ""]
            continue
        lines += [f"Paired differences vs {reference}:", "", *_markdown_grid(names, sec.diffs), ""]
    return "\n".join(lines)


_HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}
td{text-align:right;font-variant-numeric:tabular-nums}td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}tr.reference td{background:#eef5ff}td.significant{font-weight:bold}
p.flag{color:#a33}p.legend{color:#555;max-width:70em}"""


def _html_grid(names: list[str], rows: list[tuple[str, list[str]]], reference: str | None = None) -> str:
    def cell(text: str) -> str:
        p = _P_VALUE.search(text)
        significant = p is not None and float(p.group(1)) < SIGNIFICANCE
        return f'<td class="significant">{escape(text)}</td>' if significant else f"<td>{escape(text)}</td>"

    head = "<tr><th>variant</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    body = "".join(
        ('<tr class="reference">' if variant == reference else "<tr>") + f"<td>{escape(variant)}</td>"
        + "".join(cell(c) for c in cells) + "</tr>" for variant, cells in rows)
    return f"<table>{head}{body}</table>"


def comparison_html(table: pd.DataFrame, paired: pd.DataFrame, reference: str,
                    headline: Sequence[str] = HEADLINE_METRICS,
                    undefined: dict[tuple[str, str], list[str]] | None = None) -> str:
    """The same tables as `comparison_markdown` as one self-contained HTML page (for the HTML report):
    the reference row shaded, paired differences with Holm p < 0.05 in bold."""
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Method comparison</title>",
             f"<style>{_HTML_STYLE}</style></head><body><h1>Method comparison</h1>",
             f'<p class="legend">{escape(_legend(reference))} Bold: Holm-adjusted p &lt; {SIGNIFICANCE}.</p>']
    if table.empty:
        parts.append("<p><em>no summary metrics in the results table</em></p>")
    else:
        names, sections = comparison_sections(table, paired, reference, headline, undefined)
        for sec in sections:
            parts += [f"<h2>{escape(sec.title)}</h2>", _html_grid(names, sec.means, reference)]
            parts += [f'<p class="flag"><b>Flag:</b> {escape(note)}</p>' for note in sec.notes]
            if sec.diffs is None:
                parts.append(f"<p><em>no paired differences: reference '{escape(reference)}' absent</em></p>")
            else:
                parts += [f"<p>Paired differences vs {escape(reference)}:</p>", _html_grid(names, sec.diffs)]
    parts.append("</body></html>")
    return "\n".join(parts)


def poor_encoder_lines(table: pd.DataFrame, threshold: float = ENCODER_R2_FLAG) -> list[str]:
    """A flag for the variants whose code encoder fits poorly (mean held-out ``encoder_r2`` below
    ``threshold``): their MIG/DCI rest on codes that are mostly noise ([] when none does)."""
    fit = table[table["metric"] == "encoder_r2"]
    poor = fit[fit["mean"] < threshold]
    if poor.empty:
        return []
    listed = ", ".join(f"{v} ({m:.2f})" for v, m in zip(poor["variant"], poor["mean"], strict=True))
    return [f"the code encoder fits poorly (held-out encoder_r2 < {threshold}) for {listed}: their "
            f"mig / dci_* come from codes that are mostly noise."]


def poor_encoder_note(table: pd.DataFrame, threshold: float = ENCODER_R2_FLAG) -> list[str]:
    """`poor_encoder_lines` as markdown lines (a bold flag and a blank line)."""
    return [line for note in poor_encoder_lines(table, threshold) for line in (f"**Flag:** {note}", "")]


def known_variants(metrics: pd.DataFrame) -> list[str]:
    """The variant labels of a results frame (sorted)."""
    return sorted(prepare_metrics(metrics)["variant"].dropna().unique())


def resolve_reference(reference: str, variants: Sequence[str]) -> str:
    """The reference variant as the table labels it: a study with one training walk per method labels DP-LaSE
    "dplase", not "dplase (norm)", so a "method (walk)" reference falls back to its method when only that exists.
    Anything else unknown is an `UnknownReferenceError` listing the known variants."""
    if reference in variants:
        return reference
    method = reference.split(" (")[0]
    if method != reference and method in variants:
        return method
    known = ", ".join(variants) or "(none)"
    raise UnknownReferenceError(f"unknown reference variant '{reference}'; known: {known}")


def write_comparison(metrics_path: str | os.PathLike, out_dir: str | os.PathLike,
                     reference: str = DEFAULT_REFERENCE, seed: int = 0, n_boot: int = N_BOOT,
                     strict: bool = True) -> list[Path]:
    """Read a results file and write comparison.csv, comparison_paired.csv, comparison.md and comparison.html
    into ``out_dir``.

    Raises `dplase.results.ResultsSchemaError` for a missing or foreign file and ValueError for a reference
    variant the table does not hold (`UnknownReferenceError`; the message lists the known ones).
    """
    metrics = read_results(metrics_path)
    try:
        reference = resolve_reference(reference, known_variants(metrics))
    except UnknownReferenceError:
        if strict:
            raise  # not strict (the workflow): the tables without paired differences, and the markdown says so
    table = comparison_table(metrics)
    paired = paired_differences(metrics, reference=reference, seed=seed, n_boot=n_boot)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "comparison.csv", out / "comparison_paired.csv", out / "comparison.md", out / "comparison.html"]
    atomic_write(paths[0], lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(paths[1], lambda tmp: paired.to_csv(tmp, index=False))
    undefined = undefined_notes(metrics)
    markdown = comparison_markdown(table, paired, reference, undefined=undefined)
    atomic_write(paths[2], lambda tmp: Path(tmp).write_text(markdown))
    page = comparison_html(table, paired, reference, undefined=undefined)
    atomic_write(paths[3], lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return paths
