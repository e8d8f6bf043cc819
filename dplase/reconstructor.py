"""The Voynov-Babenko reconstructor: from an image pair (G(z), G(walk(z, γ_k, ε))) predict k and ε.

Used twice: trained jointly with the directions by the ``voynov`` method, and trained alone on fixed
directions for the label-free RCA metric (reconstructor classification accuracy, Voynov & Babenko 2020):
directions that change images in distinguishable ways give a high held-out accuracy.

Pairs are made the published way: a direction index k uniform over the K directions, a shift ε uniform in
[-scale, scale] (or normal with std ``scale``) whose magnitude is raised to at least ``min_shift``;
the losses are ``label_weight`` * cross-entropy(k) + ``shift_weight`` * L1(ε).

`ShiftSampler`'s defaults are the published scale 6 and minimum 0.5 (d = 512); both callers, the ``voynov``
method and RCA, pass the project's one step range instead (`dplase.walks.steps.shift_range`: scale T of the
prior, minimum T / 12), which a saved reconstructor records in its spec.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dplase.artifacts import ArtifactError, load_artifact, save_artifact
from dplase.generators.base import GeneratorAdapter
from dplase.training.loop import LoopState, check_finite_update, run_loop, step_generator
from dplase.walks import WalkFn  # (z0, gamma, eps) -> walked latents, e.g. from dplase.walks.walk_for

SHIFT_DISTRIBUTIONS = ("uniform", "normal")


@dataclass(frozen=True)
class ShiftSampler:
    """How (direction index, shift) pairs are drawn; the published defaults."""

    scale: float = 6.0
    min_shift: float = 0.5
    distribution: str = "uniform"

    def __post_init__(self) -> None:
        if self.distribution not in SHIFT_DISTRIBUTIONS:
            raise ValueError(
                f"unknown shift distribution '{self.distribution}'; choose one of {', '.join(SHIFT_DISTRIBUTIONS)}"
            )
        if self.scale <= 0 or self.min_shift < 0:
            raise ValueError(f"need scale > 0 and min_shift >= 0, got {self.scale} and {self.min_shift}")

    def sample(self, n: int, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` direction indices in [0, k) and shifts, drawn on CPU from ``gen``."""
        indices = torch.randint(0, k, (n,), generator=gen)
        if self.distribution == "uniform":
            raw = 2.0 * torch.rand(n, generator=gen) - 1.0
        else:
            raw = torch.randn(n, generator=gen)
        shifts = self.scale * raw
        # tiny shifts are invisible, so the label would be unlearnable: push them out to +-min_shift
        sign = torch.where(shifts < 0, -1.0, 1.0)
        shifts = torch.where(shifts.abs() < self.min_shift, sign * self.min_shift, shifts)
        return indices, shifts


