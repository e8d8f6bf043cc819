"""Channel subspace learning for one direction, and the channel-masked edit.

For a direction gamma, features f = G1(walk(z0, gamma, alpha)), alpha ~ U(-T, T), are flattened to (C, M)
over batch and pixels. A self-expressive matrix S (C x C, zero diagonal) reconstructs each channel from the
others, f_rec = S f, with loss w_f mean((f - f_rec)^2) + w_x mean((G2(f) - G2(f_rec))^2) + w_s R(S). Channels
that explain each other form a subspace: S is thresholded per row (keep the largest entries covering a
fraction rho of the row's L1 mass), symmetrised, embedded by a truncated SVD, turned into an affinity
((normalised U U^T)_+ ^ power) and split by spectral clustering into groups. An edit restricted to group k
mixes features: f_edit = M_k * G1(walk(z0, gamma, alpha)) + (1 - M_k) * G1(z0).

Which group a direction's masked edit uses (the evaluation walk ``masked``, `dplase.walks.EVAL_WALKS`) follows
one rule, `choose_group`: the group whose channels carry the largest share of the direction's mean squared
feature change, mean over start latents, steps and positions of (G1(walk(z0, gamma, eps)) - G1(z0))^2
(`channel_change`), computed once from the start latents and steps at hand (the evaluation's seeded z0 and
step grid). A group's share grows with its size as well as with its channels' change: it is the share of the
change the edit keeps. `masked_images` renders the edit for walked latents in batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dplase.generators.base import GeneratorAdapter
from dplase.walks import WalkFn as Walk
from dplase.walks.steps import StepRange


@dataclass
class SubspaceConfig:
    """Hyperparameters of channel-subspace learning (the authors used rho 0.2-0.5, 6 groups, dim 12-15,
    power 3)."""

    steps: int = 200
    batch: int = 8
    lr: float = 1e-2
    groups: int = 6
    dim: int = 12
    rho: float = 0.3
    power: float = 3.0
    w_feat: float = 1.0
    w_img: float = 1.0
    w_sparse: float = 1e-2
    reg: str = "l2"  # R(S): "l2" = mean(S^2), "l1" = mean|S|


class SelfExpression(nn.Module):
    """K self-expressive matrices (one per direction), each C x C; the diagonal is masked to zero."""

    def __init__(self, k: int, channels: int) -> None:
        super().__init__()
        self.weight = nn.ParameterList(nn.Parameter(torch.zeros(channels, channels)) for _ in range(k))
        self.register_buffer("off_diag", 1 - torch.eye(channels))

    def matrix(self, j: int) -> torch.Tensor:
        return self.weight[j] * self.off_diag


def reconstruct(s: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """S f over the channel axis (dim 1) of features N x C (x H x W)."""
    return torch.einsum("cd,nd...->nc...", s, f)


def subspace_loss(
    s: torch.Tensor, f: torch.Tensor, g2: Callable[[torch.Tensor], torch.Tensor], cfg: SubspaceConfig
) -> dict[str, torch.Tensor]:
    """Loss terms for features ``f`` (N x C ...): feature and image reconstruction, sparsity of S."""
    f_rec = reconstruct(s, f)
    terms = {"sub_feat": cfg.w_feat * (f - f_rec).pow(2).mean()}
    if cfg.w_img > 0:
        with torch.no_grad():
            target = g2(f)
        terms["sub_img"] = cfg.w_img * (target - g2(f_rec)).pow(2).mean()
    reg = s.abs().mean() if cfg.reg == "l1" else s.pow(2).mean()
    terms["sub_sparse"] = cfg.w_sparse * reg
    return terms


def subspace_step(
    module: SelfExpression, j: int, generator: GeneratorAdapter, layer: str, gamma: torch.Tensor,
    walk: Walk, max_step: float, cfg: SubspaceConfig, gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """One step's loss terms for direction ``j`` (randomness from ``gen``)."""
    z0 = generator.prior.sample(cfg.batch, gen).to(generator.device)
    alpha = StepRange(max_step).sample(cfg.batch, gen).to(generator.device)
    with torch.no_grad():
        zw = walk(z0, gamma.to(z0), alpha)
        f = generator.features(zw, layer)
    return subspace_loss(module.matrix(j), f, lambda x: generator.from_features(x, layer, zw), cfg)


def threshold_rows(s: np.ndarray, rho: float) -> np.ndarray:
    """Per row keep the largest |entries| whose cumulative L1 mass first reaches ``rho`` of the row's."""
    out = np.zeros_like(s)
    mags = np.abs(s)
    for i, row in enumerate(mags):
        total = row.sum()
        if total <= 0:
            continue
        order = np.argsort(-row, kind="stable")
        keep = int(np.searchsorted(np.cumsum(row[order]), rho * total) + 1)
        idx = order[:keep]
        out[i, idx] = s[i, idx]
    return out


def affinity_matrix(s: np.ndarray, groups: int, dim: int, rho: float, power: float) -> np.ndarray:
    """Channel affinity from a self-expressive matrix (threshold, symmetrise, low-rank embedding)."""
    c = np.abs(threshold_rows(s, rho))
    c = 0.5 * (c + c.T)  # symmetrised magnitudes: a negative coefficient is as strong a link as a positive one
    rank = max(1, min(dim * groups + 1, c.shape[0] - 1))
    u, sv, _ = np.linalg.svd(c)
    u = u[:, :rank] * np.sqrt(sv[:rank])[None, :]
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    u = u / np.where(norms > 0, norms, 1.0)
    z = np.clip(u @ u.T, 0.0, None) ** power
    top = z.max()
    z = z / top if top > 0 else z
    return 0.5 * (z + z.T)


