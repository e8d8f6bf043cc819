"""Evaluate one DirectionSet on one generator: every metric, every walk, one long-format results frame.

The protocol is fixed so that methods are comparable: the same seeded start latents (``n_samples`` per
direction; direction j walks from its own block z0_j of one seeded draw of K x n_samples latents), the same
symmetric step grid (``n_steps`` values in [-max_eps, max_eps], 0 included), the same real
reference set. Each walked image is generated exactly once, in batches of one (walk, direction) at all steps,
and immediately feeds every metric that needs images (attribute change through the factor predictor, FID
features); only predictions and features are kept, so memory does not grow with the image count.

FID is computed per walk and signed step over the K x n_samples walked images of that step (all directions
pooled), each from a distinct start point; step 0 is the set of start images itself. (Pooling +eps and -eps,
or reusing few start points for all directions, would make small-step sets near-duplicates of each other
and inflate their FID through lost diversity.)

Seeds derived from ``seed``: start latents = seed, real images = seed + 2, code encoder = seed + 3,
RCA = seed + 4 (test pairs seed + 5).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dplase.metrics import attribute as attr
from dplase.metrics import density as dens
from dplase.metrics import disentanglement as dis
from dplase.metrics.fid import extract_features, fid_from_features, make_extractor
from dplase.metrics.predictor import FactorPredictor, Predictions
from dplase.results import make_rows

METRIC_GROUPS = ("attr", "disent", "fid", "density", "rca")
#: metrics that need generated walk images (the others work on latents or train their own models)
IMAGE_METRICS = ("attr", "fid")


@dataclass
class EvalConfig:
    """The evaluation protocol (fixed defaults; change only to make runs cheaper or larger)."""

    metrics: tuple[str, ...] = METRIC_GROUPS
    n_samples: int = 64  # start latents z0
    seed: int = 0
    max_eps: float = 3.0
    n_steps: int = 7  # odd: the grid contains 0
    walks: tuple[str, ...] | None = None  # None: linear, norm, and learned where the set has a correction
    extractor: str = "domain"
    inception_weights: str | None = None
    n_real: int = 2000  # real images: FID reference, attribute reference scales, disentanglement codes
    encoder_steps: int = 600
    encoder_batch_size: int = 64
    dci_importance: str = "gbt"
    dci_estimators: int = 100  # trees per factor for gbt importances (disentanglement_lib: sklearn's default)
    rca_steps: int = 400
    rca_test: int = 1024
    batch_size: int = 256
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRIC_GROUPS))
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_GROUPS)}")
        if self.n_steps < 2 or self.max_eps <= 0:
            raise ValueError(f"need n_steps >= 2 and max_eps > 0, got {self.n_steps} and {self.max_eps}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {self.n_samples}")

    def step_grid(self) -> np.ndarray:
        """The symmetric step grid, rounded so that steps compare exactly across runs."""
        grid = np.linspace(-self.max_eps, self.max_eps, self.n_steps)
        if self.n_steps % 2 == 0:
            grid = np.sort(np.append(grid, 0.0))
        return np.round(grid, 6)


def default_walks(directions) -> list[str]:
    """linear and norm always; learned when the DirectionSet carries a correction network."""
    walks = ["linear", "norm"]
    extra = getattr(directions, "extra", {}) or {}
    if "correction" in extra or any(str(k).startswith("correction.") for k in extra):
        walks.append("learned")
    return walks


def _concat_predictions(parts: list[Predictions]) -> Predictions:
    out = Predictions(values={})
    for key in ("values", "probs", "embeddings"):
        merged = defaultdict(list)
        for p in parts:
            for name, value in getattr(p, key).items():
                merged[name].append(value)
        setattr(out, key, {name: torch.cat(v) for name, v in merged.items()})
    return out


def evaluate(
    generator, directions, predictor: FactorPredictor, dataset, config: EvalConfig | None = None,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """All requested metrics as measurement dicts (walk, direction, step, metric, value, n_samples, extractor).

    ``directions`` is a DirectionSet; ``dataset`` the real dataset (dplase.data) the predictor was trained on.
    Use `results_frame` to add the run columns.
    """
    config = config or EvalConfig()
    from dplase.walks import walk_for

    if dataset.image_size != generator.image_size or dataset.channels != generator.channels:
        raise ValueError(
            f"dataset {dataset.name} ({dataset.channels}x{dataset.image_size}px) does not match the generator "
            f"({generator.channels}x{generator.image_size}px)"
        )
    if directions.z_dim != generator.z_dim:
        raise ValueError(f"directions have d={directions.z_dim}, the generator z_dim={generator.z_dim}")
    predictor = predictor.to(device).eval()
    walks = list(config.walks or default_walks(directions))
    grid = config.step_grid()
    steps = [float(s) for s in grid if s != 0]
    gammas = directions.directions
    n, k = config.n_samples, directions.k
    metrics = set(config.metrics)
    rows: list[dict[str, Any]] = []

    z0_all = generator.prior.sample(k * n, config.seed)  # CPU, device-independent numbers; block j: direction j
    need_images = bool(metrics & set(IMAGE_METRICS))
    real_images, real_factors = dataset.sample(config.n_real, config.seed + 2)
    extractor = make_extractor(config.extractor, predictor, config.inception_weights, device) \
        if "fid" in metrics else None
    specs = predictor.specs

    start_pred: Predictions | None = None
    scales: dict[str, float] = {}
    real_feats = None
    fid_feats: dict[tuple[str, float], list[np.ndarray]] = defaultdict(list)
    if need_images:
        x0 = generator.generate(z0_all.to(generator.device), config.batch_size)
        if "attr" in metrics:
            start_pred = predictor.predict(x0)
            scales = attr.reference_scales(specs, predictor.predict(real_images), seed=config.seed)
        if extractor is not None:
            real_feats = extract_features(real_images, extractor, config.batch_size, device)
            start_feats = extract_features(x0, extractor, config.batch_size, device)
            for w in walks:
                fid_feats[(w, 0.0)] = [start_feats]

    bounds = dens.norm_bounds(generator.prior) if "density" in metrics else None
    per_direction_change: dict[str, list[dict[str, float]]] = defaultdict(list)
    bar = tqdm(total=len(walks) * k, desc="walks", disable=not config.progress, dynamic_ncols=True, leave=False)
    for w in walks:
        walk_fn = walk_for(directions, w, device=generator.device)
        for j in range(k):
            gamma, z0 = gammas[j], z0_all[j * n:(j + 1) * n]
            with torch.no_grad():
                zw = torch.cat([walk_fn(z0.to(generator.device), gamma.to(generator.device), e).cpu()
                                for e in steps])
            if "density" in metrics:
                rows += _density_rows(generator.prior, z0, zw, steps, w, j, bounds)
            if not need_images:
                bar.update(1)
                continue
            images = generator.generate(zw.to(generator.device), config.batch_size)
            if start_pred is not None:
                pred = predictor.predict(images)
                start_j = attr.subset(start_pred, slice(j * n, (j + 1) * n))
                direction_rows, summary = _attr_rows(specs, start_j, pred, steps, n, scales, w, j)
                rows += direction_rows
                per_direction_change[w].append(summary)
            if extractor is not None:
                feats = extract_features(images, extractor, config.batch_size, device)
                for i, e in enumerate(steps):
                    fid_feats[(w, e)].append(feats[i * n:(i + 1) * n])
            bar.update(1)
    bar.close()

    if start_pred is not None:
        rows += _attr_summary_rows(per_direction_change, [s["name"] for s in specs], n * len(steps))
    if extractor is not None:
        for (w, step), parts in sorted(fid_feats.items()):
            feats = np.concatenate(parts)
            rows.append({"walk": w, "step": step, "metric": "fid", "value": fid_from_features(feats, real_feats),
                         "n_samples": len(feats), "extractor": config.extractor})
        rows.append({"metric": "fid_real_reference_size", "value": float(len(real_feats)),
                     "n_samples": len(real_feats), "extractor": config.extractor})
    if "disent" in metrics:
        rows += _disent_rows(generator, directions, dataset, real_images, real_factors, config)
    if "rca" in metrics:
        from dplase.metrics.rca import rca

        for w in walks:
            walk_fn = walk_for(directions, w, device=generator.device)
            # shifts up to the grid's max |eps| (not Voynov's 6, tuned for d = 512): RCA then probes the same
            # step range as every other metric
            value = rca(generator, gammas, walk_fn, steps=config.rca_steps, n_test=config.rca_test,
                        seed=config.seed + 4, shift_scale=config.max_eps, min_shift=min(0.5, config.max_eps / 2),
                        device=generator.device, progress=config.progress)
            rows.append({"walk": w, "metric": "rca", "value": value, "n_samples": config.rca_test})
    return rows


def _density_rows(prior, z0: torch.Tensor, zw: torch.Tensor, steps: list[float], walk: str, j: int,
                  bounds: tuple[float, float] | None) -> list[dict[str, Any]]:
    n = len(z0)
    rows = []
    for i, e in enumerate(steps):
        summary = dens.density_summary(prior, z0, zw[i * n:(i + 1) * n], bounds)
        rows += [{"walk": walk, "direction": j, "step": e, "metric": name, "value": value, "n_samples": n}
                 for name, value in summary.items()]
    return rows


def _attr_rows(specs: list[dict], start: Predictions, walked: Predictions, steps: list[float], n: int,
               scales: dict[str, float], walk: str, j: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-step rows ``attr_change.<factor>`` and the direction's mean change per factor over all steps."""
    rows = []
    totals: dict[str, list[float]] = defaultdict(list)
    for i, e in enumerate(steps):
        change = attr.changes(specs, start, attr.subset(walked, slice(i * n, (i + 1) * n)))
        for name, values in change.items():
            value = float(values.mean()) / scales[name]
            totals[name].append(value)
            rows.append({"walk": walk, "direction": j, "step": e, "metric": f"attr_change.{name}", "value": value,
                         "n_samples": n})
    return rows, {name: float(np.mean(v)) for name, v in totals.items()}


