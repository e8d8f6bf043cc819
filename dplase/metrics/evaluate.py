"""Evaluate one DirectionSet on one generator: every requested metric, every walk, one long-format results frame.

The protocol is fixed so that methods are comparable: the same seeded start latents (``n_samples`` per direction;
direction j walks from its own block z0_j of one seeded draw of K x n_samples latents), the same symmetric step grid
(``n_steps`` values in [-max_eps, max_eps], 0 included; ``max_eps`` None: the prior's T, the one step range of
`dplase.walks.steps` that the methods train on, so a run's per-step rows get ``extrapolated`` False, or True past
its trained range when a larger ``max_eps`` was asked for), the same real reference set. An iterative method's
convergence record adds ``convergence.<term>`` rows. Each walked image is generated exactly once, in batches of one
(walk, direction) at all steps, and immediately feeds every metric that needs images (`ImageMetric`: attribute
change through the factor predictor, FID features); only predictions and features are kept, so memory does not grow
with the image count. Then each requested metric (`dplase.metrics.METRICS`, in registry order) returns its rows.
Every evaluation also writes the predictor's held-out scores (`predictor_heldout_rows`).

The walk ``masked`` (`dplase.walks.EVAL_WALKS`; default for a DirectionSet with channel masks) is scored like
any other walk: its images, G2(M_k * G1(z_walk) + (1 - M_k) * G1(z0)) with z_walk the set's own walk, feed every
image metric. Per direction, the group k is chosen once from the direction's own seeded start latents and the
step grid (`dplase.subspace.choose_group`: the largest share of the mean squared G1 change), recorded as rows
``masked_group`` (the group index) and ``masked_group_share`` (its share). Its walked latents are those of the
underlying walk, so latent-only metrics (density) repeat that walk's values for it (their note says so); RCA,
which renders G(z) from latents, writes a NaN row with the reason.

Seeds derived from ``seed``: start latents = seed, real images = seed + 2, code encoder = seed + 3,
RCA = seed + 4 (test pairs seed + 5), exact-factor references = seed + 6, code-encoder fit = seed + 7. The
workflow passes each run its replicate's seed (`dplase.seeds.replicate_seed`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from dplase.metrics import METRICS
from dplase.metrics.context import EvalConfig, EvalContext, ImageMetric, Row
from dplase.metrics.predictor import FactorPredictor
from dplase.results import make_rows
from dplase.walks import default_walks, is_feature_edit
from dplase.walks.steps import is_extrapolated, trained_range

__all__ = ["EvalConfig", "EvalContext", "evaluate", "make_context", "results_frame", "run_walks"]


def make_context(generator, directions, predictor: FactorPredictor, dataset, config: EvalConfig,
                 device: str | torch.device = "cpu") -> EvalContext:
    """Check that the pieces fit and build the shared state (the start latents are drawn here, from seed); the
    generator is put in the directions' latent space."""
    generator = generator.in_space(getattr(directions, "space", "z"))
    if dataset.image_size != generator.image_size or dataset.channels != generator.channels:
        raise ValueError(
            f"dataset {dataset.name} ({dataset.channels}x{dataset.image_size}px) does not match the generator "
            f"({generator.channels}x{generator.image_size}px)"
        )
    if directions.z_dim != generator.z_dim:
        raise ValueError(f"directions have d={directions.z_dim}, the generator z_dim={generator.z_dim}")
    edits = [w for w in config.walks or () if is_feature_edit(w)]
    if edits and getattr(directions, "channel_masks", None) is None:
        raise ValueError(f"walk '{edits[0]}' needs channel masks, but this '{directions.method}' DirectionSet has "
                         "none (fit DP-LaSE with subspace: true)")
    return EvalContext(
        generator=generator, directions=directions, predictor=predictor.to(device).eval(), dataset=dataset,
        config=config, device=device, walks=list(config.walks or default_walks(directions)),
        steps=config.step_range(generator.prior).nonzero(config.n_steps),  # max_eps None: T of the prior
        # CPU, device-independent numbers; block j: direction j
        z0=generator.prior.sample(directions.k * config.n_samples, config.seed),
    )


