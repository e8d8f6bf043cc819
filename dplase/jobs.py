"""The workflow's jobs as plain functions: JSON-able parameters and output paths in, files out.

The Snakemake scripts (workflow/scripts/) and the submitit launcher call these same functions with the values
`dplase.sweep.Sweep` gives (``gan_params``, ``predictor_params``, ``discover_params``, ``evaluate_params``),
so both routes write identical artifacts at identical paths. Every output is written atomically, and the
trainers checkpoint beside their outputs, so a killed job resumes when it is run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: columns of a loss-curve table (per run file and the collected one)
LOSS_COLUMNS = ("source", "run_id", "model", "dataset", "method", "walk", "seed", "step", "term", "value")


def _load_dataset(spec: Mapping[str, Any], seed: int):
    from dplase.data import load_dataset

    return load_dataset(spec["name"], image_size=int(spec["image_size"]), seed=seed, **spec.get("options", {}))


def train_gan_job(
    *, dataset: Mapping[str, Any], train: Mapping[str, Any], out: str | os.PathLike, device: str = "cpu",
    checkpoint_every: int = 100, progress: bool = False,
) -> Path:
    """Train the GAN of one model x dataset (``train``: GanConfig fields) and write it to ``out``.

    Also writes ``out`` with suffix .png (sample grid) and .losses.parquet; resumes from ``out``.ckpt.
    """
    from dplase.training.gan import GanConfig, train_gan

    config = GanConfig(**{**dict(train), "dataset": dataset["name"], "image_size": int(dataset["image_size"]),
                          "dataset_options": dict(dataset.get("options", {})),
                          "checkpoint_every": int(checkpoint_every)})
    return train_gan(config, out, device=device, progress=progress)


def train_predictor_job(
    *, dataset: Mapping[str, Any], predictor: Mapping[str, Any], out: str | os.PathLike, device: str = "cpu",
    progress: bool = False,
) -> Path:
    """Train the factor predictor of a dataset on its real images and save it (held-out scores in its meta)."""
    from dplase.metrics.predictor import train_predictor

    out = Path(out)
    seed = int(predictor.get("seed", 0))
    data = _load_dataset(dataset, seed)
    net = train_predictor(data, steps=int(predictor.get("steps", 500)), seed=seed, device=device,
                          checkpoint_path=out.with_suffix(".ckpt"), progress=progress,
                          **dict(predictor.get("options", {})))
    log.info("predictor held-out scores: %s", json.dumps(net.meta.get("heldout"), default=str))
    return net.save(out)


def discover_job(
    *, run: Mapping[str, Any], generator: str | os.PathLike, out: str | os.PathLike, losses: str | os.PathLike,
    device: str = "cpu", checkpoint_every: int = 100, progress: bool = False,
) -> Path:
    """Fit ``run["method"]`` on the generator, save the DirectionSet to ``out`` and its loss curve to
    ``losses`` (an empty table for closed-form methods). Trainers checkpoint to ``out``.ckpt and resume."""
    import pandas as pd

    from dplase.generators.registry import load_generator
    from dplase.methods import FitContext, fit
    from dplase.sweep import method_config

    out, losses = Path(out), Path(losses)
    adapter = load_generator(generator, device=device)
    raw_losses = out.with_suffix(".losses.parquet")
    context = FitContext(seed=int(run["seed"]), device=device, checkpoint_path=out.with_suffix(".ckpt"),
                         checkpoint_every=int(checkpoint_every), loss_log_path=raw_losses, progress=progress)
    directions = fit(run["method"], adapter, method_config(run["method"], run["params"]), context)
    history = pd.read_parquet(raw_losses) if raw_losses.exists() else pd.DataFrame(columns=["step", "term", "value"])
    write_losses(_label_losses(history, "discovery", run), losses)
    directions.save(out)
    raw_losses.unlink(missing_ok=True)
    Path(context.checkpoint_path).unlink(missing_ok=True)
    return out


def _label_losses(history, source: str, run: Mapping[str, Any]):
    """A (step, term, value) frame with the run's labels as columns (LOSS_COLUMNS)."""
    frame = history[["step", "term", "value"]].copy()
    frame["source"] = source
    for column in ("run_id", "model", "dataset", "method", "seed"):
        frame[column] = run.get(column)
    frame["walk"] = run["walk"] if "walk" in run else run.get("params", {}).get("walk", "linear")
    return loss_frame(frame)


