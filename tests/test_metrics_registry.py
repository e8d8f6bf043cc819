"""The metric registry: names, the import-light package, one metric per name, and a test-only metric plugged in."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import torch
from conftest import tiny_evaluation_setup

from dplase.metrics import METRICS
from dplase.metrics.context import EvalContext, ImageMetric, Row
from dplase.metrics.evaluate import EvalConfig, evaluate
from dplase.registry import Registry

ARCH = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}
CONFIG = {"n_samples": 4, "n_steps": 3, "n_real": 60, "encoder_steps": 3, "rca_steps": 3, "rca_test": 16,
          "n_mig": 60, "n_dci_train": 40, "n_dci_test": 20, "dci_estimators": 5, "progress": False}
#: the metric names each group writes
GROUP_ROWS = {
    "attr": lambda m: m.startswith("attr_"),
    "disent": lambda m: m in ("mig", "modularity", "encoder_r2") or m.startswith("dci_"),
    "fid": lambda m: m in ("fid", "fid_real_reference_size"),
    "density": lambda m: m in ("logp_drift", "abs_logp_drift", "norm_ratio", "outside_share"),
    "rca": lambda m: m == "rca",
    "recovery": lambda m: m.startswith("recovery") or m in ("null_leakage", "latent_dim"),
    "exact": lambda m: m.startswith(("attr_exact", "predictor_", "attr_agreement")) or m.endswith("_exact"),
    "gap": lambda m: m == "linear_gap",
}


@pytest.fixture(scope="module")
def setup():
    return tiny_evaluation_setup()


def _key(row: Row) -> tuple:
    return tuple(row.get(c) for c in ("walk", "direction", "step", "metric", "value", "n_samples", "extractor"))


def test_registry_names_and_light_import() -> None:
    from dplase.cli.evaluate import METRIC_CHOICES

    assert METRICS.names == ("attr", "disent", "fid", "density", "rca", "recovery", "exact", "gap") == METRIC_CHOICES
    assert METRICS.where(needs_images=True) == ("attr", "fid", "exact", "gap")
    for name in METRICS:
        assert callable(METRICS.load(name)), name
    assert EvalConfig().metrics == METRICS.names
    # the config layer reads the names at Snakemake parse time: no torch or sklearn behind them
    code = "import sys, dplase.metrics; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_each_metric_alone_gives_only_its_rows_and_the_same_numbers(setup) -> None:
    data, gen, predictor, directions = setup
    everything = evaluate(gen, directions, predictor, data, EvalConfig(**CONFIG))
    union: Counter = Counter()
    for name in METRICS:
        rows = evaluate(gen, directions, predictor, data, EvalConfig(metrics=(name,), **CONFIG))
        if name in ("recovery", "exact"):  # a DCGAN has no planted truth: no rows (tests/test_planted*.py)
            assert rows == []
            continue
        assert rows and all(GROUP_ROWS[name](r["metric"]) for r in rows), name
        union.update(_key(r) for r in rows)
    # each group's numbers do not depend on which other groups ran
    assert union == Counter(_key(r) for r in everything)


class ProbeMetric(ImageMetric):
    """A test-only image metric: counts the images it is shown."""

    seen: list[tuple[str, int, int]]

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        self.n_start, self.seen = 0, []

    def start(self, images: torch.Tensor) -> None:
        self.n_start = len(images)

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        self.seen.append((walk, j, len(images)))

    def rows(self) -> list[Row]:
        return [{"walk": w, "direction": j, "metric": "probe_images", "value": float(n), "n_samples": n}
                for w, j, n in self.seen] + [{"metric": "probe_start", "value": float(self.n_start)}]


def latent_metric(ctx: EvalContext) -> list[Row]:
    """A test-only latent metric: mean walked norm per walk."""
    return [{"walk": w, "metric": "probe_norm", "value": float(torch.cat([z for (v, _), z in ctx.walked.items()
                                                                         if v == w]).norm(dim=1).mean())}
            for w in ctx.walks]


def test_a_metric_plugged_in_by_one_registry_line(setup, monkeypatch) -> None:
    data, gen, predictor, directions = setup
    registry = Registry("metric", {
        **{name: (entry.target, dict(entry.info)) for name, entry in METRICS.items()},
        "probe": (f"{__name__}:ProbeMetric", {"needs_images": True}),
        "probe_norm": (f"{__name__}:latent_metric", {}),
    })
    monkeypatch.setattr("dplase.metrics.context.METRICS", registry)
    monkeypatch.setattr("dplase.metrics.evaluate.METRICS", registry)
    config = EvalConfig(metrics=("probe_norm", "density", "probe"), **CONFIG)
    rows = evaluate(gen, directions, predictor, data, config)
    n, k, steps = 4, 3, 2
    probe = [r for r in rows if r["metric"] == "probe_images"]
    assert [(r["walk"], r["direction"]) for r in probe] == [(w, j) for w in ("linear", "norm") for j in range(k)]
    assert all(r["value"] == steps * n for r in probe)
    assert [r["value"] for r in rows if r["metric"] == "probe_start"] == [k * n]
    assert {r["walk"] for r in rows if r["metric"] == "probe_norm"} == {"linear", "norm"}
    # rows come in registry order, whatever order was asked for
    order = [r["metric"] for r in rows]
    assert order.index("logp_drift") < order.index("probe_images") < order.index("probe_norm")
    with pytest.raises(ValueError, match=r"unknown metric.*nope"):
        EvalConfig(metrics=("nope",))