def image_metrics(ctx: EvalContext, names: list[str]) -> dict[str, ImageMetric]:
    """The requested metrics that consume walk images, built before the loop (so that they fail early)."""
    out = {}
    for name in names:
        if METRICS[name].get("needs_images"):
            metric = METRICS.load(name)(ctx)
            if not isinstance(metric, ImageMetric):
                raise TypeError(f"metric '{name}' is registered with needs_images but is no ImageMetric")
            out[name] = metric
    return out


def run_walks(ctx: EvalContext, metrics: list[ImageMetric]) -> None:
    """The one walk loop: walked latents of every (walk, direction) into ``ctx.walked`` and, when a metric
    needs them, their images, each generated once and shown to every image metric."""
    gen, batch_size = ctx.generator, ctx.config.batch_size
    if metrics:
        x0 = gen.generate(ctx.z0.to(gen.device), batch_size)
        for metric in metrics:
            metric.start(x0)
        del x0
    gammas = ctx.directions.directions
    bar = tqdm(total=len(ctx.walks) * ctx.k, desc="walks", disable=not ctx.config.progress, dynamic_ncols=True,
               leave=False)
    for w in ctx.walks:
        walk_fn, edit = ctx.walk_fn(w), is_feature_edit(w)
        for j in range(ctx.k):
            gamma, z0 = gammas[j].to(gen.device), ctx.z0[ctx.block(j)].to(gen.device)
            with torch.no_grad():
                zw = torch.cat([walk_fn(z0, gamma, e).cpu() for e in ctx.steps])
            ctx.walked[(w, j)] = zw
            images = masked_walk(ctx, w, j, walk_fn, bool(metrics)) if edit else None
            if metrics:
                if images is None:
                    images = gen.generate(zw.to(gen.device), batch_size)
                for metric in metrics:
                    metric.walked(w, j, images)
            bar.update(1)
    bar.close()


def masked_walk(ctx: EvalContext, w: str, j: int, walk_fn, render: bool) -> torch.Tensor | None:
    """Direction j's masked edit: its group by `choose_group` over its start latents and the step grid (recorded
    in ``ctx.loop_rows``), then, with ``render``, its images (CPU), and their exact factors into
    ``ctx.walked_exact`` where the generator tells them from features."""
    from dplase.subspace import channel_change, choose_group, masked_images

    gen, directions, batch_size = ctx.generator, ctx.directions, ctx.config.batch_size
    layer = directions.layer or gen.default_layer()
    masks = directions.channel_masks[j]
    z0, gamma = ctx.z0[ctx.block(j)], directions.directions[j].to(gen.device)
    group, share = choose_group(masks, channel_change(gen, layer, z0, gamma, ctx.steps, walk_fn, batch_size))
    n_changes = ctx.n * len(ctx.steps)
    note = (f"group {group} of {masks.shape[0]} ({int(masks[group].sum())} of {masks.shape[1]} channels at layer "
            f"{layer}): share of the mean squared G1 change of the {directions.walk} walk over the evaluation's "
            "start latents and steps")
    ctx.loop_rows += [{"walk": w, "direction": j, "metric": "masked_group", "value": float(group),
                       "n_samples": n_changes, "note": note},
                      {"walk": w, "direction": j, "metric": "masked_group_share", "value": share,
                       "n_samples": n_changes, "note": note}]
    if not render:
        return None
    exact_fn = getattr(gen, "exact_factors_from_features", None)
    images, feats = masked_images(gen, layer, z0, ctx.walked[(w, j)], masks[group], batch_size,
                                  keep_features=exact_fn is not None)
    if exact_fn is not None:
        exact = exact_fn(feats, layer)
        if exact is not None:
            ctx.walked_exact[(w, j)] = exact
    return images


