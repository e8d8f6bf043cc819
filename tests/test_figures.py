"""Figures from synthetic Parquet tables built with the agreed results schema (dplase.plots.figures), and the
figure registry (dplase.plots.FIGURES) that the CLI and the Snakemake rule plot_figure both read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dplase.plots import FIGURES, TABLES, figures
from dplase.results import LOSS_COLUMNS, make_rows, write_losses, write_results

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
FACTORS = ("shape", "scale", "pos_x")
STEPS = (-2.0, -1.0, 1.0, 2.0)
K = 3


def run_rows(method: str, train_walk: str, seed: int, rng: np.random.Generator, lam: float | None = None):
    """The rows one evaluated run produces (a subset of every metric group, plausible values)."""
    params = {"k": K, "walk": train_walk, **({"lambda": lam} if lam is not None else {})}
    run_id = f"{method}-{train_walk}-{seed}-{lam}"
    base = {"run_id": run_id, "model": "dcgan", "dataset": "shapes", "method": method, "params": json.dumps(params),
            "k": K, "lambda": lam, "zeta": None, "seed": seed}
    eval_walks = ["linear", "norm"] + (["learned"] if train_walk == "learned" else [])
    rows = []
    for walk in eval_walks:
        for step in (0.0, 1.0, 2.0):
            rows.append({"walk": walk, "step": step, "metric": "fid", "value": 10 + 5 * step + rng.normal(),
                         "n_samples": 32, "extractor": "domain"})
        for j in range(K):
            for step in STEPS:
                for name in ("abs_logp_drift", "outside_share"):
                    rows.append({"walk": walk, "direction": j, "step": step, "metric": name,
                                 "value": abs(step) * (0.1 if walk != "linear" else 1.0) + rng.uniform(0, 0.01),
                                 "n_samples": 16})
            for f, factor in enumerate(FACTORS):
                rows.append({"walk": walk, "direction": j, "metric": f"attr_change.{factor}",
                             "value": 1.0 if f == j else 0.1 * seed, "n_samples": 64})
            rows.append({"walk": walk, "direction": j, "metric": "attr_top_share", "value": 0.9, "n_samples": 64})
        rows.append({"walk": walk, "metric": "attr_top_share", "value": 0.8, "n_samples": 192})
        rows.append({"walk": walk, "metric": "rca", "value": 0.5 + 0.1 * seed, "n_samples": 100})
    rows.append({"metric": "mig", "value": 0.2 + 0.01 * seed, "n_samples": 100})
    return make_rows(base, rows)


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = [run_rows("dplase", walk, seed, rng, lam) for walk in ("linear", "norm", "learned") for seed in (0, 1)
              for lam in (0.1, 1.0)]
    frames += [run_rows(m, "linear", 0, rng) for m in ("sefa", "random")]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def losses() -> pd.DataFrame:
    rows = []
    for source, method, walk, run_id in (("gan", "gan", None, None), ("discovery", "dplase", "norm", "dplase-1"),
                                          ("discovery", "voynov", "linear", "voynov-1")):
        for step in range(40):
            for term in ("a", "b"):
                rows.append({"source": source, "run_id": run_id, "model": "dcgan", "dataset": "shapes",
                             "method": method, "walk": walk, "seed": 0 if run_id else None, "step": step,
                             "term": f"{method}_{term}", "value": np.exp(-step / 10) * (1 if term == "a" else -1)})
    return pd.DataFrame(rows, columns=list(LOSS_COLUMNS))


def assert_png(path, min_side=200):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_side
        # a real drawing, not a blank canvas
        assert np.asarray(image.convert("L")).std() > 5


def test_variants_name_the_training_walk_only_where_it_varies(metrics):
    data = figures.prepare_metrics(metrics)
    assert set(data["variant"]) == {"dplase (linear)", "dplase (norm)", "dplase (learned)", "sefa", "random"}


def test_ablation_table_equals_an_independent_per_run_average(metrics):
    table = figures.ablation_table(metrics, ["fid", "abs_logp_drift", "attr_top_share", "mig", "rca"])
    assert set(table["method"]) == {"dplase"}  # baselines leave the ablation when DP-LaSE runs exist
    assert len(table) == 3 * 2 * 2 * 5  # walks x seeds x lambdas x metrics
    for (walk, seed, lam), expected_runs in [(("norm", 1, 1.0), 1), (("learned", 0, 0.1), 1)]:
        rid = f"dplase-{walk}-{seed}-{lam}"
        mine = metrics[metrics["run_id"] == rid]
        own = mine[mine["walk"] == walk]
        # FID: steps != 0 of the walk the run was trained with
        fid = own[(own["metric"] == "fid") & (own["step"] != 0)]["value"].mean()
        drift = own[own["metric"] == "abs_logp_drift"]["value"].mean()
        got = table[table["run_id"] == rid].set_index("metric")["value"]
        assert got["fid"] == pytest.approx(fid)
        assert got["abs_logp_drift"] == pytest.approx(drift)
        assert got["attr_top_share"] == pytest.approx(0.8)  # the run-level summary row, not the per-direction 0.9
        assert got["mig"] == pytest.approx(0.2 + 0.01 * seed)
        assert got["rca"] == pytest.approx(0.5 + 0.1 * seed)
        assert expected_runs == len(table[(table["run_id"] == rid) & (table["metric"] == "fid")])


def test_ablation_summary_is_over_replicates_with_scipy_intervals(metrics):
    from scipy import stats

    summary = figures.ablation_summary(figures.ablation_table(metrics, ["mig", "rca"]))
    mig = summary[(summary["metric"] == "mig") & (summary["train_walk"] == "norm")].iloc[0]
    # two replicates (seeds 0, 1); the two lambdas of one seed are one replicate, not two
    values = np.array([0.20, 0.21])
    low, high = stats.t.interval(0.95, df=1, loc=values.mean(), scale=stats.sem(values))
    assert mig["n_replicates"] == 2 and mig["mean"] == pytest.approx(values.mean())
    assert (mig["ci_low"], mig["ci_high"]) == pytest.approx((low, high))
    one = figures.ablation_summary(figures.ablation_table(metrics[metrics["seed"] == 0], ["rca"]))
    assert (one["n_replicates"] == 1).all() and one["ci_low"].isna().all()  # a CI over one replicate is none
    def error_bars(fig) -> int:
        return sum(c.__class__.__name__ == "ErrorbarContainer" for ax in fig.axes for c in ax.containers)

    assert error_bars(figures.ablation(metrics[metrics["seed"] == 0], ["rca"])) == 0
    assert error_bars(figures.ablation(metrics, ["rca"])) == 1


def test_ablation_without_dplase_uses_every_method(metrics):
    table = figures.ablation_table(metrics[metrics["method"] != "dplase"], ["rca"])
    assert sorted(table["method"]) == ["random", "sefa"]


def test_attribute_matrix_is_directions_x_factors_of_the_lowest_seed(metrics):
    matrices = figures.attribute_matrix(metrics)
    assert set(matrices) == {"dplase (linear)", "dplase (norm)", "dplase (learned)", "sefa", "random"}
    matrix = matrices["dplase (norm)"]
    assert list(matrix.index) == list(range(K)) and sorted(matrix.columns) == sorted(FACTORS)
    expected = np.eye(K)  # seed 0: 1 on the diagonal, 0.1 * seed = 0 elsewhere
    np.testing.assert_allclose(matrix[list(FACTORS)].to_numpy(), expected)


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_is_written_as_png_and_pdf(tmp_path, metrics, losses, name):
    table = tmp_path / "table.parquet"
    if figures.FIGURES[name]["table"] == "metrics":
        write_results(metrics, table)
    else:
        write_losses(losses, table)
    png = figures.draw_figure(name, table, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", dpi=60)
    assert_png(png)
    assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_fid_figure_has_a_line_per_variant_and_titles(metrics):
    fig = figures.fid_vs_step(metrics)
    ax = fig.axes[0]
    assert "FID" in ax.get_ylabel() and "domain" in ax.get_ylabel() and "step" in ax.get_xlabel()
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"dplase (norm)", "sefa", "random", "linear", "norm", "learned"} <= labels
    assert fig.get_suptitle()


@pytest.mark.parametrize("name", ["fid_vs_step", "density_vs_step", "attribute_change", "ablation"])
def test_a_table_without_the_metric_gives_a_labelled_placeholder(metrics, name):
    only_mig = metrics[metrics["metric"] == "mig"]
    fig = getattr(figures, name)(only_mig) if name != "ablation" else figures.ablation(only_mig, ["fid"])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no " in t for t in texts)


def test_unknown_figure_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown figure 'pie'; choose one of fid_vs_step"):
        figures.draw_figure("pie", tmp_path / "x.parquet", tmp_path / "x.png")


def test_plot_cli_draws_all_figures(tmp_path, metrics, losses):
    from dplase.cli import main

    write_results(metrics, tmp_path / "metrics.parquet")
    write_losses(losses, tmp_path / "losses.parquet")
    out = tmp_path / "figs"
    result = CliRunner().invoke(main, ["plot", "all", "--metrics", str(tmp_path / "metrics.parquet"), "--losses",
                                       str(tmp_path / "losses.parquet"), "--out-dir", str(out), "--dpi", "50"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{n}.png" for n in figures.FIGURES)
    missing = CliRunner().invoke(main, ["plot", "loss_curves", "--losses", str(tmp_path / "none.parquet")])
    assert missing.exit_code == 2 and "none.parquet does not exist" in missing.output


# ------------------------------------------------------------------------------------- the figure registry


def test_every_registered_figure_names_a_drawing_function_table_caption_and_category():
    assert figures.FIGURES is FIGURES  # one registry, re-exported by the drawing module
    for name, entry in FIGURES.items():
        assert callable(entry.load()) and entry.target.endswith(f":{name}")
        assert entry["table"] in TABLES
        caption = ROOT / "workflow/report" / entry["caption"]
        assert caption.is_file() and caption.read_text().strip(), caption
        assert re.fullmatch(r"\d+\. .+", entry["category"]), entry["category"]
    assert len({e["category"] for e in FIGURES.values()}) == len(FIGURES)  # one report section per figure


def test_the_registry_imports_no_plotting_library():
    """Snakemake imports dplase.plots on every parse: it must not pull matplotlib, seaborn, pandas or torch."""
    heavy = ("matplotlib", "seaborn", "pandas", "torch", "numpy")
    code = f"import sys, dplase.plots, dplase.cli.plot; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_choices_rule_constraint_and_localrules_come_from_the_registry():
    from dplase.cli.plot import plot

    assert list(plot.params[0].type.choices) == [*FIGURES, "all"]
    help_text = CliRunner().invoke(plot, ["--help"]).output
    assert "FIGURES: " + ", ".join(FIGURES) + ", or all" in " ".join(help_text.split())
    rules_text = (ROOT / "workflow/rules/plot.smk").read_text()
    assert re.findall(r"^rule (\w+):", rules_text, flags=re.MULTILINE) == ["plot_figure"]
    assert re.search(r"wildcard_constraints:\s+figure=\"\|\"\.join\(FIGURES\),", rules_text)
    assert "from dplase.plots import FIGURES" in rules_text
    # the figures run on the submitting node: the rule says so itself; the Snakefile names no old plot rule
    assert re.search(r"^rule plot_figure:(?:\n    .*|\n)*?\n    localrule: True\n", rules_text, flags=re.MULTILINE)
    assert not re.search(r"\bplot_(" + "|".join(FIGURES) + r")\b", (ROOT / "Snakefile").read_text())


#: a workflow of plot.smk alone: stub collect rules copy given tables, SWEEP gives the figure options
HARNESS = """
import shutil


