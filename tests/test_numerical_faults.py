"""Numerical faults: a NaN/Inf in a loss or in a gradient stops training with a message naming the step and
the term, before the optimiser step, and leaves the last good checkpoint intact and resumable."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dplase.artifacts import load_artifact, sha256_file
from dplase.cli import main
from dplase.generators.dcgan import DCGANGenerator
from dplase.training.gan import output_paths, train_gan
from dplase.training.loop import LoopState, NonFiniteLossError, check_finite_update, run_loop

#: the tiny GAN (conftest.tiny_gan_config) runs 6 steps and checkpoints after steps 2 and 5
FAULT_STEP = 4


@pytest.fixture
def faulty_generator(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Make the training generator's step FAULT_STEP go wrong: ``mode`` "output" (its images are NaN, so the
    loss is NaN), "gradient" (images fine, their gradient NaN: a finite loss with a broken gradient) or None."""
    fault = {"mode": None, "step": FAULT_STEP, "calls": 0}
    forward = DCGANGenerator.forward

    def faulty(self: DCGANGenerator, z: torch.Tensor) -> torch.Tensor:
        out = forward(self, z)
        if not self.training:  # the EMA copy and the saved generator: never faulty
            return out
        step, fault["calls"] = fault["calls"], fault["calls"] + 1  # one training forward per step
        if step != fault["step"] or fault["mode"] is None:
            return out
        if fault["mode"] == "output":
            return out * math.nan
        out = out.clone()
        out.register_hook(lambda grad: torch.full_like(grad, math.nan))
        return out

    monkeypatch.setattr(DCGANGenerator, "forward", faulty)
    yield fault


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_artifact(path, kind="generator")[0]["generator"]


@pytest.mark.parametrize(("mode", "message"), [
    ("output", rf"loss term 'd_loss' is nan at step {FAULT_STEP}; stopping before the optimiser step"),
    ("gradient", rf"gradient of loss term 'g_loss' is nan at step {FAULT_STEP} \(the loss itself is finite\)"),
])
def test_nan_stops_training_and_the_last_good_checkpoint_resumes(
    tmp_path: Path, tiny_gan_config, shapes32, faulty_generator: dict, mode: str, message: str,
) -> None:
    config = tiny_gan_config()  # 6 steps, checkpoint every 3
    reference = train_gan(config, tmp_path / "ref.pt", progress=False, dataset=shapes32)

    faulty_generator.update(mode=mode, calls=0)
    out = tmp_path / "run.pt"
    ckpt = output_paths(out)["ckpt"]
    with pytest.raises(NonFiniteLossError, match=message) as info:
        train_gan(config, out, progress=False, dataset=shapes32)
    assert f"the last good checkpoint {ckpt} (step 3) is kept" in str(info.value)
    assert not out.exists()
    tensors, _ = load_artifact(ckpt, kind="gan-checkpoint")
    assert tensors["step"] == 3  # written before the fault, never overwritten after it
    for name, module in tensors["objects"].items():
        if "opt" not in name:
            assert all(torch.isfinite(t).all() for t in module.values()), name

    faulty_generator.update(mode=None, calls=3)  # the fault is gone; the run resumes at step 3
    resumed: list[int] = []
    train_gan(config, out, progress=False, dataset=shapes32, on_step=resumed.append)
    assert resumed == [3, 4, 5]
    reference_weights, weights = _weights(reference), _weights(out)
    assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights)


def test_nan_before_the_first_checkpoint_leaves_nothing(tmp_path: Path, tiny_gan_config, shapes32,
                                                        faulty_generator: dict) -> None:
    faulty_generator.update(mode="output", step=1)
    out = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match=r"'d_loss' is nan at step 1; .*no checkpoint was written yet"):
        train_gan(tiny_gan_config(), out, progress=False, dataset=shapes32)
    assert not out.exists() and not output_paths(out)["ckpt"].exists()


def test_cli_reports_the_fault_in_one_line_with_exit_code_1(tmp_path: Path, faulty_generator: dict) -> None:
    faulty_generator.update(mode="gradient", step=1)
    out = tmp_path / "g.pt"
    result = CliRunner().invoke(main, ["train-gan", "--dataset", "shapes", "--image-size", "32", "--steps", "3",
                                       "--batch-size", "4", "--width", "4", "--z-dim", "5", "--out", str(out),
                                       "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Error: gradient of loss term 'g_loss' is nan at step 1" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_check_finite_update_names_the_term_of_a_loss_or_gradient() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    loss = (weight * torch.tensor([1.0, math.inf, 1.0])).sum()
    with pytest.raises(NonFiniteLossError, match="loss term 'fit' is inf at step 7"):
        check_finite_update({"fit": loss, "reg": weight.sum()}, [weight], 7)
    weight.grad = torch.tensor([0.0, math.nan, 0.0])
    with pytest.raises(NonFiniteLossError, match=r"gradient of loss term 'fit \+ reg' is nan at step 2"):
        check_finite_update({"fit": weight.sum(), "reg": weight.sum()}, [weight], 2)
    weight.grad = torch.tensor([0.0, 1e30, -1e30])  # large but finite: no false alarm
    check_finite_update({"fit": weight.sum()}, [weight], 0)


def test_a_trainer_without_the_gradient_check_never_checkpoints_nan_weights(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 1)
    state = LoopState({"net": net})
    ckpt = tmp_path / "c.ckpt"

    def step_fn(step: int) -> dict[str, float]:
        if step == 4:  # a finite loss whose (unchecked) update broke the weights
            with torch.no_grad():
                net.weight.fill_(math.nan)
        return {"fit": 1.0}

    with pytest.raises(NonFiniteLossError, match=r"weights of 'net' became non-finite by step 6.*\(step 3\) is kept"):
        run_loop(total_steps=9, step_fn=step_fn, state=state, checkpoint_path=ckpt, checkpoint_every=3,
                 progress=False)
    stamp = sha256_file(ckpt)
    tensors, _ = load_artifact(ckpt, kind="checkpoint")
    assert tensors["step"] == 3 and torch.isfinite(tensors["objects"]["net"]["weight"]).all()
    fresh = LoopState({"net": torch.nn.Linear(2, 1)})
    run_loop(total_steps=9, step_fn=lambda step: {"fit": 1.0}, state=fresh, checkpoint_path=ckpt,
             checkpoint_every=3, progress=False)  # resumes from the intact step-3 checkpoint
    assert fresh.step == 9 and [h[0] for h in fresh.history] == list(range(9)) and sha256_file(ckpt) != stamp
