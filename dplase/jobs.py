"""The workflow's jobs as plain functions: JSON-able parameters and output paths in, files out.

The Snakemake rules (workflow/scripts/run_job.py) and the submitit launcher call these same functions, as the
stage table `dplase.stages.STAGES` names them, with the arguments `dplase.config.Sweep.job_kwargs` gives (in
each function's own names), so both routes write identical artifacts at identical paths; the CLI commands call
them too. Every output is written atomically, and the
trainers checkpoint beside their outputs, so a killed job resumes when it is run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def generator_job(*, family: str, options: Mapping[str, Any], out: str | os.PathLike, name: str | None = None,
                  device: str = "cpu", progress: bool = False) -> Path:
    """Make one generator of ``family`` and write it to ``out``, with its sample grid (suffix .png) and loss
    table (.losses.parquet): a trainable family is trained (``options``: GanConfig fields), a planted one is
    built from ``options`` (`dplase.generators.planted.planted_arch` arguments; no training, empty losses);
    ``family`` "import" converts a foreign checkpoint (`import_generator_job`)."""
    from dplase.generators.registry import FAMILIES

    if family == "import":  # a foreign checkpoint (``options``: path, format, options, dataset), converted once
        return import_generator_job(options=options, out=out, name=name)
    if FAMILIES[family].get("planted"):
        return plant_generator_job(options=options, out=out, name=name)
    if not FAMILIES[family].get("trainable"):
        raise ValueError(f"generator family '{family}' is neither trained nor planted by the workflow")
    return train_gan_job(gan={**options, "family": family}, out=out, name=name, device=device, progress=progress)


def import_generator_job(*, options: Mapping[str, Any], out: str | os.PathLike, name: str | None = None) -> Path:
    """Import a foreign checkpoint (`dplase.generators.importers.import_checkpoint`) to ``out``, with a sample
    grid and an empty loss table beside it, like any other generator of the workflow."""
    from dplase.generators.importers import import_checkpoint

    out = Path(out)
    import_checkpoint(options["path"], out, format=options.get("format"), options=options.get("options"),
                      name=name, dataset=options.get("dataset"))
    _grid_and_empty_losses(out, n=16, seed=0, batch_size=4)  # 16: an imported generator may be large
    return out


def _grid_and_empty_losses(out: Path, n: int, seed: int, batch_size: int = 256) -> None:
    """Beside a generator that was not trained here: its sample grid (``n`` latents from ``seed``, drawn by the
    saved file, as every user will see it) and an empty loss table."""
    from dplase.generators.registry import load_generator
    from dplase.plots.grids import save_image_grid
    from dplase.results import history_frame, write_losses

    adapter = load_generator(out)
    images = adapter.generate(adapter.sample_latents(n, seed), batch_size=batch_size)
    save_image_grid(images, out.with_suffix(".png"), nrow=int(n**0.5))
    write_losses(history_frame([]), out.with_suffix(".losses.parquet"))


def train_gan_job(*, gan: Mapping[str, Any], out: str | os.PathLike, name: str | None = None, device: str = "cpu",
                  progress: bool = False) -> Path:
    """Train one GAN (``gan``: GanConfig fields) and write it to ``out``.

    Also writes ``out`` with suffix .png (sample grid) and .losses.parquet; resumes from ``out``.ckpt.
    """
    from dplase.training.gan import GanConfig, train_gan

    return train_gan(GanConfig(**gan), out, device=device, progress=progress, name=name)


def plant_generator_job(*, options: Mapping[str, Any], out: str | os.PathLike, name: str | None = None) -> Path:
    """Write a planted generator (``options``: `planted_arch` arguments), its sample grid and an empty loss
    table (so that it looks like any other generator to the rest of the workflow)."""
    from dplase.generators.planted import save_planted
    from dplase.training.gan import GRID_SEED_OFFSET

    out = Path(out)
    save_planted(out, name=name, **dict(options))
    _grid_and_empty_losses(out, n=64, seed=int(options.get("seed", 0)) + GRID_SEED_OFFSET)
    return out


def train_predictor_job(*, dataset: Mapping[str, Any], predictor: Mapping[str, Any], out: str | os.PathLike,
                        device: str = "cpu", progress: bool = False) -> Path:
    """Train the factor predictor of a dataset (``dataset``: load_dataset arguments; ``predictor``:
    train_predictor arguments) on its real images and save it (held-out scores in its meta)."""
    from dplase.data import load_dataset
    from dplase.metrics.predictor import train_predictor

    out = Path(out)
    options = dict(predictor)
    data = load_dataset(**dataset, seed=int(options["seed"]))
    started = time.perf_counter()
    net = train_predictor(data, device=device, checkpoint_path=out.with_suffix(".ckpt"), progress=progress,
                          **options)
    net.meta["train_seconds"] = round(time.perf_counter() - started, 2)
    log.info("predictor held-out scores: %s", json.dumps(net.meta.get("heldout"), default=str))
    return net.save(out)


def discover_job(
    *, method: str, config: Mapping[str, Any], seed: int, generator: str | os.PathLike, out: str | os.PathLike,
    losses: str | os.PathLike, labels: Mapping[str, Any] | None = None, device: str = "cpu",
    checkpoint_every: int = 100, progress: bool = False,
) -> Path:
    """Fit ``method`` (``config``: its config-class fields) on the generator, save the DirectionSet to ``out``
    and its loss history to ``losses`` (labelled with ``labels``; empty for closed-form methods). Trainers
    checkpoint to ``out``.ckpt and resume; the checkpoint is removed after success."""
    from dplase.generators.registry import load_generator
    from dplase.methods import FitContext, fit
    from dplase.results import history_frame, write_losses

    out = Path(out)
    adapter = load_generator(generator, device=device)
    context = FitContext(seed=int(seed), device=device, checkpoint_path=out.with_suffix(".ckpt"),
                         checkpoint_every=int(checkpoint_every), progress=progress)
    directions = fit(method, adapter, dict(config), context)
    write_losses(history_frame(context.history), losses, source="discovery", **dict(labels or {}))
    directions.save(out)
    Path(context.checkpoint_path).unlink(missing_ok=True)
    return out


def evaluate_job(
    *, evaluation: Mapping[str, Any], generator: str | os.PathLike, directions: str | os.PathLike,
    predictor: str | os.PathLike, out: str | os.PathLike, run_id: str | None = None, model: str | None = None,
    model_seed: int | None = None, dataset: str | None = None, params: Mapping[str, Any] | None = None,
    device: str = "cpu", progress: bool = False,
) -> Path:
    """Evaluate one run's directions with the fixed protocol (``evaluation``: EvalConfig fields) and write its
    rows of the results schema to ``out``, labelled with the run id, the config's model and dataset ids and
    the run's parameters (defaults: an id from the DirectionSet, the checkpoint's name, the predictor's
    dataset, no parameters)."""
    from dplase.data import dataset_from_config
    from dplase.directions import DirectionSet
    from dplase.generators.registry import generator_meta, load_generator
    from dplase.metrics.evaluate import EvalConfig, evaluate, results_frame
    from dplase.metrics.predictor import FactorPredictor
    from dplase.results import write_results

    adapter = load_generator(generator, device=device)  # `evaluate` puts it in the directions' space
    direction_set = DirectionSet.load(directions)
    net = FactorPredictor.load(predictor, device=device)
    data_config = dict(net.meta.get("dataset") or {})
    meta = generator_meta(generator)
    trained_on = meta.get("dataset")
    if trained_on and data_config.get("name") and trained_on != data_config["name"]:
        raise ValueError(f"the predictor was trained on '{data_config['name']}' but the generator on '{trained_on}'")
    data = dataset_from_config(data_config)
    options = {k: tuple(v) if k in ("metrics", "walks") and v is not None else v for k, v in evaluation.items()}
    config = EvalConfig(**options, progress=progress)
    rows = evaluate(adapter, direction_set, net, data, config, device=device)
    run_id = run_id or (f"{adapter.name}/{direction_set.method}/{direction_set.config_hash}/"
                        f"seed{direction_set.seed}")
    frame = results_frame(rows, adapter, direction_set, dataset or data.name, run_id, dict(params or {}), config)
    frame["model"] = model or adapter.name  # the config's model id (a checkpoint's own name may differ)
    frame["model_seed"] = model_seed if model_seed is not None else meta.get("seed")
    log.info("%d result rows for run %s", len(frame), run_id)
    return write_results(frame, out)


def plot_traversal_job(
    *, generator: str | os.PathLike, directions: str | os.PathLike, out: str | os.PathLike, n_steps: int = 7,
    max_eps: float | None = None, walk: str | None = None, k: int | None = None, seed: int = 0,
    group: int | None = None, device: str = "cpu", warn: Callable[[str], None] = log.warning,
    masked: int | None = None, masked_beside: bool = False,
) -> Path:
    """Draw a traversal grid to ``out``: rows = directions (the first ``k``), columns = the evaluation's step
    grid over [-max_eps, max_eps] (None: the prior's T, as the evaluation grid), from one seeded start
    latent; ``group`` edits only that channel subspace.
    For a generator with planted directions, each row also shows the oracle's traversal of its matched factor.

    ``masked`` (a direction index) draws instead that direction's traversal unmasked and masked side by side
    (`dplase.plots.masked`; ``group`` None: the evaluation's group rule). ``masked_beside`` (the workflow's
    setting) also writes direction 0's to ``out`` with suffix .masked.png where the directions carry channel
    masks."""
    from dplase.directions import DirectionSet
    from dplase.generators.registry import load_generator
    from dplase.plots.grids import save_traversal_grid
    from dplase.walks import walk_for

    direction_set = DirectionSet.load(directions)
    adapter = load_generator(generator, device=device).in_space(direction_set.space)
    if direction_set.z_dim != adapter.z_dim:
        raise ValueError(f"directions have z_dim {direction_set.z_dim} but the generator has {adapter.z_dim}")
    if direction_set.generator_sha256 and direction_set.generator_sha256 != adapter.checkpoint_sha256:
        warn("these directions were fitted on a different generator checkpoint")
    if group is not None and direction_set.channel_masks is None:
        raise ValueError("--group needs channel masks; discover with --subspace first")
    if group is not None and group >= direction_set.channel_masks.shape[1]:
        raise ValueError(f"--group must be < {direction_set.channel_masks.shape[1]} (number of subspace groups)")
    walk_fn = walk_for(direction_set, walk, device=device)
    if max_eps is None:  # the evaluation grid's default: T of the prior, the one step range
        from dplase.walks.steps import max_step

        max_eps = max_step(adapter.prior)
    if masked is not None:
        return _masked_traversal(out, adapter, direction_set, walk_fn, masked, n_steps, max_eps, seed, group, walk)
    if masked_beside and direction_set.channel_masks is not None:
        _masked_traversal(Path(out).with_suffix(".masked.png"), adapter, direction_set, walk_fn, 0, n_steps,
                          max_eps, seed, None, walk)
    oracle = hasattr(adapter, "planted_directions")  # the truth is known: show it beside each direction
    path, rows, cols = save_traversal_grid(out, adapter, direction_set, walk_fn, n_steps, max_eps, k, seed, group,
                                           walk, oracle=oracle)
    log.info("traversal grid %s: %d directions x %d steps%s", path, rows, cols,
             ", beside the matched planted directions" if oracle else "")
    return path


def _masked_traversal(out: str | os.PathLike, adapter: Any, direction_set: Any, walk_fn: Callable, direction: int,
                      n_steps: int, max_eps: float, seed: int, group: int | None, walk: str | None) -> Path:
    """`dplase.plots.masked.save_masked_traversal` of one direction, logged."""
    from dplase.plots.masked import save_masked_traversal

    path, group, share = save_masked_traversal(out, adapter, direction_set, walk_fn, direction, n_steps, max_eps,
                                               seed=seed, group=group, walk=walk)
    log.info("masked traversal %s: direction %d, group %d (share %.3f of the G1 change)", path, direction, group,
             share)
    return path


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

    from dplase.results import LOSS_COLUMNS, loss_frame, write_losses

    frames = [pd.read_parquet(p) for p in run_losses]
    for path, labels in zip(generator_losses, generator_labels, strict=True):
        frames.append(loss_frame(pd.read_parquet(path), source="gan", method="gan", **dict(labels)))
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LOSS_COLUMNS))
    return write_losses(loss_frame(frame), out)


def compare_job(*, metrics: str | os.PathLike, out: str | os.PathLike, reference: str, seed: int) -> Path:
    """The method comparison of a results table: ``out`` (comparison.md) and, beside it, comparison.csv,
    comparison_paired.csv and comparison.html (`dplase.compare.write_comparison`); a study without the
    reference variant gets the table without paired differences."""
    from dplase.compare import write_comparison

    write_comparison(metrics, Path(out).parent, reference=reference, seed=seed, strict=False)
    return Path(out)


def explore_job(*, metrics: str | os.PathLike, runs: Sequence[Mapping[str, Any]], out: str | os.PathLike,
                n_starts: int, image_size: int, device: str = "cpu") -> Path:
    """The walk explorer page of ``runs`` (each ``{"run_id", "generator", "directions"}``): frames rendered from
    each run's own evaluation draws (`dplase.explorer.write_explorer`), factors from the results ``metrics``."""
    from dplase.explorer import write_explorer

    return write_explorer(metrics, runs, out, n_starts=n_starts, image_size=image_size, device=device)


def write_runs_table_job(*, rows: Sequence[Mapping[str, Any]], out: str | os.PathLike) -> Path:
    """Write results/runs.parquet from the runs' rows (`dplase.config.Run.to_row`)."""
    from dplase.results import write_runs_table

    return write_runs_table(rows, out)


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
