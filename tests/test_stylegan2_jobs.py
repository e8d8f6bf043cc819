"""A StyleGAN2 through the workflow's own jobs (what the Snakemake rules and `dplase sweep` run): trained by the
train_gan job, directions discovered in z and in w, evaluated and drawn; the space travels with the
DirectionSet into the results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dplase.directions import DirectionSet
from dplase.jobs import discover_job, evaluate_job, generator_job, plot_traversal_job, train_predictor_job

GAN = {"dataset": "shapes", "image_size": 32, "steps": 4, "batch_size": 4, "width": 8, "z_dim": 8, "seed": 0,
       "arch": {"w_dim": 12, "n_mlp": 2}, "checkpoint_every": 0, "grid_every": 0}
EVALUATION = {"metrics": ["attr", "density", "gap"], "n_samples": 4, "seed": 0, "n_real": 50, "n_steps": 3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sg2jobs")
    generator = generator_job(family="stylegan2", options=GAN, out=root / "g.pt", name="sg2")
    predictor = train_predictor_job(dataset={"name": "shapes", "image_size": 32},
                                    predictor={"steps": 5, "seed": 0}, out=root / "pred.pt")
    return Path(generator), Path(predictor)


@pytest.mark.parametrize("method, config", [
    ("sefa", {"k": 3, "layers": "0-2"}),
    ("dplase", {"k": 3, "steps": 4, "walk": "learned", "batch_size": 4}),
])
@pytest.mark.parametrize("space", ["z", "w"])
def test_discover_evaluate_and_draw_in_each_space(trained, tmp_path, method, config, space):
    if method == "sefa" and space == "z":
        config = {"k": 3}  # in z SeFa factorises the mapping's first layer: no synthesis layers to choose
    generator, predictor = trained
    out = tmp_path / "directions.pt"
    discover_job(method=method, config={**config, "space": space}, seed=0, generator=generator, out=out,
                 losses=tmp_path / "losses.parquet", labels={"method": method, "seed": 0, "space": space})
    directions = DirectionSet.load(out)
    assert directions.space == space and directions.z_dim == (12 if space == "w" else 8)
    metrics = evaluate_job(evaluation=EVALUATION, generator=generator, directions=out, predictor=predictor,
                           out=tmp_path / "metrics.parquet", run_id="r", model="sg2", dataset="shapes")
    frame = pd.read_parquet(metrics)
    assert set(frame["space"]) == {space}
    gap = frame[(frame["metric"] == "linear_gap") & (frame["walk"] == "norm")]["value"]
    assert len(gap) and gap.notna().all()
    if space == "z":  # PixelNorm: the norm rescale changes no image
        assert gap.max() < 1e-5
    else:  # in whitened w the norm rescale is a different walk from the linear one
        assert gap.max() > 1e-4
    drift = frame[(frame["metric"] == "abs_logp_drift") & (frame["walk"] == "norm")]["value"]
    assert len(drift) and drift.max() < 1e-4  # iso-density for N(0, I) and for the Gaussian of whitened w
    if method == "dplase":  # a trained method's loss rows carry the space too
        assert set(pd.read_parquet(tmp_path / "losses.parquet")["space"]) == {space}
    grid = plot_traversal_job(generator=generator, directions=out, out=tmp_path / "traversal.png", n_steps=3)
    assert Path(grid).is_file()