def loss_frame(frame):
    """A loss table with the canonical column order and dtypes."""
    import pandas as pd

    frame = frame.reindex(columns=list(LOSS_COLUMNS))
    dtypes = {"source": "string", "run_id": "string", "model": "string", "dataset": "string", "method": "string",
              "walk": "string", "seed": "Int64", "step": "int64", "term": "string", "value": "float64"}
    return pd.DataFrame(frame).astype(dtypes).reset_index(drop=True)


def write_losses(frame, path: str | os.PathLike) -> Path:
    """Write a loss table as Parquet, atomically."""
    from dplase.artifacts import atomic_write

    frame = loss_frame(frame)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def evaluate_job(
    *, run: Mapping[str, Any], generator: str | os.PathLike, directions: str | os.PathLike,
    predictor: str | os.PathLike, out: str | os.PathLike, evaluation: Mapping[str, Any], device: str = "cpu",
    progress: bool = False,
) -> Path:
    """Evaluate one run's directions with the fixed protocol (`dplase.metrics.evaluate`) and write its rows of
    the results schema to ``out``.

    ``evaluation``: metrics, n_samples, seed, extractor, inception_weights and ``options`` (further EvalConfig
    fields such as n_steps, max_eps, n_real, encoder_steps, rca_steps, walks).
    """
    from dplase.data import dataset_from_config
    from dplase.directions import DirectionSet
    from dplase.generators.registry import load_generator
    from dplase.metrics.evaluate import EvalConfig, evaluate, results_frame
    from dplase.metrics.predictor import FactorPredictor
    from dplase.results import write_results

    adapter = load_generator(generator, device=device)
    direction_set = DirectionSet.load(directions)
    net = FactorPredictor.load(predictor, device=device)
    dataset = dataset_from_config(dict(net.meta["dataset"]))
    options = dict(evaluation.get("options", {}))
    if options.get("walks") is not None:
        options["walks"] = tuple(options["walks"])
    config = EvalConfig(metrics=tuple(evaluation["metrics"]), n_samples=int(evaluation["n_samples"]),
                        seed=int(evaluation["seed"]), extractor=evaluation["extractor"],
                        inception_weights=evaluation.get("inception_weights"), progress=progress, **options)
    rows = evaluate(adapter, direction_set, net, dataset, config, device=device)
    frame = results_frame(rows, adapter, direction_set, run["dataset"], run["run_id"], dict(run["params"]), config)
    frame["model"] = run["model"]  # the config's model id (a checkpoint's own name may differ)
    log.info("%d result rows for run %s", len(frame), run["run_id"])
    return write_results(frame, out)


def collect_metrics_job(*, inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Concatenate the per-run metrics files into one results table."""
    from dplase.results import collect

    return collect(list(inputs), out)


def collect_losses_job(
    *, run_losses: Sequence[str | os.PathLike], generator_losses: Sequence[str | os.PathLike],
    generator_labels: Sequence[Mapping[str, Any]], out: str | os.PathLike,
) -> Path:
    """One loss table from the runs' loss files and the GANs' (step, term, value) files."""
    import pandas as pd

    frames = [pd.read_parquet(p) for p in run_losses]
    for path, labels in zip(generator_losses, generator_labels, strict=True):
        frames.append(_label_losses(pd.read_parquet(path), "gan", {**labels, "method": "gan", "walk": None}))
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LOSS_COLUMNS))
    return write_losses(frame, out)


def write_runs_table_job(*, runs: Sequence[Mapping[str, Any]], out: str | os.PathLike) -> Path:
    """Write results/runs.parquet from the run dicts (`dplase.sweep.Run.to_dict`)."""
    from dplase.sweep import Run, write_runs_table

    return write_runs_table([Run(**dict(r)) for r in runs], out)


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[None]:
    """Send a job's stdout, stderr, logging and any traceback to its log file (the Snakemake scripts use it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    old_level = root.level
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
