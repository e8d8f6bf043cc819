"""The method comparison as pages: GitHub markdown (comparison.md) and one self-contained HTML page
(comparison.html, the HTML report's "Method comparison"), both from the same `Section` list built from the
frames of `dplase.compare` (`comparison_table`, `paired_differences`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np
import pandas as pd

#: the metrics comparison.md shows where the frame has them (comparison.csv has every summary metric)
HEADLINE_METRICS = ("attr_top_share", "attr_exact_top_share", "mig", "dci_disentanglement", "encoder_r2",
                    "recovery", "mig_exact", "fid@max_step", "abs_logp_drift@max_step")
#: a mean held-out code-encoder R² below this flags the variant's MIG/DCI in comparison.md
ENCODER_R2_FLAG = 0.5
#: paired differences with a Holm-adjusted p below this are bold in comparison.html
SIGNIFICANCE = 0.05
_P_VALUE = re.compile(r" p=([0-9.eE+-]+)")
#: eval walks in the order of the ablation, then the channel-masked edit of the run's own walk
WALK_ORDER = {"linear": 0, "norm": 1, "learned": 2, "masked": 3}


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
        # the walks in the order of the ablation (no density term, analytic, learned), masked, others after them
        walks = sorted(part["walk"].dropna().unique(), key=lambda w: (WALK_ORDER.get(w, len(WALK_ORDER)), w)) or [None]
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


_HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;font-size:13px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}
td{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td:first-child,th:first-child{text-align:left}
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