class Reconstructor(nn.Module):
    """Small CNN on the channel-stacked pair: four stride-2 conv + BatchNorm + ReLU blocks, global average
    pooling, then a K-way label head and a scalar shift head."""

    def __init__(self, k: int, channels: int, width: int = 16, shifts: ShiftSampler | None = None) -> None:
        super().__init__()
        self.k, self.channels, self.width = k, channels, width
        self.shifts = shifts or ShiftSampler()
        widths = [2 * channels, width, 2 * width, 4 * width, 4 * width]
        blocks: list[nn.Module] = []
        for c_in, c_out in pairwise(widths):
            # BatchNorm always on batch statistics: normalising each channel over the batch removes the
            # content all images share, which is what makes the pair's change learnable (per-sample
            # GroupNorm did not learn at all on a low-contrast generator), and with no running statistics
            # held-out predictions behave as in training (lagging running statistics collapsed them to one
            # class). Predictions therefore depend on the batch: evaluate in batches of random pairs.
            blocks += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c_out, track_running_stats=False), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.label_head = nn.Linear(widths[-1], k)
        self.shift_head = nn.Linear(widths[-1], 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits N x K, predicted shift N) for image pairs N x C x H x W."""
        h = self.body(torch.cat([x0, x1], dim=1)).mean(dim=(2, 3))
        return self.label_head(h), self.shift_head(h).squeeze(1)

    def spec(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"k": self.k, "channels": self.channels, "width": self.width, "shifts": asdict(self.shifts)}


def build_reconstructor(k: int, channels: int, width: int = 16, shifts: ShiftSampler | None = None,
                        seed: int = 0, device: str | torch.device = "cpu") -> Reconstructor:
    """A freshly initialised reconstructor; the init is a function of ``seed`` only (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Reconstructor(k, channels, width, shifts)
    return model.to(device)


def sample_pairs(
    generator: GeneratorAdapter, directions: torch.Tensor, walk_fn: WalkFn, batch_size: int,
    shifts: ShiftSampler, gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G(z), G(walk(z, γ_k, ε)), k, ε) for a batch; gradients reach ``directions`` through the second image."""
    device = directions.device
    z = generator.prior.sample(batch_size, gen, device=device)
    indices, eps = shifts.sample(batch_size, directions.shape[0], gen)
    indices, eps = indices.to(device), eps.to(device)
    with torch.no_grad():
        x0 = generator(z)
    x1 = generator(walk_fn(z, directions[indices], eps))
    return x0, x1, indices, eps


def reconstructor_terms(
    model: Reconstructor, x0: torch.Tensor, x1: torch.Tensor, indices: torch.Tensor, eps: torch.Tensor,
    label_weight: float = 1.0, shift_weight: float = 0.25,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms ("label", "shift") and the batch accuracy (not a loss; logged for the curves)."""
    logits, shift_pred = model(x0, x1)
    label = label_weight * F.cross_entropy(logits, indices)
    shift = shift_weight * (shift_pred - eps).abs().mean()
    accuracy = (logits.argmax(dim=1) == indices).float().mean().detach()
    return {"label": label, "shift": shift, "batch_accuracy": accuracy}


def train_reconstructor(
    generator: GeneratorAdapter,
    directions: torch.Tensor,
    walk_fn: WalkFn,
    steps: int,
    batch_size: int = 32,
    shifts: ShiftSampler | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    lr: float = 1e-3,
    width: int = 16,
    label_weight: float = 1.0,
    shift_weight: float = 0.25,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = False,
) -> tuple[Reconstructor, list[tuple[int, str, float]]]:
    """Train a reconstructor on fixed ``directions`` (K x d); returns (model in eval mode, loss history).

    All randomness comes from ``seed`` (model init and per-step pairs), so the result is reproducible and
    resumes exactly from ``checkpoint_path``.
    """
    shifts = shifts or ShiftSampler()
    directions = directions.detach().to(device, torch.float32)
    model = build_reconstructor(directions.shape[0], generator.channels, width, shifts, seed, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        gen = step_generator(seed, step)
        x0, x1, idx, eps = sample_pairs(generator, directions, walk_fn, batch_size, shifts, gen)
        terms = reconstructor_terms(model, x0, x1, idx, eps, label_weight, shift_weight)
        opt.zero_grad(set_to_none=True)
        (terms["label"] + terms["shift"]).backward()
        check_finite_update({"label": terms["label"], "shift": terms["shift"]}, model.parameters(), step)
        opt.step()
        return terms

    model.train()
    meta = {"purpose": "reconstructor", "k": int(directions.shape[0]), "batch_size": batch_size, "lr": lr,
            "seed": seed, "steps": steps, "spec": model.spec(),
            "weights": [label_weight, shift_weight], "generator_sha256": generator.checkpoint_sha256}
    state = run_loop(total_steps=steps, step_fn=step_fn, state=LoopState({"model": model, "opt": opt}),
                     checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
                     kind="reconstructor-checkpoint", meta=meta, desc="reconstructor", progress=progress)
    return model.eval(), state.history


@torch.no_grad()
def predict_pairs(
    model: Reconstructor, generator: GeneratorAdapter, directions: torch.Tensor, walk_fn: WalkFn, n: int,
    seed: int, batch_size: int = 128, shifts: ShiftSampler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(true indices, predicted indices) on ``n`` fresh pairs drawn from ``seed`` (model in eval mode)."""
    shifts = shifts or model.shifts
    device = next(model.parameters()).device
    directions = directions.detach().to(device, torch.float32)
    was_training = model.training
    model.eval()
    truth, pred = [], []
    for i, start in enumerate(range(0, n, batch_size)):
        size = min(batch_size, n - start)
        x0, x1, idx, _ = sample_pairs(generator, directions, walk_fn, size, shifts, step_generator(seed, i))
        truth.append(idx.cpu())
        pred.append(model(x0, x1)[0].argmax(dim=1).cpu())
    model.train(was_training)
    return torch.cat(truth), torch.cat(pred)


def reconstructor_accuracy(
    model: Reconstructor, generator: GeneratorAdapter, directions: torch.Tensor, walk_fn: WalkFn, n: int = 2048,
    seed: int = 0, batch_size: int = 128, shifts: ShiftSampler | None = None,
) -> float:
    """Held-out accuracy of predicting the direction index (RCA); chance is 1/K."""
    truth, pred = predict_pairs(model, generator, directions, walk_fn, n, seed, batch_size, shifts)
    return float((truth == pred).float().mean())


def per_direction_accuracy(
    model: Reconstructor, generator: GeneratorAdapter, directions: torch.Tensor, walk_fn: WalkFn, n: int = 2048,
    seed: int = 0, batch_size: int = 128, shifts: ShiftSampler | None = None,
) -> torch.Tensor:
    """Recall of each direction index (K values; NaN-free: a direction never drawn scores 0)."""
    truth, pred = predict_pairs(model, generator, directions, walk_fn, n, seed, batch_size, shifts)
    k = directions.shape[0]
    hits = torch.zeros(k).index_add_(0, truth, (truth == pred).float())
    counts = torch.zeros(k).index_add_(0, truth, torch.ones_like(truth, dtype=torch.float32))
    return hits / counts.clamp_min(1.0)


def save_reconstructor(path: str | os.PathLike, model: Reconstructor, meta: dict[str, Any] | None = None) -> Path:
    """Write a trained reconstructor as plain tensors + JSON (its architecture and shift sampler)."""
    state = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    return save_artifact(path, "reconstructor", {"state": state}, {**(meta or {}), "spec": model.spec()})


def load_reconstructor(path: str | os.PathLike, device: str | torch.device = "cpu") -> Reconstructor:
    """Rebuild a reconstructor written by `save_reconstructor` (eval mode)."""
    tensors, meta = load_artifact(path, kind="reconstructor")
    try:
        spec = dict(meta["spec"])
        model = Reconstructor(spec["k"], spec["channels"], spec["width"], ShiftSampler(**spec["shifts"]))
        model.load_state_dict(tensors["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a hand-made or foreign file
        reason = " ".join(str(err).split())  # load_state_dict's message spans lines
        raise ArtifactError(f"{path}: not a valid reconstructor ({type(err).__name__}: {reason})") from err
    return model.to(device).eval()
