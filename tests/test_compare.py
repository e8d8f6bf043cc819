"""Method comparison (dplase.compare, `dplase compare`) on a synthetic, seeded results frame with known
per-replicate values: t-intervals, paired differences, the bootstrap, Holm and the pairing by replicate."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from dplase import compare
from dplase.cli import main
from dplase.results import make_rows, write_results

REPLICATES = [(ms, s) for ms in (0, 1) for s in (0, 1, 2)]
#: the reference's mig per replicate (seeded); sefa = reference + 0.1 + small noise; random: equal mean
BASE = np.random.default_rng(0).uniform(0.3, 0.6, len(REPLICATES))
NOISE = np.random.default_rng(1).normal(0.0, 0.01, len(REPLICATES))
NOISE -= NOISE.mean()  # centred: the true mean difference is exactly 0.1, so the CI must contain it
SYMMETRIC = np.array([0.05, -0.05, 0.03, -0.03, 0.02, -0.02])  # mean exactly 0
STEPS = (-2.0, -1.0, 1.0, 2.0)


def run_rows(model: str, method: str, walk: str, model_seed: int, seed: int, mig: float,
             lam: float | None = None) -> pd.DataFrame:
    """One run: mig (no walk), attr_top_share per eval walk, fid per step, abs_logp_drift per direction/step."""
    params = {"walk": walk, **({"lambda": lam} if lam is not None else {})}
    base = {"run_id": f"{model}-{method}-{walk}-{model_seed}-{seed}-{lam}", "model": model, "dataset": "shapes",
            "method": method, "params": json.dumps(params), "k": 2, "lambda": lam, "seed": seed,
            "model_seed": model_seed}
    rows = [{"metric": "mig", "value": mig, "n_samples": 100}]
    for w in ("linear", "norm"):
        rows.append({"walk": w, "metric": "attr_top_share", "value": mig + (w == "norm"), "n_samples": 100})
        rows += [{"walk": w, "step": e, "metric": "fid", "value": 10 * mig * abs(e) + e, "n_samples": 100,
                  "extractor": "domain"} for e in STEPS]
        rows += [{"walk": w, "direction": j, "step": e, "metric": "abs_logp_drift", "value": j + abs(e),
                  "n_samples": 100} for j in range(2) for e in STEPS]
    return make_rows(base, rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frames = []
    for i, (ms, s) in enumerate(REPLICATES):
        # the reference has a lambda grid: two runs per replicate, averaged back to BASE
        frames += [run_rows("m1", "dplase", "norm", ms, s, BASE[i] + d, lam) for lam, d in ((0.1, -0.01),
                                                                                           (1.0, 0.01))]
        frames.append(run_rows("m1", "dplase", "linear", ms, s, BASE[i] + SYMMETRIC[i]))
        frames.append(run_rows("m1", "sefa", "linear", ms, s, BASE[i] + 0.1 + NOISE[i]))
    frames.append(run_rows("m1", "sefa", "linear", 2, 0, 5.0))  # only sefa has this replicate
    frames.append(run_rows("m1", "oracle", "linear", 0, 0, 1.0))  # a single replicate
    frames.append(run_rows("m2", "sefa", "linear", 0, 0, 0.5))  # a model without the reference
    frames.append(run_rows("m2", "sefa", "linear", 0, 1, 0.6))
    return pd.concat(frames, ignore_index=True)


def row(table: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for key, value in where.items():
        mask &= table[key].isna().to_numpy() if value is None else (table[key] == value).to_numpy()
    hits = table[mask]
    assert len(hits) == 1, (where, hits)
    return hits.iloc[0]


def test_summary_metrics_names_and_max_step_values(frame):
    data = compare.summary_metrics(frame)
    assert set(data["metric"]) == {"mig", "attr_top_share", "fid@max_step", "abs_logp_drift@max_step"}
    run = data[data["run_id"] == "m1-oracle-linear-0-0-None"]
    fid = row(run, metric="fid@max_step", walk="linear")["value"]
    assert fid == pytest.approx(10 * 1.0 * 2)  # mean of steps +2 and -2: the signed offsets cancel
    drift = row(run, metric="abs_logp_drift@max_step", walk="norm")["value"]
    assert drift == pytest.approx(0.5 + 2)  # directions 0 and 1 averaged at |step| 2
    assert pd.isna(row(run, metric="mig")["walk"])
    assert set(data["variant"]) == {"dplase (norm)", "dplase (linear)", "sefa", "oracle"}


def test_comparison_table_mean_and_t_interval(frame):
    table = compare.comparison_table(frame)
    values = BASE + 0.1 + NOISE
    values = np.append(values, 5.0)
    sefa = row(table, model="m1", variant="sefa", metric="mig", walk=None)
    assert sefa["n_replicates"] == 7
    assert sefa["mean"] == pytest.approx(values.mean())
    assert sefa["sd"] == pytest.approx(values.std(ddof=1))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert (sefa["ci_low"], sefa["ci_high"]) == pytest.approx((low, high))
    ref = row(table, model="m1", variant="dplase (norm)", metric="attr_top_share", walk="norm")
    assert ref["n_replicates"] == 6 and ref["mean"] == pytest.approx(BASE.mean() + 1)  # lambda grid averaged


def test_single_replicate_has_no_interval(frame):
    oracle = row(compare.comparison_table(frame), variant="oracle", metric="mig", walk=None)
    assert oracle["n_replicates"] == 1 and oracle["mean"] == 1.0
    assert math.isnan(oracle["ci_low"]) and math.isnan(oracle["ci_high"]) and math.isnan(oracle["sd"])


def test_paired_difference_known_shift(frame):
    paired = compare.paired_differences(frame, seed=0)
    sefa = row(paired, model="m1", variant="sefa", metric="mig", walk=None)
    assert sefa["n_pairs"] == 6  # the sefa-only replicate (model_seed 2) is dropped from the pair
    assert sefa["mean_diff"] == pytest.approx(0.1)
    assert sefa["boot_low"] < 0.1 < sefa["boot_high"] and sefa["boot_high"] - sefa["boot_low"] < 0.05
    assert sefa["p_value"] < 0.05 and sefa["p_holm"] < 0.05
    expected = stats.ttest_rel(BASE + 0.1 + NOISE, BASE).pvalue
    assert sefa["p_value"] == pytest.approx(expected)
    same = row(paired, model="m1", variant="dplase (linear)", metric="mig", walk=None)
    assert same["mean_diff"] == pytest.approx(0.0, abs=1e-12) and same["p_value"] > 0.5


def test_paired_rows_per_eval_walk_and_no_reference_model(frame):
    paired = compare.paired_differences(frame)
    assert set(paired["model"]) == {"m1"}  # m2 has no reference variant: skipped
    assert set(paired["variant"]) == {"sefa", "dplase (linear)", "oracle"}
    walks = paired[(paired["variant"] == "sefa") & (paired["metric"] == "attr_top_share")]["walk"]
    assert sorted(walks) == ["linear", "norm"]
    oracle = row(paired, variant="oracle", metric="mig", walk=None)
    assert oracle["n_pairs"] == 1 and math.isnan(oracle["boot_low"]) and math.isnan(oracle["p_value"])
    # abs_logp_drift does not depend on the variant: zero variance, no p-value
    assert paired.loc[paired["metric"] == "abs_logp_drift@max_step", "p_value"].isna().all()


def test_bootstrap_is_seeded(frame):
    a = compare.paired_differences(frame, seed=3, n_boot=2000)
    b = compare.paired_differences(frame, seed=3, n_boot=2000)
    c = compare.paired_differences(frame, seed=4, n_boot=2000)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["boot_low"].dropna(), c["boot_low"].dropna())


def test_holm_against_hand_computation():
    np.testing.assert_allclose(compare.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    # capped at 1, NaN kept out of the family: m = 2 here
    np.testing.assert_allclose(compare.holm([0.6, math.nan, 0.02]), [0.6, math.nan, 0.04])
    assert compare.holm([]).shape == (0,)


def test_markdown_is_plain_github_tables(frame):
    table = compare.comparison_table(frame)
    paired = compare.paired_differences(frame, n_boot=500)
    text = compare.comparison_markdown(table, paired, "dplase (norm)")
    assert "## shapes / m1 — eval walk: norm" in text and "## shapes / m2 — eval walk: linear" in text
    header = "| variant | attr_top_share | mig | fid@max_step | abs_logp_drift@max_step |"
    assert header in text and "|---|---:|---:|---:|---:|" in text
    assert "| oracle | 1.000 (n=1) |" in text
    assert "reference 'dplase (norm)' absent" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|") and line.count("|") == 6


def test_html_page_holds_the_markdown_tables(frame):
    from html.parser import HTMLParser

    table = compare.comparison_table(frame)
    paired = compare.paired_differences(frame, n_boot=500)
    text = compare.comparison_markdown(table, paired, "dplase (norm)")
    page = compare.comparison_html(table, paired, "dplase (norm)")

    class Cells(HTMLParser):
        """The text of every <td>, and whether it was bold (class significant)."""

        def __init__(self) -> None:
            super().__init__()
            self.cells: list[tuple[str, bool]] = []
            self.bold = None

        def handle_starttag(self, tag, attrs):
            if tag == "td":
                self.bold = ("class", "significant") in attrs
                self.cells.append(("", self.bold))

        def handle_data(self, data):
            if self.bold is not None:
                self.cells[-1] = (self.cells[-1][0] + data, self.bold)

        def handle_endtag(self, tag):
            if tag == "td":
                self.bold = None

    parser = Cells()
    parser.feed(page)
    md_cells = [c.strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line
                and not line.startswith("| variant") for c in line.strip("|").split("|")]
    assert [c for c, _ in parser.cells] == md_cells  # the same cells, in the same order
    for cell, bold in parser.cells:
        p = re.search(r" p=([0-9.eE+-]+)", cell)
        assert bold == (p is not None and float(p.group(1)) < 0.05)
    assert page.count("<h2>") == text.count("\n## ") and "<script" not in page


def test_cli_writes_files_and_fails_cleanly(frame, tmp_path):
    path = write_results(frame, tmp_path / "metrics.parquet")
    runner = CliRunner()
    result = runner.invoke(main, ["compare", "--metrics", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    paired = pd.read_csv(tmp_path / "out" / "comparison_paired.csv")
    assert {"n_replicates", "ci_low"} <= set(table.columns) and {"p_holm", "boot_low"} <= set(paired.columns)
    assert (tmp_path / "out" / "comparison.md").read_text().startswith("# Method comparison")
    assert (tmp_path / "out" / "comparison.html").read_text().startswith("<!DOCTYPE html>")
    for args, message in ((["--metrics", str(tmp_path / "missing.parquet")], "no such results file"),
                          (["--metrics", str(path), "--reference", "nope"], "known: dplase (linear)")):
        result = runner.invoke(main, ["compare", *args, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2 and message in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    (tmp_path / "foreign.parquet").write_text("not parquet")
    result = runner.invoke(main, ["compare", "--metrics", str(tmp_path / "foreign.parquet")])
    assert result.exit_code == 2 and "not a readable Parquet file" in result.output


def test_reference_falls_back_to_its_method_when_the_study_has_one_training_walk():
    assert compare.resolve_reference("dplase (norm)", ["dplase (linear)", "dplase (norm)"]) == "dplase (norm)"
    assert compare.resolve_reference("dplase (norm)", ["dplase", "sefa"]) == "dplase"
    with pytest.raises(compare.UnknownReferenceError, match="known: sefa"):
        compare.resolve_reference("dplase (norm)", ["sefa"])


def test_the_workflow_job_writes_the_tables_without_the_reference(frame, tmp_path):
    from dplase.jobs import compare_job

    path = write_results(frame[frame["method"] == "sefa"], tmp_path / "metrics.parquet")
    out = compare_job(metrics=path, out=tmp_path / "comparison.md", reference="dplase (norm)", seed=0)
    assert "reference 'dplase (norm)' absent" in out.read_text()
    assert len(pd.read_csv(tmp_path / "comparison.csv")) > 0


def test_a_poorly_fitting_code_encoder_is_flagged():
    table = pd.DataFrame({"metric": ["encoder_r2", "encoder_r2", "mig"], "variant": ["sefa", "dplase", "sefa"],
                          "mean": [0.31, 0.9, 0.2]})
    note = compare.poor_encoder_note(table)
    assert len(note) == 2 and "sefa (0.31)" in note[0] and "dplase" not in note[0]
    assert compare.poor_encoder_note(table[table["variant"] == "dplase"]) == []


def test_nan_metrics_are_explained_not_averaged(frame):
    reason = "1 factor: MIG, DCI and modularity need at least 2 factors"
    extra = make_rows({"run_id": "m2-sefa-nan", "model": "m2", "dataset": "shapes", "method": "sefa",
                       "params": json.dumps({"walk": "linear"}), "seed": 0, "model_seed": 0},
                      [{"metric": "dci_disentanglement", "value": math.nan, "n_samples": 50, "note": reason}])
    data = pd.concat([frame, extra], ignore_index=True)
    table = compare.comparison_table(data)
    assert "dci_disentanglement" not in set(table["metric"])  # a NaN is never a number in the table
    notes = compare.undefined_notes(data)
    assert notes == {("shapes", "m2"): [f"dci_disentanglement: NaN ({reason})"]}
    paired = compare.paired_differences(data, n_boot=200)
    text = compare.comparison_markdown(table, paired, "dplase (norm)", undefined=notes)
    m2 = text.split("## shapes / m2")[1]
    assert f"**Flag:** dci_disentanglement: NaN ({reason})" in m2
    assert "NaN" not in text.split("## shapes / m2")[0]  # only the model that has the NaN rows says so
    assert reason in compare.comparison_html(table, paired, "dplase (norm)", undefined=notes)


def test_extrapolated_steps_are_not_the_summary(frame):
    base = frame[frame["run_id"] == "m1-oracle-linear-0-0-None"]
    far = base[(base["metric"] == "fid") & (base["step"] == 2.0)].assign(step=3.0, value=1e6, extrapolated=True)
    inside = base.assign(extrapolated=False)  # every measured step inside the trained range
    before = compare.summary_metrics(base)
    after = compare.summary_metrics(pd.concat([inside, far], ignore_index=True))
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))


def test_instrument_rows_are_not_tested_and_do_not_enlarge_the_holm_family(frame):
    extra = []
    for run_id, part in frame.groupby("run_id"):
        first = part.iloc[0]
        extra.append(make_rows({c: first[c] for c in ("run_id", "model", "dataset", "method", "params", "seed",
                                                      "model_seed")},
                               [{"metric": "predictor_heldout_r2.scale", "value": 0.9, "n_samples": 10},
                                {"metric": "convergence.loss", "value": 0.01 * len(run_id), "n_samples": None}]))
    data = pd.concat([frame, *extra], ignore_index=True)
    plain = compare.paired_differences(frame, n_boot=200)
    more = compare.paired_differences(data, n_boot=200)
    assert not more["metric"].str.startswith(compare.NOT_COMPARED).any()
    pd.testing.assert_frame_equal(plain, more)  # the same tests, the same Holm adjustment
    assert "convergence.loss" in set(compare.comparison_table(data)["metric"])  # still summarised per variant
