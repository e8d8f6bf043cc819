"""The evaluation walk ``masked``: a DirectionSet's own walk edited in one channel subspace, scored like any walk."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_evaluation_setup
from PIL import Image

from dplase.cli import main
from dplase.data import load_dataset
from dplase.directions import DirectionSet
from dplase.generators.planted import FACTORS
from dplase.generators.registry import save_generator
from dplase.jobs import plot_traversal_job
from dplase.methods import FitContext, fit, make_config
from dplase.metrics.context import ImageMetric
from dplase.metrics.evaluate import EvalConfig, evaluate, make_context, results_frame, run_walks
from dplase.metrics.predictor import FactorPredictor
from dplase.plots.masked import save_masked_traversal
from dplase.subspace import channel_change, choose_group, group_shares
from dplase.walks import EVAL_WALKS, WALKS, apply_walk, default_walks, make_walk, walk_for

ARCH = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}
CHANNELS = 32  # block0 of the tiny DCGAN (width 8 * 4)


@pytest.fixture(scope="module")
def tiny():
    return tiny_evaluation_setup({"k": 3})


@pytest.fixture(scope="module")
def fitted(tiny):
    """DP-LaSE with channel subspaces on the tiny DCGAN (3 groups, a few steps: ~3 s)."""
    _, gen, _, _ = tiny
    config = make_config("dplase", k=3, steps=6, batch_size=4, score_samples=8, subspace=True, subspace_steps=2,
                         subspace_groups=3)
    return fit("dplase", gen, config, FitContext(seed=0, progress=False))


@pytest.fixture(scope="module")
def planted():
    return load_dataset("planted", image_size=32, size=500)


def with_masks(directions: DirectionSet, masks: torch.Tensor, **changes) -> DirectionSet:
    return replace(directions, channel_masks=masks, **changes)


class Recorder(ImageMetric):
    """Keeps every image the walk loop shows it."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.images: dict[str, torch.Tensor] = {}

    def start(self, images: torch.Tensor) -> None:
        self.images["start"] = images

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        self.images[f"{walk}/{j}"] = images

    def rows(self) -> list:
        return []


# ----------------------------------------------------------------------------------------------- registry


def test_masked_is_an_evaluation_walk_only_and_a_default_only_with_masks(tiny):
    _, _, _, directions = tiny
    assert "masked" in EVAL_WALKS and "masked" not in WALKS  # never a training walk or a DirectionSet's walk
    assert EVAL_WALKS["masked"]["needs_masks"] and EVAL_WALKS["masked"]["feature_edit"]
    assert default_walks(directions) == ["linear", "norm"]
    masked = with_masks(directions, torch.ones(3, 2, CHANNELS))
    assert default_walks(masked) == ["linear", "norm", "masked"]
    assert default_walks(replace(masked, extra={"correction": torch.zeros(1)})) == ["linear", "norm", "learned",
                                                                                    "masked"]
    with pytest.raises(ValueError, match="needs channel masks"):
        walk_for(directions, "masked")
    for call in (lambda: make_walk("masked"), lambda: apply_walk("masked", torch.zeros(1, 8), torch.ones(8), 1.0)):
        with pytest.raises(ValueError, match="feature-space edit, not a latent walk"):
            call()
    # the latent of a masked edit is the set's own walk
    z0, gamma = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), masked.directions[0]
    assert torch.equal(walk_for(masked, "masked")(z0, gamma, 1.5), walk_for(masked)(z0, gamma, 1.5))
    with pytest.raises(ValueError, match="unknown evaluation walk 'diagonal'"):
        EvalConfig(walks=("diagonal",))


def test_evaluating_masked_without_masks_fails_before_the_loop(tiny):
    data, gen, predictor, directions = tiny
    with pytest.raises(ValueError, match="walk 'masked' needs channel masks"):
        evaluate(gen, directions, predictor, data, EvalConfig(walks=("masked",), n_samples=2, progress=False))


# ------------------------------------------------------------------------------------------- the edit


