"""The recovery figure and table (dplase.plots.recovery) on synthetic seeded results frames, and the traversal
grid that shows the oracle's matched planted direction beside each discovered one (dplase.plots.grids)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats

from dplase.directions import DirectionSet
from dplase.plots import FIGURES, recovery
from dplase.results import COLUMNS, make_rows

FACTORS = ("pos_x", "scale", "shape")
K = 4


def run_rows(model: str, method: str, walk: str, model_seed: int, seed: int, mean: float,
             lam: float | None = None) -> pd.DataFrame:
    """The rows the recovery metric writes for one run: the mean, one per factor, one leakage per direction."""
    params = {"k": K, "walk": walk, **({"lambda": lam} if lam is not None else {})}
    base = {"run_id": f"{model}-{method}-{walk}-{model_seed}-{seed}-{lam}", "model": model, "dataset": "planted",
            "method": method, "params": json.dumps(params), "k": K, "lambda": lam, "seed": seed}
    if "model_seed" in COLUMNS:
        base["model_seed"] = model_seed
    rows = [{"metric": "recovery", "value": mean, "n_samples": K}]
    rows += [{"metric": f"recovery.{f}", "value": mean - 0.1 * i, "n_samples": K} for i, f in enumerate(FACTORS)]
    rows += [{"direction": j, "metric": "null_leakage", "value": (1 - mean) * (j + 1) / K, "n_samples": 1}
             for j in range(K)]
    return make_rows(base, rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Two planted models; oracle (1 replicate), sefa (3 replicates), dplase with two walks and a lambda grid."""
    rng = np.random.default_rng(0)
    frames = []
    for model in ("planted-aligned", "planted-mixed"):
        frames.append(run_rows(model, "oracle", "linear", 0, 0, 1.0))
        frames += [run_rows(model, "sefa", "linear", ms, s, float(rng.uniform(0.5, 0.9)))
                   for ms, s in ((0, 0), (0, 1), (1, 0))]
        frames += [run_rows(model, "dplase", walk, 0, s, float(rng.uniform(0.3, 0.8)), lam)
                   for walk in ("linear", "norm") for s in (0, 1) for lam in (0.1, 1.0)]
        frames.append(run_rows(model, "random", "linear", 0, 0, 0.4))
    return pd.concat(frames, ignore_index=True)