class StubSweep:
    def path(self, name):
        return {{"metrics": "results/metrics.parquet", "all_losses": "results/losses.parquet"}}[name]

    def figure_options(self):
        return {{"dpi": 50}}


SWEEP = StubSweep()


rule collect_metrics:
    output:
        metrics="results/metrics.parquet",
    run:
        shutil.copy(config["metrics"], output.metrics)


rule collect_losses:
    output:
        losses="results/losses.parquet",
    run:
        shutil.copy(config["losses"], output.losses)


include: "{plot_smk}"
"""


@pytest.fixture
def harness(tmp_path, metrics, losses) -> Path:
    """A Snakemake workdir whose Snakefile includes the real workflow/rules/plot.smk."""
    write_results(metrics, tmp_path / "metrics.in.parquet")
    write_losses(losses, tmp_path / "losses.in.parquet")
    (tmp_path / "Snakefile").write_text(HARNESS.format(plot_smk=ROOT / "workflow/rules/plot.smk"))
    return tmp_path


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    config = ["--config", f"metrics={workdir / 'metrics.in.parquet'}", f"losses={workdir / 'losses.in.parquet'}"]
    return subprocess.run([SNAKEMAKE, "--cores", "1", *args, *config], cwd=workdir, capture_output=True, text=True,
                          timeout=600)


def figure_targets() -> list[str]:
    """What the workflow's default target asks of plot_figure: both files of every registered figure."""
    return [f"results/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]


def test_plot_rule_makes_exactly_the_registered_figures_from_their_tables(harness):
    result = snakemake(harness, "--dry-run", *figure_targets())
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^plot_figure\s+{len(FIGURES)}\s*$", result.stdout, flags=re.MULTILINE)
    jobs = re.findall(r"^rule plot_figure:\n    input: (\S+)\n    output: results/figures/(\w+)\.png, "
                      r"results/figures/\2\.pdf\n    log: results/logs/plot_figure/\2\.log\n", result.stdout,
                      flags=re.MULTILINE)
    assert sorted(name for _, name in jobs) == sorted(FIGURES)
    for table, name in jobs:
        assert table == f"results/{FIGURES[name]['table']}.parquet"
    # the wildcard constraint admits nothing else
    unknown = snakemake(harness, "--dry-run", "results/figures/pie.png")
    assert unknown.returncode != 0 and "MissingRuleException" in unknown.stderr + unknown.stdout


@pytest.mark.slow
def test_plot_rule_draws_every_figure_into_the_report_with_its_caption_and_category(harness):
    result = snakemake(harness, *figure_targets())
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (harness / "results/figures").glob("*.p??")) == sorted(
        f"{name}.{ext}" for name in FIGURES for ext in ("pdf", "png"))
    for name in FIGURES:
        assert_png(harness / f"results/figures/{name}.png", min_side=100)
        assert (harness / f"results/benchmarks/plot_figure/{name}.tsv").is_file()
    report = snakemake(harness, "--report", "report.html", *figure_targets())
    assert report.returncode == 0, report.stderr[-3000:]
    html = (harness / "report.html").read_text()
    # each figure in its own category, with its own caption (the text before the caption's first colon)
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    assert {c: sorted(f for files in sub.values() for f in files) for c, sub in categories.items()} == {
        e["category"]: [f"results/figures/{name}.png"] for name, e in FIGURES.items()}
    for name, entry in FIGURES.items():
        caption = re.search(rf'"results/figures/{name}\.png": \{{[^{{}}]*?"caption": "<p>([^"]*)"', html).group(1)
        title = (ROOT / "workflow/report" / entry["caption"]).read_text().split(":")[0]
        assert json.loads(f'"{caption}"').startswith(title + ":"), (name, caption[:80])
