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
The pages are drawn by `dplase.compare_pages`.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dplase.artifacts import atomic_write
from dplase.compare_pages import (  # re-exported: the pages are part of the comparison's interface
    ENCODER_R2_FLAG,
    HEADLINE_METRICS,
    Section,
    comparison_html,
    comparison_markdown,
    comparison_sections,
    poor_encoder_lines,
    poor_encoder_note,
    undefined_notes,
)
from dplase.plots.figures import prepare_metrics
from dplase.plots.replicates import CONFIDENCE, REPLICATE, replicate_intervals
from dplase.results import read_results

DEFAULT_REFERENCE = "dplase (norm)"
MAX_STEP_SUFFIX = "@max_step"
N_BOOT = 10_000


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
      |step| inside its trained range (rows marked ``extrapolated`` are left out), named ``<metric>@max_step``.

    Per-direction rows of metrics without a step (e.g. null_leakage) are not summarised. Columns: run_id,
    RUN_LABELS, walk, metric, value.
    """
    data = _split_extractors(prepare_metrics(metrics))
    scalar = data["direction"].isna() & data["step"].isna()
    # extrapolated steps (past the run's trained range, on request) are not the method's summary
    inside = data["extrapolated"].isna() | ~data["extrapolated"].astype("boolean").fillna(False)
    stepped = data[data["step"].notna() & inside & ~data["metric"].isin(set(data.loc[scalar, "metric"]))].copy()
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
    return replicate_intervals(replicate_summaries(metrics, metrics_wanted), GROUP)


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


#: metric prefixes paired_differences does not test (same instrument for every method, or not comparable)
NOT_COMPARED = ("predictor_heldout_", "predictor_r2.", "predictor_accuracy.", "convergence.",
                "fid_real_reference_size", "latent_dim")
PAIRED_COLUMNS = [*TEST, "variant", "reference", "n_pairs", "mean_diff", "boot_low", "boot_high", "p_value",
                  "p_holm"]


def paired_differences(metrics: pd.DataFrame, reference: str = DEFAULT_REFERENCE,
                       metrics_wanted: Sequence[str] | None = None, seed: int = 0,
                       n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per other variant and (dataset, model, eval walk, metric): the mean paired difference (variant -
    reference) over the replicates both have, its seeded percentile-bootstrap 95% CI, the paired t-test
    p-value and the Holm-adjusted p-value over all tests of one (dataset, model).

    Rows that describe the instruments or the method's own optimisation, not its directions
    (`NOT_COMPARED`: the predictor's held-out scores and agreement, convergence records, reference sizes), are
    not tested, so they neither appear nor enlarge the Holm family. A (dataset, model) without the reference
    variant has no rows.
    """
    reps = replicate_summaries(metrics, metrics_wanted)
    reps = reps[~reps["metric"].astype(str).str.startswith(NOT_COMPARED)]
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


__all__ = [
    "DEFAULT_REFERENCE", "ENCODER_R2_FLAG", "GROUP", "HEADLINE_METRICS", "MAX_STEP_SUFFIX", "NOT_COMPARED",
    "N_BOOT", "PAIRED_COLUMNS", "RUN_LABELS", "TEST", "Section", "UnknownReferenceError", "bootstrap_mean_ci",
    "comparison_html", "comparison_markdown", "comparison_sections", "comparison_table", "holm", "known_variants",
    "paired_differences", "paired_t_p", "poor_encoder_lines", "poor_encoder_note", "replicate_summaries",
    "resolve_reference", "summary_metrics", "undefined_notes", "write_comparison",
]
