"""Crash during a write: every writer (generator, directions, predictor, trainer checkpoint, results / losses /
runs Parquet, figures, image grids) writes a temporary file and renames it; a kill between the two never leaves
a half-written file under the final name, and the temporary file it leaves behind does not break the next
write. The kill is simulated at the rename (the temporary file kept, as after kill -9), and once for real."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from PIL import Image

from dplase.artifacts import load_artifact, sha256_tensors
from dplase.directions import DirectionSet
from dplase.results import (
    RUNS_COLUMNS,
    history_frame,
    make_rows,
    read_results,
    write_losses,
    write_results,
    write_runs_table,
)

ARCH = {"z_dim": 4, "image_size": 32, "channels": 1, "width": 2}


class _Killed(BaseException):  # a BaseException: no handler in the writers may catch it, as with SIGKILL
    """The process died between writing the temporary file and renaming it."""


def _generator(path: Path, version: int) -> None:
    from dplase.generators.dcgan import DCGANAdapter
    from dplase.generators.registry import save_generator

    adapter = DCGANAdapter.build(ARCH, seed=version)
    save_generator(path, adapter.net, "dcgan", ARCH, adapter.prior.to_config(), {"seed": version})


def _read_generator(path: Path) -> Any:
    from dplase.generators.registry import load_generator

    return sha256_tensors(load_generator(path).net.state_dict())


def _predictor(path: Path, version: int) -> None:
    from dplase.data import load_dataset
    from dplase.metrics.predictor import FactorPredictor

    torch.manual_seed(version)
    net = FactorPredictor(1, 32, load_dataset("shapes", image_size=32).factor_specs, width=2, feature_dim=4)
    net.meta = {"version": version}
    net.save(path)


def _read_predictor(path: Path) -> Any:
    from dplase.metrics.predictor import FactorPredictor

    return FactorPredictor.load(path).meta["version"]


def _checkpoint(path: Path, version: int) -> None:
    from dplase.training.loop import LoopState, save_checkpoint

    save_checkpoint(LoopState({"net": torch.nn.Linear(2, 2)}, step=version), path, "checkpoint", {})


def _results(path: Path, version: int) -> None:
    base = {"run_id": f"run{version}", "model": "m", "dataset": "shapes", "method": "sefa", "walk": "linear",
            "params": {}, "k": 2, "layer": "block0", "lambda": None, "zeta": None, "seed": 0}
    write_results(make_rows(base, [{"metric": "fid", "direction": None, "step": 1.0, "value": 1.0 * version}]),
                  path)


def _runs_table(path: Path, version: int) -> None:
    row = dict.fromkeys(RUNS_COLUMNS)
    row.update(run_id=f"run{version}", seed=0, model_seed=0, params="{}")
    write_runs_table([row], path)


def _figure(path: Path, version: int) -> None:
    from matplotlib.figure import Figure

    from dplase.plots.figures import save_figure

    save_figure(Figure(figsize=(1 + version, 1), dpi=50), path, dpi=50)


def _grid(path: Path, version: int) -> None:
    from dplase.plots.grids import save_image_grid

    save_image_grid(torch.full((version, 1, 8, 8), 0.5), path, nrow=8, scale=1)


def _image_width(path: Path) -> int:
    with Image.open(path) as image:
        image.load()  # a half-written PNG fails here
        return image.size[0]


#: writer -> (write(path, version), read(path) -> what identifies the version, file name)
WRITERS: dict[str, tuple[Callable[[Path, int], None], Callable[[Path], Any], str]] = {
    "generator": (_generator, _read_generator, "g.pt"),
    "directions": (lambda p, v: DirectionSet(torch.eye(2, 4), torch.full((2,), float(v)), "random", {}).save(p),
                   lambda p: DirectionSet.load(p).scores.tolist(), "directions.pt"),
    "predictor": (_predictor, _read_predictor, "p.pt"),
    "trainer checkpoint": (_checkpoint, lambda p: load_artifact(p, kind="checkpoint")[0]["step"], "run.ckpt"),
    "results parquet": (_results, lambda p: read_results(p)["run_id"].tolist(), "metrics.parquet"),
    "losses parquet": (lambda p, v: write_losses(history_frame([(0, "fit", float(v))]), p),
                       lambda p: pd.read_parquet(p)["value"].tolist(), "losses.parquet"),
    "runs table": (_runs_table, lambda p: pd.read_parquet(p)["run_id"].tolist(), "runs.parquet"),
    "figure": (_figure, _image_width, "fig.png"),
    "image grid": (_grid, _image_width, "grid.png"),
}


@pytest.fixture
def kill_at_rename(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Arm a crash at the next rename: the temporary file is kept under a leftover name (what kill -9 leaves)."""

    def arm() -> None:
        def killed(src: str | os.PathLike, dst: str | os.PathLike) -> None:
            dst = Path(dst)
            shutil.copy(src, dst.parent / f".{dst.name}.killed.tmp")
            raise _Killed

        monkeypatch.setattr(os, "replace", killed)

    return arm


@pytest.mark.parametrize("writer", list(WRITERS))
def test_kill_before_the_rename_leaves_the_old_file_and_the_next_write_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_at_rename: Callable[[], None], writer: str,
) -> None:
    write, read, name = WRITERS[writer]
    old, fresh = tmp_path / "old" / name, tmp_path / "fresh" / name
    write(old, 1)
    first = read(old)
    kill_at_rename()
    with pytest.raises(_Killed):
        write(old, 2)
    with pytest.raises(_Killed):
        write(fresh, 2)
    monkeypatch.undo()  # the process restarts: renames work again
    assert read(old) == first  # the previous complete version, untouched
    assert not fresh.exists()  # never a partial file under the final name
    for folder in (old.parent, fresh.parent):  # only the final file and what the kill left behind
        assert {p.name for p in folder.iterdir()} - {name} == {f".{name}.killed.tmp"}
    write(old, 2)
    write(fresh, 2)
    assert read(old) == read(fresh) != first
    # a leftover never matches the file's own pattern (what `dplase collect` and the workflow look for)
    assert [p.name for p in old.parent.glob(f"*{Path(name).suffix}")] == [name]


def test_a_real_sigkill_between_temporary_file_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "directions.pt"
    DirectionSet(torch.eye(2, 4), torch.ones(2), "random", {}).save(path)
    pid = os.fork()
    if pid == 0:  # the child dies at the rename, as under kill -9
        try:
            os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
            DirectionSet(torch.eye(2, 4), torch.full((2,), 2.0), "random", {}).save(path)
        finally:
            os._exit(3)  # only reached if the kill did not happen
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child did not reach the rename within 60 s")
    assert os.WIFSIGNALED(done[1]) and os.WTERMSIG(done[1]) == signal.SIGKILL
    assert DirectionSet.load(path).scores.tolist() == [1.0, 1.0]
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".directions.pt.")
    assert leftovers[0].suffix == ".tmp"
    DirectionSet(torch.eye(2, 4), torch.full((2,), 2.0), "random", {}).save(path)
    assert DirectionSet.load(path).scores.tolist() == [2.0, 2.0]