def test_all_ones_mask_gives_the_walk_and_all_zeros_the_start_in_the_evaluation_loop(tiny):
    data, gen, predictor, directions = tiny
    config = EvalConfig(metrics=(), walks=("linear", "masked"), n_samples=4, n_steps=5, progress=False)
    seen = {}
    for name, fill in (("ones", 1.0), ("zeros", 0.0)):
        masked = with_masks(directions, torch.full((3, 2, CHANNELS), fill))
        ctx = make_context(gen, masked, predictor, data, config)
        recorder = Recorder(ctx)
        run_walks(ctx, [recorder])
        seen[name] = (ctx, recorder.images)
    ctx, images = seen["ones"]
    for j in range(3):
        assert torch.equal(images[f"masked/{j}"], images[f"linear/{j}"])
        assert torch.equal(ctx.walked[("masked", j)], ctx.walked[("linear", j)])  # its latent: the set's walk
    ctx, images = seen["zeros"]
    steps = len(ctx.steps)
    for j in range(3):
        start = images["start"][ctx.block(j)].repeat(steps, 1, 1, 1)
        assert torch.equal(images[f"masked/{j}"], start)
        assert not torch.allclose(images[f"linear/{j}"], start)


def test_group_rule_picks_the_group_that_carries_the_planted_change(planted):
    # hand values: shares are each group's part of the total; ties go to the first group; no change: NaN
    masks = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    shares = group_shares(masks, torch.tensor([1.0, 1.0, 6.0, 2.0]))
    assert shares.tolist() == pytest.approx([0.2, 0.6, 0.2])
    assert choose_group(masks, torch.tensor([1.0, 1.0, 6.0, 2.0])) == (1, pytest.approx(0.6))
    assert choose_group(masks, torch.tensor([1.0, 0.0, 0.0, 1.0]))[0] == 0
    group, share = choose_group(masks, torch.zeros(4))
    assert group == 0 and math.isnan(share)
    # planted, split at the factor codes [pos_x, pos_y, scale, orientation, shape, fidelity]: the norm walk along
    # the planted scale direction changes the scale code (channel 2) and keeps log p0, so fidelity, fixed
    gen = planted.generator
    q = gen.planted_directions()[FACTORS.index("scale")]
    z0 = gen.sample_latents(32, 0)
    change = channel_change(gen, "factors", z0, q, [-1.5, -0.75, 0.75, 1.5], make_walk("norm"))
    groups = torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    group, share = choose_group(groups, change)
    # measured share 0.98: the norm rescale moves every other code a little
    assert group == 1 and share > 0.9
    assert int(torch.argmax(change)) == 2 and float(change[5]) < 1e-10


# ------------------------------------------------------------------------------------------- evaluation


def test_evaluation_scores_masked_with_every_image_metric(tiny, fitted):
    data, gen, predictor, _ = tiny
    assert fitted.walk == "norm" and fitted.channel_masks.shape == (3, 3, CHANNELS)
    config = EvalConfig(metrics=("attr", "fid", "density", "rca"), n_samples=6, n_steps=5, n_real=40, rca_steps=3,
                        rca_test=16, progress=False)
    rows = evaluate(gen, fitted, predictor, data, config)
    masked = [r for r in rows if r.get("walk") == "masked"]
    names = {r["metric"] for r in masked}
    assert {"attr_top_share", "fid", "attr_change.pos_x", "masked_group", "masked_group_share"} <= names
    fid_steps = {r["step"] for r in masked if r["metric"] == "fid"}
    assert len(fid_steps) == 5 and 0.0 in fid_steps  # one FID per step, as for every walk
    fid = {(r["walk"], r["step"]): r["value"] for r in rows if r["metric"] == "fid"}
    assert fid[("masked", 0.0)] == fid[("norm", 0.0)]  # step 0: the start images of every walk
    assert any(fid[("masked", s)] != fid[("norm", s)] for (w, s) in fid if w == "masked" and s != 0.0)
    # density: the masked edit's latent is its underlying (norm) walk's, so its rows repeat that walk's
    density = {(r["walk"], r["direction"], r["step"]): r for r in rows if r["metric"] == "abs_logp_drift"}
    for (walk, j, step), row in density.items():
        if walk == "masked":
            assert row["value"] == density[("norm", j, step)]["value"] and "underlying norm walk" in row["note"]
    rca = {r["walk"]: r for r in rows if r["metric"] == "rca"}
    assert math.isnan(rca["masked"]["value"]) and "not measured" in rca["masked"]["note"]
    assert math.isfinite(rca["norm"]["value"])
    for r in masked:
        if r["metric"] == "masked_group":
            assert r["value"] in (0.0, 1.0, 2.0) and "layer block0" in r["note"]
        if r["metric"] == "masked_group_share":
            assert 1 / 3 - 1e-9 <= r["value"] <= 1.0  # the largest of 3 shares that sum to 1
    frame = results_frame(rows, gen, fitted, "shapes", "run-m", config=config)
    assert "masked" in set(frame["walk"])