def test_table_mean_and_t_interval_over_three_replicates(frame):
    table = recovery.recovery_table(frame)
    row = table[(table["model"] == "planted-mixed") & (table["variant"] == "sefa")].iloc[0]
    values = frame[(frame["model"] == "planted-mixed") & (frame["method"] == "sefa")
                   & (frame["metric"] == "recovery")]["value"].to_numpy()
    assert row["n_replicates"] == 3 and len(values) == 3
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert row["mean"] == pytest.approx(values.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert row["recovery.scale"] == pytest.approx(values.mean() - 0.1)
    assert row["null_leakage"] == pytest.approx(np.mean([(1 - v) * 2.5 / K for v in values]))


def test_one_replicate_has_no_interval_and_a_grid_is_pooled_within_a_replicate(frame):
    table = recovery.recovery_table(frame).set_index(["model", "variant"])
    oracle = table.loc[("planted-aligned", "oracle")]
    assert oracle["n_replicates"] == 1 and math.isnan(oracle["ci_low"]) and math.isnan(oracle["ci_high"])
    # dplase (norm): 2 seeds x 2 lambdas = 2 replicates, each the mean of its two lambda runs
    norm = table.loc[("planted-aligned", "dplase (norm)")]
    runs = frame[(frame["model"] == "planted-aligned") & (frame["method"] == "dplase") & (frame["metric"] == "recovery")
                 & frame["params"].str.contains('"norm"')]
    per_seed = runs.groupby("seed")["value"].mean().to_numpy()
    assert norm["n_replicates"] == 2 and norm["mean"] == pytest.approx(per_seed.mean())
    assert norm["walk"] == "norm" and norm["method"] == "dplase"


def test_rows_put_the_oracle_first_then_descending_mean(frame):
    table = recovery.recovery_table(frame)
    for _, part in table.groupby("model"):
        assert part["variant"].iloc[0] == "oracle"
        assert list(part["mean"].iloc[1:]) == sorted(part["mean"].iloc[1:], reverse=True)
    assert sorted(table["model"].unique()) == ["planted-aligned", "planted-mixed"]


def test_a_table_without_model_seed_counts_seeds_as_replicates(frame):
    table = recovery.recovery_table(frame.drop(columns="model_seed", errors="ignore"))
    sefa = table[(table["model"] == "planted-aligned") & (table["variant"] == "sefa")].iloc[0]
    assert sefa["n_replicates"] == 2  # (0, 0) and (1, 0) collapse into seed 0 once model_seed is unknown


def test_markdown_names_every_variant_with_its_interval(frame):
    text = recovery.recovery_markdown(frame)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| model | method | recovery (95% CI) | pos_x | scale | shape | null leakage |")
    assert len(lines) == 2 + len(recovery.recovery_table(frame))
    assert "oracle | 1.000 (n=1)" in text and "sefa | " in text and "[" in text
    assert "no recovery rows" in recovery.recovery_markdown(frame[frame["metric"] == "null"])


def test_figure_has_a_row_of_panels_per_model_and_the_reference_lines(frame):
    fig = recovery.recovery(frame, z_dim=16)
    assert len(fig.axes) >= 6  # 2 models x 3 panels (+ colour bars)
    bars = fig.axes[0]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels[0] == "oracle (n=1)" and "sefa (n=3)" in labels
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("E|cos| of one random pair" in t for t in legend) and any("oracle" in t for t in legend)
    from dplase.metrics.recovery import expected_abs_cosine

    assert any(np.allclose(line.get_xdata(), expected_abs_cosine(16)) for line in bars.get_lines())


def test_figure_without_recovery_rows_is_the_placeholder(frame, tmp_path):
    from dplase.plots.figures import save_figure

    fig = recovery.recovery(frame[frame["metric"] == "null"])
    assert any("no recovery rows" in t.get_text() for ax in fig.axes for t in ax.texts)
    with Image.open(save_figure(fig, tmp_path / "empty.png", dpi=60)) as image:
        assert min(image.size) >= 200


def test_figure_is_registered_with_a_caption():
    entry = FIGURES["recovery"]
    assert entry.load() is recovery.recovery and entry["table"] == "metrics"
    assert entry["caption"] == "recovery.rst"


# ------------------------------------------------------------------------------------------- traversals


def _directions(k: int, seed: int) -> DirectionSet:
    gammas = torch.linalg.qr(torch.randn(8, k, generator=torch.Generator().manual_seed(seed)))[0].T
    return DirectionSet(gammas, torch.ones(k), method="random", config={"k": k}, seed=seed)


@pytest.fixture(scope="module")
def planted_path(tmp_path_factory):
    from dplase.generators.planted import save_planted

    return save_planted(tmp_path_factory.mktemp("planted") / "p.pt", z_dim=8, image_size=32, seed=0)


def test_traversal_of_a_planted_generator_shows_the_matched_oracle(tmp_path, planted_path):
    from dplase.generators import load_generator
    from dplase.jobs import plot_traversal_job
    from dplase.plots.grids import oracle_traversal_images, planted_matches, save_traversal_grid, traversal_steps
    from dplase.walks import walk_for

    directions = _directions(7, 1)  # K = 7 > F = 5: two directions stay unmatched
    directions.save(tmp_path / "d.pt")
    png = plot_traversal_job(generator=planted_path, directions=tmp_path / "d.pt", out=tmp_path / "t.png",
                             n_steps=5, max_eps=2.0, k=7)
    adapter = load_generator(planted_path)
    plain = save_traversal_grid(tmp_path / "plain.png", adapter, directions, walk_for(directions), 5, 2.0, 7)[0]
    with Image.open(png) as with_oracle, Image.open(plain) as without:
        assert with_oracle.width > without.width + 5 * 64 and with_oracle.height == without.height
    matches = planted_matches(adapter, directions)
    assert sum(m is None for m in matches) == 2
    for j, match in enumerate(matches):
        if match is not None:  # sign-aligned: a positive cosine with its direction
            assert float(match[0] @ directions.directions[j]) == pytest.approx(match[2], abs=1e-5) and match[2] > 0
    images, labels = oracle_traversal_images(adapter, directions, walk_for(directions), traversal_steps(5, 2.0), 7)
    assert images.shape == (7 * 5, 1, 32, 32) and labels.count("no match") == 2
    unmatched = matches.index(None)
    assert torch.all(images[unmatched * 5:(unmatched + 1) * 5] == 0)  # a grey row
    assert any(label.startswith(tuple(adapter.factor_names)) and "|cos|" in label for label in labels)


def test_traversal_of_a_plain_generator_is_unchanged(tmp_path):
    from dplase.generators.dcgan import DCGANAdapter
    from dplase.generators.registry import save_generator
    from dplase.jobs import plot_traversal_job
    from dplase.plots.grids import save_traversal_grid
    from dplase.walks import walk_for

    arch = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}
    adapter = DCGANAdapter.build(arch, seed=0)
    save_generator(tmp_path / "g.pt", adapter.net, "dcgan", arch, adapter.prior.to_config(), {"name": "tiny"})
    directions = _directions(3, 0)
    directions.save(tmp_path / "d.pt")
    png = plot_traversal_job(generator=tmp_path / "g.pt", directions=tmp_path / "d.pt", out=tmp_path / "t.png",
                             n_steps=5, max_eps=2.0)
    plain = save_traversal_grid(tmp_path / "plain.png", adapter, directions, walk_for(directions), 5, 2.0)[0]
    assert png.read_bytes() == plain.read_bytes()  # the job adds nothing for a generator without a truth
    with Image.open(png) as image:
        assert image.size == (514, 278)  # the size the grid had before the oracle existed


def test_the_random_reference_needs_z_dim_from_the_call_or_the_table(frame):
    assert recovery.model_z_dims(frame) == {}
    fig = recovery.recovery(frame)
    assert any("z_dim not in the table" in t.get_text() for t in fig.axes[0].texts)
    with_param = frame.assign(params=frame["params"].str.replace('{"k"', '{"z_dim": 12, "k"', regex=False))
    assert recovery.model_z_dims(with_param) == {"planted-aligned": 12, "planted-mixed": 12}