def cluster_channels(s: torch.Tensor, groups: int, dim: int, rho: float, power: float, seed: int) -> np.ndarray:
    """Group label per channel by spectral clustering (scikit-learn) of the affinity."""
    from sklearn.cluster import SpectralClustering

    c = s.shape[0]
    groups = min(groups, c)
    affinity = affinity_matrix(s.detach().double().cpu().numpy(), groups, dim, rho, power)
    if groups == 1:
        return np.zeros(c, dtype=np.int64)
    # a channel with no affinity at all would make the graph disconnected; it links weakly to itself
    affinity = affinity + 1e-8 * np.eye(c)
    model = SpectralClustering(n_clusters=groups, affinity="precomputed", assign_labels="discretize",
                               random_state=seed)
    with warnings.catch_warnings():
        # well-separated channel groups give a disconnected graph: the ideal case, not a problem
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return model.fit_predict(affinity).astype(np.int64)


def labels_to_masks(labels: np.ndarray, groups: int) -> torch.Tensor:
    """One 0/1 channel mask per group (groups x C)."""
    lab = torch.as_tensor(labels, dtype=torch.int64)
    return (lab[None, :] == torch.arange(groups)[:, None]).float()


def masked_features(f0: torch.Tensor, f_walk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """M * f_walk + (1 - M) * f0, with the channel mask (C,) broadcast over batch and space."""
    m = mask.to(f0).reshape(1, -1, *([1] * (f0.ndim - 2)))
    return m * f_walk + (1 - m) * f0


@torch.no_grad()
def masked_edit(
    generator: GeneratorAdapter, layer: str, z0: torch.Tensor, gamma: torch.Tensor, alpha: torch.Tensor | float,
    mask: torch.Tensor, walk: Walk,
) -> torch.Tensor:
    """Images of an edit restricted to the channels in ``mask``: G2(M * G1(walk) + (1 - M) * G1(z0)) (a G2
    that needs the latent gets the walked one: the later layers' styles follow the walk)."""
    z0 = z0.to(generator.device)
    alpha_t = torch.as_tensor(alpha, dtype=z0.dtype, device=z0.device).expand(z0.shape[0])
    f0 = generator.features(z0, layer)
    zw = walk(z0, gamma.to(z0), alpha_t)
    return generator.from_features(masked_features(f0, generator.features(zw, layer), mask), layer, zw)


@torch.no_grad()
def channel_change(
    generator: GeneratorAdapter, layer: str, z0: torch.Tensor, gamma: torch.Tensor, steps: Sequence[float],
    walk: Walk, batch_size: int = 256,
) -> torch.Tensor:
    """Per channel (C,), float64 on CPU: the mean over start latents, steps and positions of
    (G1(walk(z0, gamma, eps)) - G1(z0))^2 at ``layer``."""
    total: torch.Tensor | None = None
    count = 0
    for chunk in torch.split(z0, batch_size):
        chunk = chunk.to(generator.device)
        f0 = generator.features(chunk, layer)
        for e in steps:
            d = (generator.features(walk(chunk, gamma.to(chunk), float(e)), layer) - f0).double()
            part = d.pow(2).transpose(0, 1).reshape(d.shape[1], -1).sum(1).cpu()
            total = part if total is None else total + part
            count += d.numel() // d.shape[1]
    if total is None:
        raise ValueError("channel_change needs at least one start latent and one step")
    return total / count


def group_shares(masks: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Per group (groups,): the share of the total channel ``change`` (C,) its mask (groups x C) covers; NaN
    everywhere when nothing changes."""
    change = change.double()
    total = change.sum()
    if not total > 0:
        return torch.full((masks.shape[0],), float("nan"), dtype=torch.float64)
    return masks.double().cpu() @ change / total


def choose_group(masks: torch.Tensor, change: torch.Tensor) -> tuple[int, float]:
    """(group, share): the group with the largest `group_shares` (the first on ties; group 0 with share NaN
    when the direction changes no channel)."""
    shares = group_shares(masks, change)
    if torch.isnan(shares).all():
        return 0, float("nan")
    group = int(torch.argmax(shares))
    return group, float(shares[group])


@torch.no_grad()
def masked_images(
    generator: GeneratorAdapter, layer: str, z0: torch.Tensor, zw: torch.Tensor, mask: torch.Tensor,
    batch_size: int = 256, keep_features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images G2(M * G1(zw) + (1 - M) * G1(z0)) on CPU for walked latents ``zw`` in step-major blocks of
    len(z0) rows (row r of each block walked from start r, as the evaluation stacks them); with
    ``keep_features`` also the edited features (CPU), else None. A G2 that needs the latent gets the walked
    one (`masked_edit`)."""
    n = len(z0)
    if n == 0 or len(zw) % n:
        raise ValueError(f"walked latents ({len(zw)}) must be whole blocks of the {n} start latents")
    starts = z0.repeat(len(zw) // n, 1)
    images, feats = [], []
    for a, b in zip(torch.split(starts, batch_size), torch.split(zw, batch_size), strict=True):
        b = b.to(generator.device)
        f = masked_features(generator.features(a.to(generator.device), layer), generator.features(b, layer), mask)
        images.append(generator.from_features(f, layer, b).cpu())
        if keep_features:
            feats.append(f.cpu())
    return torch.cat(images), torch.cat(feats) if keep_features else None
