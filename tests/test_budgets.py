"""Calibrated baselines: the budget rules of the iterative methods, their convergence records, and the one step
range (training, Voynov's shifts, RCA and the evaluation grid) with extrapolation only on request."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_evaluation_setup

from dplase.generators.dcgan import DCGANAdapter
from dplase.generators.planted import build_planted
from dplase.methods import FitContext, convergence_record, fit, relative_change
from dplase.methods.dplase import DPLaSEConfig, dplase_budget
from dplase.methods.ganspace import ganspace_samples
from dplase.methods.voynov import VoynovConfig, voynov_budget
from dplase.metrics.evaluate import EvalConfig, convergence_rows, evaluate, results_frame
from dplase.priors import GaussianPrior
from dplase.walks.steps import MIN_SHIFT_FRACTION, is_extrapolated, max_step, shift_range, trained_range


@pytest.fixture(scope="module")
def tiny_gan() -> DCGANAdapter:
    return DCGANAdapter.build({"z_dim": 16, "image_size": 32, "channels": 1, "width": 8}, seed=0)


# ---------------------------------------------------------------- convergence record


def test_relative_change_matches_a_hand_computation():
    values = [10.0 - 0.1 * i for i in range(40)]  # 40 steps: the last 5% are 2 steps, the 5% before 2 more
    # before = mean(6.4, 6.3) = 6.35, last = mean(6.2, 6.1) = 6.15
    assert relative_change(values) == pytest.approx(0.2 / 6.35, rel=1e-12)
    assert relative_change([4.0, 2.0, 3.0]) == pytest.approx(0.5)  # 3 steps: one value each, |3 - 2| / 2
    assert math.isnan(relative_change([1.0])) and math.isnan(relative_change([0.0, 1.0]))
    assert relative_change([5.0] * 200) == 0.0  # a flat loss has converged


def test_convergence_record_sums_the_total_and_skips_non_losses():
    history = []
    for step in range(20):  # 20 steps: one value in each half
        history += [(step, "label", 2.0 - 0.05 * step), (step, "shift", 1.0), (step, "batch_accuracy", 0.5)]
    record = convergence_record(history, total=("label", "shift"))
    assert set(record) == {"label", "shift", "loss"}
    # label: 1.05 (step 18) -> 1.10 ... the 5% before is step 18 (1.10), the last 5% step 19 (1.05)
    assert float(record["label"]) == pytest.approx(0.05 / 1.10)
    assert float(record["loss"]) == pytest.approx(0.05 / 2.10)
    assert float(record["shift"]) == 0.0
    assert all(v.dtype == torch.float64 and v.ndim == 0 for v in record.values())


# ---------------------------------------------------------------- budget rules


def test_budget_rules_scale_with_z_dim_and_explicit_values_win():
    assert voynov_budget(16) == {"steps": 800, "directions_lr": 5 / 800, "lr": 1e-3}
    assert voynov_budget(512)["steps"] == 25_600
    assert dplase_budget(16) == {"steps": 800, "lr": pytest.approx(5e-3)}
    assert dplase_budget(512)["lr"] == pytest.approx(1.5625e-4)  # near the authors' 1e-4 at d = 512
    assert ganspace_samples(16, 5) == 16_000 and ganspace_samples(512, 10) == 512_000
    gen = DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 4}, seed=0)
    auto = VoynovConfig(k=2).resolved(gen)
    t = max_step(gen.prior)
    assert (auto.steps, auto.directions_lr, auto.lr) == (400, 5 / 400, 1e-3)
    assert auto.shift_scale == pytest.approx(t) and auto.min_shift == pytest.approx(t / 12)
    given = VoynovConfig(k=2, steps=7, lr=1e-4, shift_scale=6.0).resolved(gen)
    # an explicit steps keeps the rule's lr (lr is a function of z_dim only); an explicit scale its T/12 minimum
    assert (given.steps, given.directions_lr, given.lr) == (7, 5 / 400, 1e-4)
    assert (given.shift_scale, given.min_shift) == (6.0, 0.5)
    assert DPLaSEConfig().resolved(8).steps == 400 and DPLaSEConfig(steps=3, lr=0.1).resolved(8).lr == 0.1


def test_fits_record_their_resolved_budget_trained_range_and_convergence(tiny_gan):
    quick = {"k": 3, "steps": 4, "batch_size": 8, "n_eval": 32, "reconstructor_width": 4}
    voynov = fit("voynov", tiny_gan, quick, FitContext(seed=0, progress=False))
    t = max_step(tiny_gan.prior)
    assert voynov.config["steps"] == 4 and voynov.config["directions_lr"] == pytest.approx(5 / 800)
    assert voynov.config["shift_scale"] == pytest.approx(t)
    assert voynov.config["min_shift"] == pytest.approx(MIN_SHIFT_FRACTION * t)
    assert float(voynov.extra["max_step"]) == pytest.approx(t) == trained_range(voynov, tiny_gan.prior)
    assert set(voynov.extra["convergence"]) == {"label", "shift", "loss"}
    dplase = fit("dplase", tiny_gan, {"k": 2, "walk": "linear", "steps": 3, "batch_size": 4, "score_samples": 4},
                 FitContext(seed=0, progress=False))
    assert dplase.config["lr"] == pytest.approx(5e-3) and dplase.config["steps"] == 3
    assert {"loss", "variation", "cross", "l_var", "ortho"} <= set(dplase.extra["convergence"])
    ganspace = fit("ganspace", tiny_gan, {"k": 2, "batch_size": 1000, "n_regression": 200},
                   FitContext(seed=0, progress=False))
    assert ganspace.config["n_samples"] == 16_000 and "convergence" not in ganspace.extra
    for ds in (voynov, dplase):
        rows = convergence_rows(ds)
        assert rows and all(r["metric"].startswith("convergence.") and "step" not in r for r in rows)
        assert {r["metric"] for r in rows} >= {"convergence.loss"}
    assert convergence_rows(fit("coordinate", tiny_gan, {"k": 2})) == []


# ---------------------------------------------------------------- the one step range


def test_one_step_range_for_shifts_and_the_evaluation_grid():
    prior = GaussianPrior(dim=16)
    t = max_step(prior)
    shifts = shift_range(prior)
    assert shifts.max_step == t and shifts.min_step == pytest.approx(t * 0.5 / 6)
    grid = EvalConfig().step_grid(prior)
    assert grid.max() == pytest.approx(t, abs=1e-6) and grid.min() == pytest.approx(-t, abs=1e-6) and 0.0 in grid
    assert EvalConfig(max_eps=3.0).step_grid().max() == 3.0  # explicit: extrapolation on request
    with pytest.raises(ValueError, match="pass the prior"):
        EvalConfig().step_grid()
    with pytest.raises(ValueError, match="max_eps"):
        EvalConfig(max_eps=0.0)
    assert not is_extrapolated(round(t, 6), t) and is_extrapolated(t + 1e-3, t) and is_extrapolated(-3.0, t)


def test_evaluation_marks_extrapolated_steps_and_writes_convergence_rows():
    data, gen, predictor, _ = tiny_evaluation_setup()
    directions = fit("voynov", gen, {"k": 3, "steps": 3, "batch_size": 8, "n_eval": 32, "reconstructor_width": 4},
                     FitContext(seed=0, progress=False))
    t = max_step(gen.prior)  # 1.25 at z_dim 8
    base = {"metrics": ("density",), "n_samples": 4, "n_steps": 5, "walks": ("linear",), "progress": False}
    rows = evaluate(gen, directions, predictor, data, EvalConfig(**base))
    stepped = [r for r in rows if r.get("step") is not None]
    assert stepped and max(abs(r["step"]) for r in stepped) == pytest.approx(t, abs=1e-6)
    assert all(r["extrapolated"] is False for r in stepped)
    conv = [r for r in rows if r["metric"].startswith("convergence.")]
    assert {r["metric"] for r in conv} == {"convergence.label", "convergence.shift", "convergence.loss"}
    frame = results_frame(rows, gen, directions, "shapes", "run")
    assert frame.loc[frame["metric"] == "convergence.loss", "step"].isna().all()

    wide = evaluate(gen, directions, predictor, data, EvalConfig(**base, max_eps=3.0))
    stepped = [r for r in wide if r.get("step") is not None]
    assert {r["step"] for r in stepped} == {-3.0, -1.5, 1.5, 3.0}
    assert all(r["extrapolated"] is (abs(r["step"]) > t) for r in stepped)
    assert all(r["extrapolated"] for r in stepped)  # T = 1.25 < 1.5


# ---------------------------------------------------------------- Voynov leaves the axes


@pytest.mark.slow
def test_voynov_at_its_default_budget_leaves_the_coordinate_axes():
    """As published, A starts at 0.001 randn: the directions start on the coordinate axes (|cos| ~ 1). At the
    default budget (`voynov_budget`: 400 steps at z_dim 8) and on the one step range they must move away: the
    planted directions lie at most 0.8 from every axis. Before the rule (lr 1e-4, 300 steps) each direction
    kept |cos| 0.996-0.998 with an axis; measured here: mean 0.73 (seed 0)."""
    gen = build_planted(z_dim=8, image_size=32, seed=0)
    ds = fit("voynov", gen, {"k": 4, "n_eval": 64}, FitContext(seed=0, progress=False))
    assert ds.config["steps"] == 400
    nearest_axis = ds.directions.abs().max(dim=1).values
    assert float(nearest_axis.mean()) < 0.9, nearest_axis
    torch.testing.assert_close(ds.directions @ ds.directions.T, torch.eye(4), atol=1e-5, rtol=0)
