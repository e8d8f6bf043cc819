"""The evaluation orchestrator and the `dplase evaluate` / `train-predictor` commands on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_evaluation_setup

from dplase.cli import main
from dplase.data import load_dataset
from dplase.generators.dcgan import DCGANAdapter
from dplase.generators.registry import save_generator
from dplase.metrics.evaluate import EvalConfig, evaluate, results_frame
from dplase.metrics.predictor import FactorPredictor
from dplase.results import RESULTS_SCHEMA, read_results

ARCH = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}


@pytest.fixture(scope="module")
def setup():
    return tiny_evaluation_setup({"k": 3, "lambda": 0.5})


class CountingGenerator(DCGANAdapter):
    """Counts every latent that goes through the generator for images."""

    def __init__(self, inner: DCGANAdapter) -> None:
        super().__init__(inner.net, inner.prior, name="counted")
        self.generated = 0

    def generate(self, z, batch_size=256):
        self.generated += len(z)
        return super().generate(z, batch_size)


def test_every_walk_image_is_generated_once(setup) -> None:
    data, gen, predictor, directions = setup
    counted = CountingGenerator(gen)
    config = EvalConfig(metrics=("attr", "fid", "density"), n_samples=6, n_steps=5, max_eps=2.0, n_real=40,
                        progress=False)
    rows = evaluate(counted, directions, predictor, data, config)
    n, k, walks, steps = 6, 3, 2, 4
    # the start images (n per direction), then each walk image exactly once
    assert counted.generated == k * n + walks * k * steps * n
    fid_rows = [r for r in rows if r["metric"] == "fid"]
    grid = (-2.0, -1.0, 0.0, 1.0, 2.0)
    assert {(r["walk"], r["step"]) for r in fid_rows} == {(w, s) for w in ("linear", "norm") for s in grid}
    assert all(r["n_samples"] == k * n and r["extractor"] == "domain" for r in fid_rows)
    step0 = {r["walk"]: r["value"] for r in fid_rows if r["step"] == 0.0}
    assert step0["linear"] == step0["norm"]
    norm_ratio = [r["value"] for r in rows if r["metric"] == "norm_ratio" and r["walk"] == "norm"]
    assert len(norm_ratio) == k * steps and all(v == pytest.approx(1.0, abs=1e-5) for v in norm_ratio)


def test_all_metrics_fit_the_schema_and_are_seed_deterministic(setup) -> None:
    data, gen, predictor, directions = setup
    config = EvalConfig(n_samples=4, n_steps=3, n_real=60, encoder_steps=3, rca_steps=3, rca_test=16,
                        n_mig=60, n_dci_train=40, n_dci_test=20, walks=("norm",), dci_estimators=5, progress=False)
    rows = evaluate(gen, directions, predictor, data, config)
    frame = results_frame(rows, gen, directions, "shapes", "run-1", {"note": "test"}, config)
    metrics = set(frame["metric"])
    for name in ("fid", "logp_drift", "norm_ratio", "outside_share", "attr_top_share", "attr_change.pos_x",
                 "mig", "dci_disentanglement", "dci_completeness", "modularity", "rca"):
        assert name in metrics, name
    assert frame["method"].unique().tolist() == ["random"] and frame["k"].unique().tolist() == [3]
    assert frame["lambda"].unique().tolist() == [0.5] and frame["seed"].unique().tolist() == [7]
    params = json.loads(frame["params"].iloc[0])
    assert params["note"] == "test" and params["eval"]["n_samples"] == 4
    again = evaluate(gen, directions, predictor, data, config)
    # NaN rows (linear_gap without a linear walk to compare with) compare equal to themselves here
    np.testing.assert_array_equal([r["value"] for r in again], [r["value"] for r in rows])


def test_bad_metric_name_and_mismatched_dataset(setup) -> None:
    _, gen, predictor, directions = setup
    with pytest.raises(ValueError, match=r"unknown metric.*colour"):
        EvalConfig(metrics=("colour",))
    with pytest.raises(ValueError, match="does not match the generator"):
        evaluate(gen, directions, predictor, load_dataset("shapes", image_size=64), EvalConfig(progress=False))


def test_cli_evaluate_and_errors(setup, tmp_path) -> None:
    _, gen, predictor, directions = setup
    gpath = save_generator(tmp_path / "g.pt", gen.net, "dcgan", ARCH, gen.prior.to_config(),
                           {"dataset": "shapes", "name": "tiny"})
    dpath = directions.save(tmp_path / "d.pt")
    ppath = predictor.save(tmp_path / "p.pt")
    out = tmp_path / "m.parquet"
    args = ["evaluate", "--generator", str(gpath), "--directions", str(dpath), "--predictor", str(ppath),
            "--out", str(out), "--n-samples", "4", "--n-steps", "3", "--n-real", "40", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--metrics", "density,fid", "--run-id", "r1", "--params", '{"a": 1}'])
    assert result.exit_code == 0, result.output
    frame = read_results(out)
    assert set(frame["metric"]) == {"fid", "fid_real_reference_size", "logp_drift", "abs_logp_drift",
                                    "norm_ratio", "outside_share"}
    assert frame["run_id"].unique().tolist() == ["r1"] and frame["model"].unique().tolist() == ["tiny"]
    assert read_results(out).shape[1] == len(RESULTS_SCHEMA)

    bad = CliRunner().invoke(main, [*args, "--metrics", "fid,colour"])
    assert bad.exit_code == 2 and "unknown value(s) colour" in bad.output
    bad = CliRunner().invoke(main, [*args, "--params", "{oops"])
    assert bad.exit_code == 2 and "not valid JSON" in bad.output
    bad = CliRunner().invoke(main, [*args, "--extractor", "inception", "--inception-weights", str(tmp_path)])
    assert bad.exit_code == 2 and "--inception-weights" in bad.output and "Traceback" not in bad.output
    other = save_generator(tmp_path / "g2.pt", gen.net, "dcgan", ARCH, gen.prior.to_config(), {"dataset": "digits"})
    bad = CliRunner().invoke(main, [*args[:2], str(other), *args[3:]])
    assert bad.exit_code == 2 and "trained on 'shapes' but the generator on 'digits'" in bad.output


def test_cli_train_predictor(tmp_path) -> None:
    out = tmp_path / "p.pt"
    result = CliRunner().invoke(main, ["train-predictor", "--dataset", "shapes", "--image-size", "32",
                                       "--steps", "3", "--n-test", "20", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["heldout"]["shape"]["accuracy"] >= 0
    assert FactorPredictor.load(out).meta["steps"] == 3 and not (tmp_path / "p.pt.ckpt").exists()
    bad = CliRunner().invoke(main, ["train-predictor", "--dataset", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown dataset 'nope'" in bad.output


def test_help_has_examples() -> None:
    for cmd in ("evaluate", "train-predictor", "collect"):
        result = CliRunner().invoke(main, [cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output and f"dplase {cmd}" in result.output