def evaluate(
    generator, directions, predictor: FactorPredictor, dataset, config: EvalConfig | None = None,
    device: str | torch.device = "cpu",
) -> list[Row]:
    """All requested metrics as measurement dicts (walk, direction, step, metric, value, n_samples, extractor).

    ``directions`` is a DirectionSet; ``dataset`` the real dataset (dplase.data) the predictor was trained on.
    Use `results_frame` to add the run columns.
    """
    config = config or EvalConfig()
    ctx = make_context(generator, directions, predictor, dataset, config, device)
    names = [name for name in METRICS if name in config.metrics]  # registry order, whatever order was asked
    fed = image_metrics(ctx, names)
    run_walks(ctx, list(fed.values()))
    rows: list[Row] = []
    for name in names:
        rows += fed[name].rows() if name in fed else METRICS.load(name)(ctx)
    rows += ctx.loop_rows
    trained = trained_range(directions, ctx.generator.prior)
    for row in rows:  # per-step rows: inside the run's trained step range or extrapolated (requested max_eps)
        if row.get("step") is not None and row.get("extrapolated") is None:
            row["extrapolated"] = is_extrapolated(row["step"], trained)
    rows += convergence_rows(directions)
    rows += predictor_heldout_rows(predictor)
    return rows


def convergence_rows(directions) -> list[Row]:
    """An iterative method's convergence record (``extra["convergence"]``, `dplase.methods.convergence_record`)
    as rows ``convergence.<term>`` (walk, direction and step null): the relative change of the term's mean over
    the last 5% of steps against the 5% before. Closed-form methods record none, so give no rows."""
    record = (getattr(directions, "extra", None) or {}).get("convergence") or {}
    return [{"metric": f"convergence.{term}", "value": float(value),
             "note": "|mean(last 5% of steps) - mean(5% before)| / |mean(5% before)|" if math.isfinite(value) else
             "not defined: fewer than 2 logged values, or the earlier mean is 0"}
            for term, value in sorted(record.items())]


def predictor_heldout_rows(predictor: FactorPredictor) -> list[Row]:
    """The predictor's held-out scores (``meta["heldout"]``, from `train_predictor`) as rows, whatever metrics
    were asked: ``predictor_heldout_accuracy.<factor>`` (categorical) / ``predictor_heldout_r2.<factor>``
    (continuous; cyclic: R² of the (cos, sin) embedding), n_samples = the held-out set size (``meta["n_test"]``).
    A predictor without held-out scores (not made by `train_predictor`) gives no rows."""
    meta = getattr(predictor, "meta", None) or {}  # duck-typed predictors (e.g. test oracles) may have none
    heldout, n_test = meta.get("heldout") or {}, meta.get("n_test")
    periodic = {s["name"] for s in getattr(predictor, "specs", []) if s.get("period")}
    rows: list[Row] = []
    for factor, scores in heldout.items():
        for score in ("accuracy", "r2"):
            if score in scores:
                note = "R² of the (cos, sin) embedding (per-row fold)" if factor in periodic else None
                rows.append({"metric": f"predictor_heldout_{score}.{factor}", "value": float(scores[score]),
                             "n_samples": int(n_test) if n_test is not None else None, "note": note})
    return rows


def results_frame(rows: list[dict[str, Any]], generator, directions, dataset_name: str, run_id: str,
                  params: dict[str, Any] | None = None, config: EvalConfig | None = None) -> pd.DataFrame:
    """Add the run columns (model, method, k, layer, lambda, zeta, seed, params JSON) to measurement rows."""
    method_config = dict(directions.config or {})
    all_params = {**method_config, **(params or {})}
    if config is not None:
        all_params["eval"] = {k: v for k, v in asdict(config).items() if k not in ("progress", "extra")}

    fields = _option_fields(directions.method)

    def number(option: str) -> float | None:
        """A run option as given (config spelling), else the method config's field that holds it."""
        keys = (option, fields.get(option, option))
        value = next((all_params[k] for k in keys if k in all_params), None)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    base = {
        "run_id": run_id, "model": generator.name, "dataset": dataset_name, "method": directions.method,
        "space": getattr(directions, "space", "z"),
        "params": json.dumps(all_params, sort_keys=True, default=str), "k": directions.k,
        "layer": directions.layer or None, "lambda": number("lambda"), "zeta": number("zeta"),
        "seed": directions.seed,
    }
    return make_rows(base, rows)


def _option_fields(method: str) -> dict[str, str]:
    """Option (config spelling) -> config field of a registered method ({} for a foreign DirectionSet)."""
    from dplase.methods import METHODS, get_method, option_fields

    return option_fields(get_method(method).config_cls) if method in METHODS else {}
