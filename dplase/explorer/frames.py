"""The explorer's frames: each run's walks rendered once, from the evaluation's own seeded start latents.

`render_frames` repeats the evaluation's draws (`dplase.metrics.evaluate.make_context`): z0 = the prior's
``k * n_samples`` latents from the run's evaluation seed, direction j walking from its block j, over the run's
step grid (0 included: the start image G(z0) itself) and walks (its recorded ``walks``, else the DirectionSet's
defaults). Of each block the first ``n_starts`` start latents are rendered (the cap), each as one PNG strip of
its frames in step order, downscaled by area averaging where the generator's images are larger than
``image_size``. The masked edit uses the group the evaluation chose (its ``masked_group`` rows), else the same
rule (`dplase.subspace.choose_group` over the whole block and the non-zero steps).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: how a start latent is fingerprinted (its float32 bytes) for the page's "same start latents" check
FINGERPRINT_CHARS = 12


@dataclass
class DirectionFrames:
    """One direction under one walk: a PNG strip per start (frames in step order) and, for the masked edit,
    the channel group used and its share of the change."""

    strips: list[bytes]
    group: tuple[int, float] | None = None


@dataclass
class RunFrames:
    """Every rendered frame of one run, with what the page states about how it was made."""

    steps: list[float]  # the evaluation's step grid, 0 included
    max_step: float
    n_starts: int
    n_samples: int
    eval_seed: int
    image_shape: tuple[int, int, int]  # height, width, channels of one (downscaled) frame
    native_size: int
    walks: dict[str, list[DirectionFrames]] = field(default_factory=dict)
    #: per direction, per start: a fingerprint of the start latent (equal across runs that share it)
    fingerprints: list[list[str]] = field(default_factory=list)
    #: per direction: (planted factor, |cos|) of the Hungarian match, for generators with planted directions
    matched: list[tuple[str, float] | None] = field(default_factory=list)
    recovery: float | None = None

    @property
    def n_frames(self) -> int:
        return sum(len(d.strips) for dirs in self.walks.values() for d in dirs) * len(self.steps)

    @property
    def n_bytes(self) -> int:
        return sum(len(s) for dirs in self.walks.values() for d in dirs for s in d.strips)


def eval_config(protocol: Mapping[str, Any]):
    """The run's `EvalConfig` from its recorded protocol (the results' ``params["eval"]``; unknown keys of
    another package version are left out)."""
    from dplase.metrics.context import EvalConfig

    names = {f.name for f in dataclasses.fields(EvalConfig)} - {"progress", "extra"}
    options = {k: tuple(v) if k in ("metrics", "walks") and v is not None else v
               for k, v in protocol.items() if k in names}
    return EvalConfig(**options, progress=False)


def to_uint8(images: torch.Tensor, image_size: int) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC, area-downscaled so that neither side exceeds ``image_size``."""
    height, width = images.shape[-2:]
    scale = max(height, width) / image_size
    if scale > 1:
        size = (max(1, round(height / scale)), max(1, round(width / scale)))
        images = F.interpolate(images.float(), size=size, mode="area")
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def png_strip(frames: np.ndarray) -> bytes:
    """Frames (S x H x W x C uint8) side by side as one PNG (grayscale for one channel)."""
    from PIL import Image

    strip = np.concatenate(list(frames), axis=1)
    image = Image.fromarray(strip[..., 0] if strip.shape[-1] == 1 else strip)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def fingerprint(z: torch.Tensor) -> str:
    """A short hash of one latent's float32 values."""
    data = z.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:FINGERPRINT_CHARS]


def planted_matches(adapter: Any, directions: torch.Tensor) -> tuple[list[tuple[str, float] | None], float | None]:
    """Per direction its matched planted factor and |cos| (`dplase.metrics.recovery.recovery_scores`) and the
    mean matched |cos|; ([None...], None) for a generator without planted directions."""
    if not hasattr(adapter, "planted_directions"):
        return [None] * len(directions), None
    from dplase.metrics.recovery import recovery_scores

    scores = recovery_scores(directions, adapter.planted_directions())
    matched: list[tuple[str, float] | None] = [None] * len(directions)
    for f, j in enumerate(scores["matched_direction"]):
        if j >= 0:
            matched[int(j)] = (str(adapter.factor_names[f]), float(scores["per_factor"][f]))
    return matched, float(scores["mean"])