def test_exact_metric_scores_masked_edits_from_their_features(planted):
    gen = planted.generator
    torch.manual_seed(0)
    predictor = FactorPredictor(1, 32, planted.factor_specs, width=8, feature_dim=16)
    oracle = fit("oracle", gen, {"k": 5})
    # split at the codes, one channel per group: the masked edit of q_i moves code i only
    singletons = torch.eye(6).expand(5, 6, 6).clone()
    directions = with_masks(oracle, singletons, layer="factors", walk="linear")
    config = EvalConfig(metrics=("exact",), walks=("linear", "masked"), n_samples=8, n_steps=5, n_real=20,
                        n_mig=60, n_dci_train=40, n_dci_test=20, dci_importance="lasso", progress=False)
    rows = evaluate(gen, directions, predictor, planted, config)
    value = {(r.get("walk"), r.get("direction"), r["metric"]): r["value"] for r in rows if r.get("step") is None}
    for j, factor in enumerate(FACTORS):
        assert value[("masked", j, "masked_group")] == j
        target = f"attr_exact.{factor}"
        assert value[("masked", j, target)] == pytest.approx(value[("linear", j, target)])
        others = [value[("masked", j, f"attr_exact.{f}")] for f in FACTORS if f != factor]
        assert max(others) == 0.0 and value[("masked", j, "attr_exact.fidelity")] == 0.0
        assert value[("linear", j, "attr_exact.fidelity")] > 0.01  # the linear walk leaves the typical set
    # at the render maps the generator cannot tell exact factors from features: one NaN row with the reason
    render = with_masks(oracle, torch.eye(2).expand(5, 2, 2).clone(), layer="render", walk="linear")
    rows = evaluate(gen, render, predictor, planted, config)
    masked = [r for r in rows if r.get("walk") == "masked" and r["metric"].startswith("attr_exact")]
    assert len(masked) == 1 and math.isnan(masked[0]["value"]) and "layer render" in masked[0]["note"]


# ----------------------------------------------------------------------------------------------- figure


def test_masked_traversal_figure_is_written(tmp_path, tiny, fitted):
    _, gen, _, _ = tiny
    path, group, share = save_masked_traversal(tmp_path / "m.png", gen, fitted, walk_for(fitted), 1, 5, 1.5,
                                               n_starts=2)
    assert 0 <= group < 3 and 0 < share <= 1
    with Image.open(path) as image:
        image.verify()
    gen_path = tmp_path / "g.pt"
    save_generator(gen_path, gen.net, "dcgan", ARCH, gen.prior.to_config(), {"name": "tiny"})
    ds_path = fitted.save(tmp_path / "d.pt")
    out = tmp_path / "cli.png"
    result = CliRunner().invoke(main, ["traverse", "--generator", str(gen_path), "--directions", str(ds_path),
                                       "--out", str(out), "--masked", "0", "--n-steps", "5"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "PNG"
    grid = tmp_path / "traversal.png"
    plot_traversal_job(generator=gen_path, directions=ds_path, out=grid, n_steps=5, masked_beside=True)
    assert grid.exists() and (tmp_path / "traversal.masked.png").exists()
    result = CliRunner().invoke(main, ["traverse", "--generator", str(gen_path), "--directions", str(ds_path),
                                       "--out", str(out), "--masked", "7"])
    assert result.exit_code == 2 and "direction must be in 0..2" in result.output
