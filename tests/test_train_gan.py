"""GAN trainer: smoke run, determinism, resume-exactness after a crash or SIGTERM, CLI errors, sample grids."""

from __future__ import annotations

import math
import os
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dplase.artifacts import ArtifactError, load_artifact
from dplase.cli import main
from dplase.generators import generator_meta, load_generator
from dplase.training import Preempted
from dplase.training.gan import GanConfig, ema_decay_at, lr_at, output_paths, train_gan, update_ema


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_artifact(path, kind="generator")
    return tensors["generator"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_smoke_run_writes_artifact_grid_and_losses(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    config = tiny_gan_config()
    out = train_gan(config, tmp_path / "g.pt", progress=False, dataset=shapes32)
    paths = output_paths(out)
    assert not paths["ckpt"].exists()  # removed once the artifact is written

    losses = pd.read_parquet(paths["losses"])
    assert list(losses.columns) == ["step", "term", "value"]
    assert set(losses["term"]) == {"d_loss", "d_real", "d_fake", "r1", "g_loss"}
    assert sorted(losses.loc[losses.term == "g_loss", "step"]) == list(range(config.steps))
    assert sorted(losses.loc[losses.term == "r1", "step"]) == [0, 2, 4]  # lazy R1 every 2 steps
    assert losses["value"].map(math.isfinite).all()

    generator = load_generator(out)
    assert (generator.z_dim, generator.image_size, generator.channels) == (8, 32, 1)
    images = generator.generate(generator.sample_latents(5, seed=0))
    assert images.shape == (5, 1, 32, 32) and images.abs().max() <= 1

    meta = generator_meta(out)
    assert meta["config_hash"] == config.hash() and meta["config"]["lr"] == config.lr
    assert (meta["dataset"], meta["image_size"], meta["seed"], meta["steps"]) == ("shapes", 32, 0, 6)
    assert meta["prior"] == {"name": "gaussian", "dim": 8}
    assert meta["arch"] == {"z_dim": 8, "image_size": 32, "channels": 1, "width": 4, "pixelnorm": False,
                            "hidden": config.hidden}
    assert meta["package_version"] and len(meta["weights_sha256"]) == 64

    with Image.open(paths["grid"]) as grid:  # 8 x 8 cells of 32 px, upscaled x2, with padding
        assert grid.format == "PNG" and grid.size[0] > 8 * 64


def test_training_changes_the_weights_and_ema_differs(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    from dplase.training.gan import build_networks, generator_arch

    config = tiny_gan_config()
    out = train_gan(config, tmp_path / "g.pt", progress=False, dataset=shapes32)
    init, _ = build_networks(generator_arch(config, channels=1), config.seed)
    trained = _weights(out)
    assert not torch.equal(trained["project.weight"], init.state_dict()["project.weight"])


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    a = train_gan(tiny_gan_config(), tmp_path / "a.pt", progress=False, dataset=shapes32)
    b = train_gan(tiny_gan_config(), tmp_path / "b.pt", progress=False, dataset=shapes32)
    c = train_gan(tiny_gan_config(seed=1), tmp_path / "c.pt", progress=False, dataset=shapes32)
    _assert_same_weights(a, b)
    assert generator_meta(a)["weights_sha256"] == generator_meta(b)["weights_sha256"]
    assert generator_meta(a)["weights_sha256"] != generator_meta(c)["weights_sha256"]


class _Crash(RuntimeError):
    pass


def test_resume_after_crash_equals_uninterrupted_run(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    config = tiny_gan_config()  # 6 steps, checkpoint every 3
    reference = train_gan(config, tmp_path / "ref.pt", progress=False, dataset=shapes32)

    def crash(step: int) -> None:
        if step == 4:  # after the step-3 checkpoint; steps 3 and 4 are lost, as with kill -9
            raise _Crash

    out = tmp_path / "run.pt"
    with pytest.raises(_Crash):
        train_gan(config, out, progress=False, dataset=shapes32, on_step=crash)
    assert output_paths(out)["ckpt"].exists() and not out.exists()
    _, ckpt_meta = load_artifact(output_paths(out)["ckpt"], kind="gan-checkpoint")
    assert ckpt_meta["lr"] == config.lr

    train_gan(config, out, progress=False, dataset=shapes32)
    _assert_same_weights(out, reference)
    pd.testing.assert_frame_equal(pd.read_parquet(output_paths(out)["losses"]),
                                  pd.read_parquet(output_paths(reference)["losses"]))


def test_sigterm_checkpoints_and_resumes_exactly(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    config = tiny_gan_config(checkpoint_every=0)  # only the signal writes a checkpoint
    reference = train_gan(config, tmp_path / "ref.pt", progress=False, dataset=shapes32)

    def terminate(step: int) -> None:
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "run.pt"
    with pytest.raises(Preempted, match="pre-empted at step 2") as stop:
        train_gan(config, out, progress=False, dataset=shapes32, on_step=terminate)
    assert stop.value.code == 143
    tensors, _ = load_artifact(output_paths(out)["ckpt"], kind="gan-checkpoint")
    assert tensors["step"] == 2
    train_gan(config, out, progress=False, dataset=shapes32)
    _assert_same_weights(out, reference)


def test_checkpoint_of_another_config_is_not_continued(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    out = tmp_path / "g.pt"

    def crash(step: int) -> None:
        if step == 3:
            raise _Crash

    with pytest.raises(_Crash):
        train_gan(tiny_gan_config(), out, progress=False, dataset=shapes32, on_step=crash)
    with pytest.raises(ArtifactError, match=r"different configuration \(differs in: lr\)"):
        train_gan(tiny_gan_config(lr=1e-4), out, progress=False, dataset=shapes32)


def test_existing_artifact_of_same_config_is_kept(tmp_path: Path, tiny_gan_config, shapes32) -> None:
    out = train_gan(tiny_gan_config(), tmp_path / "g.pt", progress=False, dataset=shapes32)
    stamp = out.stat().st_mtime_ns
    calls = []
    train_gan(tiny_gan_config(checkpoint_every=1), out, progress=False, dataset=shapes32, on_step=calls.append)
    assert calls == [] and out.stat().st_mtime_ns == stamp  # bookkeeping fields do not change the hash
    train_gan(tiny_gan_config(steps=2), out, progress=False, dataset=shapes32, on_step=calls.append)
    assert calls == [0, 1] and generator_meta(out)["steps"] == 2


def test_ema_update_and_ramp() -> None:
    net, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.running_mean.fill_(5.0)
    update_ema(ema, net, decay=0.75)
    torch.testing.assert_close(ema.weight, torch.full((3,), 1.25))  # 0.75 * 1 + 0.25 * 2
    torch.testing.assert_close(ema.running_mean, torch.full((3,), 5.0))  # buffers copied
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_learning_rate_schedule() -> None:
    config = GanConfig(steps=10, lr=1e-3, lr_decay_start=0.6)
    rates = [lr_at(step, config) for step in range(10)]
    assert rates[:7] == [1e-3] * 7
    assert rates[7:] == pytest.approx([0.75e-3, 0.5e-3, 0.25e-3])  # linear to 0 at step 10
    assert {lr_at(step, GanConfig(steps=10, lr_decay_start=1.0)) for step in range(10)} == {GanConfig().lr}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"invalid GAN config value\(s\): batch_size=0, ema_decay=1.0"):
        GanConfig(batch_size=0, ema_decay=1.0)
    assert GanConfig().hash() == GanConfig(checkpoint_every=7, grid_every=9).hash() != GanConfig(seed=1).hash()


# ------------------------------------------------------------------------------------------------------- CLI


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_train_then_sample(tmp_path: Path) -> None:
    out = tmp_path / "g.pt"
    result = _run("train-gan", "--dataset", "shapes", "--image-size", "32", "--steps", "2", "--batch-size", "4",
                  "--width", "4", "--z-dim", "5", "--prior", "uniform", "--pixelnorm", "--out", str(out),
                  "--no-progress")
    assert result.exit_code == 0, result.output
    meta = generator_meta(out)
    assert meta["prior"]["name"] == "uniform" and meta["arch"]["pixelnorm"] is True
    assert out.with_suffix(".png").exists()

    grid = tmp_path / "samples.png"
    result = _run("sample", "--generator", str(out), "--out", str(grid), "--n", "6", "--seed", "3")
    assert result.exit_code == 0, result.output
    with Image.open(grid) as image:
        # 6 samples -> 3 per row, 2 rows of 32 px cells upscaled x2 with 4 px padding
        assert image.size == (3 * 68 + 4, 2 * 68 + 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], r"Invalid value for '--dataset': unknown dataset 'nope'; known datasets: shapes"),
        (["--dataset", "shapes", "--image-size", "48"], r"Invalid value for '--image-size': '48' is not one of"),
        (["--dataset", "shapes", "--data-option", "colour=red"],
         r"Invalid value for '--data-option': dataset 'shapes' got unknown option\(s\) colour"),
        (["--dataset", "shapes", "--steps", "-1"], r"Invalid value for '--steps': -1 is not in the range x>=0"),
        (["--dataset", "shapes", "--data-option", "oops"], r"Invalid value for '--data-option': expected KEY=VALUE"),
    ],
)
def test_cli_usage_errors_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    # a cheap run if the error were missed: later options override these
    cheap = ["--steps", "0", "--width", "4", "--image-size", "32", "--no-progress"]
    result = CliRunner().invoke(main, ["train-gan", "--out", str(tmp_path / "g.pt"), *cheap, *args])
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "g.pt").exists()


def test_cli_sample_rejects_a_broken_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["sample", "--generator", str(bad), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 2
    assert "Invalid value for '--generator'" in result.output and "not a readable dplase artifact" in result.output


def test_cli_help_has_runnable_examples() -> None:
    for command in ("train-gan", "sample"):
        result = _run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output and f"dplase {command} " in result.output


@pytest.mark.slow
def test_cli_sigterm_in_subprocess_exits_143_and_rerun_resumes(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    out = tmp_path / "g.pt"
    args = ["train-gan", "--dataset", "shapes", "--image-size", "32", "--width", "4", "--z-dim", "4",
            "--batch-size", "4", "--steps", "60", "--checkpoint-every", "1", "--threads", "1", "--no-progress",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", "from dplase.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = output_paths(out)["ckpt"]
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "pre-empted at step" in stderr and "rerun to resume" in stderr
    assert ckpt.exists() and not out.exists()

    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "resumed from checkpoint" in result.output
    assert out.exists() and not ckpt.exists() and generator_meta(out)["steps"] == 60


# ------------------------------------------------------------------------------------------------ image grids


def test_grid_array_places_tiles_and_maps_values() -> None:
    from dplase.plots import grid_array

    images = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # three 2x3 tiles
    grid = grid_array(images, nrow=2, pad=1, pad_value=7)
    assert grid.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1, 1)
    assert (grid[1:3, 1:4] == 0).all() and (grid[1:3, 5:8] == 128).all() and (grid[4:6, 1:4] == 255).all()
    assert (grid[4:6, 5:8] == 7).all() and (grid[0] == 7).all()  # empty cell and padding
    scaled = grid_array(images[:1], nrow=1, pad=0, scale=3)
    assert scaled.shape == (6, 9, 1)


def test_save_image_grid_plain_and_labelled(tmp_path: Path) -> None:
    from dplase.plots import grid_array, save_image_grid

    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = save_image_grid(images, tmp_path / "plain.png", nrow=3, scale=1)
    with Image.open(plain) as image:  # the PNG holds exactly the tiled pixels
        assert (np.asarray(image) == grid_array(images, nrow=3, pad=2)).all()
    labelled = save_image_grid(images, tmp_path / "traversal.png", nrow=3, row_labels=["dir 0", "dir 1"],
                               col_labels=["-1", "0", "+1"], title="sefa")
    with Image.open(labelled) as image:
        assert image.format == "PNG" and image.size[0] > 3 * 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png", "traversal.png"]  # no temp files left
    with pytest.raises(ValueError, match="row_labels has 3 entries but the grid has 2 rows"):
        save_image_grid(images, tmp_path / "x.png", nrow=3, row_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="col_labels has 2 entries but the grid has 3 columns"):
        save_image_grid(images, tmp_path / "x.png", nrow=3, col_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"images must be N x C x H x W with C in \(1, 3\)"):
        save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")