def _attr_summary_rows(per_direction: dict[str, list[dict[str, float]]], names: list[str],
                       n_images: int) -> list[dict[str, Any]]:
    """The directions x factors matrix (step null) and each direction's top-factor share."""
    rows = []
    for w, summaries in per_direction.items():
        matrix = attr.change_matrix(summaries, names)
        shares = attr.top_share(matrix)
        for j in range(len(matrix)):
            rows += [{"walk": w, "direction": j, "metric": f"attr_change.{name}", "value": float(matrix[j, f]),
                      "n_samples": n_images} for f, name in enumerate(names)]
            rows.append({"walk": w, "direction": j, "metric": "attr_top_share", "value": float(shares[j]),
                         "n_samples": n_images})
        rows.append({"walk": w, "metric": "attr_top_share", "value": float(np.nanmean(shares)),
                     "n_samples": n_images * len(matrix)})
    return rows


def _disent_rows(generator, directions, dataset, real_images: torch.Tensor, real_factors: pd.DataFrame,
                 config: EvalConfig) -> list[dict[str, Any]]:
    encoder = dis.train_code_encoder(generator, directions.directions, steps=config.encoder_steps,
                                     seed=config.seed + 3, batch_size=config.encoder_batch_size,
                                     progress=config.progress)
    codes = dis.encode(encoder, real_images)
    factors = dis.factor_codes(real_factors, dataset.factor_specs)
    scores = dis.disentanglement_scores(codes, factors, importance=config.dci_importance, seed=config.seed,
                                        n_estimators=config.dci_estimators)
    return [{"metric": name, "value": value, "n_samples": len(codes)} for name, value in scores.items()]


def results_frame(rows: list[dict[str, Any]], generator, directions, dataset_name: str, run_id: str,
                  params: dict[str, Any] | None = None, config: EvalConfig | None = None) -> pd.DataFrame:
    """Add the run columns (model, method, k, layer, lambda, zeta, seed, params JSON) to measurement rows."""
    method_config = dict(directions.config or {})
    all_params = {**method_config, **(params or {})}
    if config is not None:
        all_params["eval"] = {k: v for k, v in asdict(config).items() if k not in ("progress", "extra")}

    def number(*keys: str) -> float | None:
        value = next((all_params[k] for k in keys if k in all_params), None)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    base = {
        "run_id": run_id, "model": generator.name, "dataset": dataset_name, "method": directions.method,
        "params": json.dumps(all_params, sort_keys=True, default=str), "k": directions.k,
        "layer": directions.layer or None, "lambda": number("lambda", "lam", "lambda_"), "zeta": number("zeta"),
        "seed": directions.seed,
    }
    return make_rows(base, rows)