def render_frames(generator: str | os.PathLike, directions: str | os.PathLike, protocol: Mapping[str, Any],
                  n_starts: int, image_size: int, masked_groups: Mapping[int, tuple[int, float]] | None = None,
                  device: str | torch.device = "cpu") -> RunFrames:
    """Render one run's frames (see the module docstring); ``masked_groups``: direction -> the evaluation's
    (``masked_group``, ``masked_group_share``). The generator walks in the DirectionSet's latent space, as in the
    evaluation."""
    from dplase.directions import DirectionSet
    from dplase.generators.registry import load_generator
    from dplase.walks import default_walks

    direction_set = DirectionSet.load(directions)
    adapter = load_generator(generator, device=device)
    space = getattr(direction_set, "space", None)
    if space and space != getattr(adapter, "space", "z"):  # the space the evaluation walked in
        adapter = adapter.in_space(space)
    if direction_set.z_dim != adapter.z_dim:
        raise ValueError(f"{directions}: directions have z_dim {direction_set.z_dim}, the generator {adapter.z_dim}")
    config = eval_config(protocol)
    grid = [float(s) for s in config.step_grid(adapter.prior)]
    n, k, shown = config.n_samples, direction_set.k, min(int(n_starts), config.n_samples)
    z0 = adapter.prior.sample(k * n, config.seed)  # exactly the evaluation's draw: block j is direction j's
    matched, recovery = planted_matches(adapter, direction_set.directions)
    out = RunFrames(steps=grid, max_step=float(config.step_range(adapter.prior).max_step), n_starts=shown,
                    n_samples=n, eval_seed=int(config.seed), image_shape=(0, 0, adapter.channels),
                    native_size=int(adapter.image_size), matched=matched, recovery=recovery,
                    fingerprints=[[fingerprint(z) for z in z0[j * n: j * n + shown]] for j in range(k)])
    starts = [adapter.generate(z0[j * n: j * n + shown], config.batch_size) for j in range(k)]
    for walk in list(config.walks or default_walks(direction_set)):
        out.walks[walk] = [_direction(adapter, direction_set, walk, j, z0[j * n: (j + 1) * n], shown, starts[j],
                                      grid, config.batch_size, image_size, (masked_groups or {}).get(j), device)
                           for j in range(k)]
    frame = to_uint8(starts[0][:1], image_size)[0]
    out.image_shape = tuple(int(v) for v in frame.shape)
    return out


@torch.no_grad()
def _direction(adapter: Any, direction_set: Any, walk: str, j: int, block: torch.Tensor, shown: int,
               start_images: torch.Tensor, grid: list[float], batch_size: int, image_size: int,
               group: tuple[int, float] | None, device: str | torch.device) -> DirectionFrames:
    """Direction j's strips under ``walk`` for the first ``shown`` starts of its block (as the evaluation walks
    them: the whole step-major batch of one direction, latents back on CPU)."""
    from dplase.walks import is_feature_edit, walk_for

    walk_fn = walk_for(direction_set, walk, device=device)
    gamma = direction_set.directions[j].to(adapter.device)
    steps = [e for e in grid if e != 0]
    starts = block[:shown].to(adapter.device)
    zw = torch.cat([walk_fn(starts, gamma, e).cpu() for e in steps])
    chosen = None
    if is_feature_edit(walk):
        images, chosen = _masked(adapter, direction_set, j, block, gamma, steps, walk_fn, starts, zw, batch_size,
                                 group)
    else:
        images = adapter.generate(zw, batch_size)
    frames = torch.empty(shown, len(grid), *start_images.shape[1:])
    for i, e in enumerate(grid):
        if e == 0:
            frames[:, i] = start_images
        else:
            row = steps.index(e)
            frames[:, i] = images[row * shown: (row + 1) * shown]
    strips = [png_strip(to_uint8(frames[s], image_size)) for s in range(shown)]
    return DirectionFrames(strips=strips, group=chosen)


def _masked(adapter: Any, direction_set: Any, j: int, block: torch.Tensor, gamma: torch.Tensor, steps: list[float],
            walk_fn: Any, starts: torch.Tensor, zw: torch.Tensor, batch_size: int,
            group: tuple[int, float] | None) -> tuple[torch.Tensor, tuple[int, float]]:
    """The masked edit's images of the shown starts, in the evaluation's group (or chosen by its rule)."""
    from dplase.subspace import channel_change, choose_group, masked_images

    layer = direction_set.layer or adapter.default_layer()
    masks = direction_set.channel_masks[j]
    if group is None:
        group = choose_group(masks, channel_change(adapter, layer, block, gamma, steps, walk_fn, batch_size))
    images, _ = masked_images(adapter, layer, starts.cpu(), zw, masks[int(group[0])], batch_size)
    return images, (int(group[0]), float(group[1]))
