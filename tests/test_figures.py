"""Figures from synthetic Parquet tables built with the agreed results schema (dplase.plots.figures)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dplase.jobs import LOSS_COLUMNS, write_losses
from dplase.plots import figures
from dplase.results import make_rows, write_results

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
    if figures.FIGURES[name][1] == "metrics":
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
