"""`dplase discover` / `dplase traverse`: help, tiny runs, option mapping and usage errors."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from dplase.cli import main
from dplase.cli.discover import convert_value
from dplase.directions import DirectionSet
from dplase.generators.dcgan import DCGANAdapter
from dplase.generators.registry import save_generator


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    arch = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}
    adapter = DCGANAdapter.build(arch, seed=0)
    path = tmp_path_factory.mktemp("gen") / "g.pt"
    save_generator(path, adapter.net, "dcgan", arch, adapter.prior.to_config(), {"name": "tiny"})
    return path


TINY = ["--k", "3", "--steps", "4", "--batch-size", "4", "--param", "score_samples=8", "--no-progress"]


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("command", ["discover", "traverse"])
def test_help_has_a_runnable_example(command):
    result = _run([command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"dplase {command} --generator" in result.output


def test_discover_then_traverse(tmp_path, generator_path):
    out = tmp_path / "run" / "directions.pt"
    result = _run(["discover", "--generator", str(generator_path), "--method", "dplase", "--out", str(out),
                   "--walk", "learned", "--lambda", "0.5", "--estimator", "stochastic", "--param",
                   "density_batch=32", "--param", "correction_width=16", *TINY])
    assert result.exit_code == 0, result.output
    ds = DirectionSet.load(out)
    assert ds.k == 3 and ds.walk == "learned" and ds.config["lam"] == 0.5 and ds.config["estimator"] == "stochastic"
    assert ds.config["density_batch"] == 32 and ds.config["steps"] == 4
    assert not out.with_suffix(".ckpt").exists()  # removed after success
    losses = pd.read_parquet(out.with_suffix(".losses.parquet"))
    # the default C projects from the linear step: no correction network to train, so no l_den term
    assert {"variation", "cross", "ortho", "lik", "mon"} <= set(losses.term) and "den" not in set(losses.term)
    assert losses.step.max() == 3
    png = tmp_path / "grid.png"
    result = _run(["traverse", "--generator", str(generator_path), "--directions", str(out), "--out", str(png),
                   "--n-steps", "5", "--max-eps", "2"])
    assert result.exit_code == 0, result.output
    with Image.open(png) as image:
        assert image.width > image.height > 0  # 3 rows x 5 columns


def test_traverse_group_needs_masks(tmp_path, generator_path):
    out = tmp_path / "d.pt"
    assert _run(["discover", "--generator", str(generator_path), "--method", "dplase", "--out", str(out),
                 *TINY]).exit_code == 0
    result = CliRunner().invoke(main, ["traverse", "--generator", str(generator_path), "--directions", str(out),
                                       "--out", str(tmp_path / "g.png"), "--group", "0"])
    assert result.exit_code == 2 and "--group needs channel masks" in result.output
    result = CliRunner().invoke(main, ["traverse", "--generator", str(generator_path), "--directions", str(out),
                                       "--out", str(tmp_path / "g.png"), "--walk", "learned"])
    assert result.exit_code == 2 and "has none" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "dplase", "--param", "foo=1"], "method 'dplase' has no option 'foo'"),
        (["--method", "dplase", "--param", "steps=abc"], "--param steps: expected an integer, got 'abc'"),
        (["--method", "dplase", "--param", "steps"], "--param expects KEY=VALUE"),
        (["--method", "dplase", "--steps", "3", "--param", "steps=4"], "option 'steps' is set twice"),
        (["--method", "dplase", "--param", "estimator=exact"], "estimator must be one of full, stochastic"),
        (["--method", "dplase", "--param", "max_step=0"], "max_step"),
        (["--method", "dplase", "--k", "9"], "k must be between 1 and z_dim=8"),
        (["--method", "dplase", "--k", "2", "--layer", "block7"], "unknown layer 'block7'"),
        (["--method", "sefa", "--lr", "0.1"], "--lr does not apply to method 'sefa'"),
        (["--method", "nope"], "'nope' is not one of"),
        (["--method", "dplase", "--k", "0"], "--k"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, generator_path, args, message):
    result = CliRunner().invoke(main, ["discover", "--generator", str(generator_path), "--out",
                                       str(tmp_path / "d.pt"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "d.pt").exists()


def test_nan_stops_the_run_without_an_artifact(tmp_path, generator_path):
    out = tmp_path / "d.pt"
    result = CliRunner().invoke(main, ["discover", "--generator", str(generator_path), "--method", "dplase",
                                       "--out", str(out), "--param", "lr=inf", *TINY])
    assert result.exit_code == 1
    assert "loss term" in result.output and "at step 1" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "hint", "expected"),
    [("3", int, 3), ("2.5", float, 2.5), ("yes", bool, True), ("0", bool, False), ("none", float | None, None),
     ("1.5", float | None, 1.5), ("full", str, "full"), ("[1, 2]", list[int], [1, 2])],
)
def test_convert_value(text, hint, expected):
    assert convert_value(text, hint) == expected


@pytest.mark.parametrize(("text", "hint", "message"), [("maybe", bool, "expected a boolean"),
                                                      ("1.5", int, "expected an integer"),
                                                      ("x", float | None, "expected a number")])
def test_convert_value_errors(text, hint, message):
    with pytest.raises(ValueError, match=message):
        convert_value(text, hint)
