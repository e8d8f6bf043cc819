"""DP-LaSE's loss terms (variation, cross, orthogonality) and its direction parametrisation Gamma.

The estimators and the orthogonality options are described in `dplase.methods.dplase`, the trainer that uses
them (and re-exports these names).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_TINY = 1e-30  # denominators of cosines: a zero change gives a zero cosine, never 0/0


def as_matrix(f: torch.Tensor) -> torch.Tensor:
    """Features (M x C x H x W, or M x D) as (M x channels x positions), a free view for conv maps.

    The change D of the spec is the transpose of each slice (positions x channels); a flat vector is D x 1,
    i.e. one channel here.
    """
    if f.ndim == 2:
        return f[:, None, :]
    return f.flatten(2)


class _Gram(torch.autograd.Function):
    """X X^T (or X^T X) for a batch of matrices, with a one-product backward in X's own layout.

    Autograd's backward of bmm(x, x^T) computes two products and hands G1 a gradient with transposed
    strides, which made the backward through the generator's convolutions up to 2x slower on CPU.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.transpose = transpose
        return torch.bmm(x.transpose(1, 2), x) if transpose else torch.bmm(x, x.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        return (torch.bmm(x, sym) if ctx.transpose else torch.bmm(sym, x)), None


def batched_gram(x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """X X^T (X^T X if ``transpose``) for each matrix in the batch."""
    return _Gram.apply(x, transpose)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous (mean/expand and views otherwise
    reach the generator's convolution backward with odd strides, its slow path)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


#: forms of the full estimator's cross term (`full_terms`); the first is the default
CROSS_FORMS = ("normalized", "raw")


def full_terms(delta: torch.Tensor, cross: str = "normalized") -> dict[str, torch.Tensor]:
    """Variation and cross terms of the full estimator for changes ``delta`` (N x K x C x P).

    With D_j = delta[n, j].T (positions x channels): variation = mean(delta^2); cross = mean over n and
    ordered pairs j != h of ||D_j^T D_h||_F^2 / (||D_j||^2 ||D_h||^2) (``cross="normalized"``, scale-free)
    or of ||D_j^T D_h||_F^2 itself (``cross="raw"``, the write-up's form; quartic in the feature scale).
    Both come from one batched Gram
    matrix, over positions (P x P per direction) or over channels of all directions (KC x KC per sample),
    whichever is cheaper, so the loss costs a few matrix products and no per-element passes.
    """
    if cross not in CROSS_FORMS:
        raise ValueError(f"cross must be one of {', '.join(CROSS_FORMS)}, got '{cross}'")
    n, k, c, p = delta.shape
    if k < 2:
        return {"variation": delta.pow(2).mean(), "cross": delta.new_zeros(())}
    if k * p * p * (c + k) <= p * (k * c) ** 2:
        # ||A^T B||_F^2 = <A A^T, B B^T>_F with A A^T = delta_j^T delta_j (P x P)
        gram = batched_gram(delta.reshape(n * k, c, p), transpose=True).reshape(n, k, p * p)
        sq = gram[..., :: p + 1].sum(-1)  # trace = ||D_j||^2
        num = batched_gram(gram)  # N x K x K (a Gram of the Grams; its backward stays contiguous)
    else:
        # all blocks D_j^T D_h (C x C) at once: Y = rows of all directions' channels (KC x P), Y Y^T
        gram = batched_gram(delta.reshape(n, k * c, p))
        sq = gram.diagonal(dim1=1, dim2=2).reshape(n, k, c).sum(-1)
        num = gram.reshape(n, k, c, k, c).pow(2).sum(dim=(2, 4))
    variation = sq.sum() / delta.numel()
    ratio = num if cross == "raw" else num / (sq[:, :, None] * sq[:, None, :]).clamp_min(_TINY)
    off = 1 - torch.eye(k, dtype=delta.dtype, device=delta.device)
    value = (ratio * off).sum(dim=(1, 2)).mean() / (k * (k - 1))
    return {"variation": variation, "cross": value}


def stochastic_terms(delta_j: torch.Tensor, delta_h: torch.Tensor, differ: torch.Tensor) -> dict[str, torch.Tensor]:
    """Authors' estimator for changes along labels j and h (each N x C x P), ``differ`` = (j != h) per sample.

    variation = mean(D_j^2) + mean(D_h^2); cross = mean over channels of cos^2 between the two walks'
    spatial change patterns, averaged over the samples with j != h (0 if there are none).
    """
    sq_j, sq_h = delta_j.pow(2).sum(dim=2), delta_h.pow(2).sum(dim=2)  # N x C
    variation = sq_j.mean() / delta_j.shape[2] + sq_h.mean() / delta_h.shape[2]
    dot = (delta_j * delta_h).sum(dim=2)
    cos2 = (dot.pow(2) / (sq_j * sq_h).clamp_min(_TINY)).mean(dim=1)  # N
    w = differ.to(cos2)
    cross = (cos2 * w).sum() / w.sum().clamp_min(1.0)
    return {"variation": variation, "cross": cross}


def orthogonality_penalty(gamma: torch.Tensor, per_k2: bool = False) -> torch.Tensor:
    """||Gamma Gamma^T - I||_F^2 for Gamma with K rows (divided by K^2 if ``per_k2``)."""
    k = gamma.shape[0]
    eye = torch.eye(k, dtype=gamma.dtype, device=gamma.device)
    value = (gamma @ gamma.T - eye).pow(2).sum()
    return value / k**2 if per_k2 else value


def random_orthonormal(d: int, gen: torch.Generator) -> torch.Tensor:
    """A seeded random orthonormal d x d matrix (rows), sign-fixed so it is reproducible."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    return q.T.float().contiguous()


class Directions(nn.Module):
    """Gamma (K x d, unit rows): free rows normalised in the forward pass, or expm of a skew matrix."""

    def __init__(self, k: int, d: int, mode: str, gen: torch.Generator) -> None:
        super().__init__()
        self.k, self.mode = k, mode
        base = random_orthonormal(d, gen)
        if mode == "penalty":
            self.raw = nn.Parameter(base[:k].clone())
        else:
            self.register_buffer("base", base)
            self.skew = nn.Parameter(torch.zeros(d, d))

    def forward(self) -> torch.Tensor:
        if self.mode == "penalty":
            return self.raw / self.raw.norm(dim=1, keepdim=True).clamp_min(1e-12)
        upper = torch.triu(self.skew, diagonal=1)
        return (torch.linalg.matrix_exp(upper - upper.T) @ self.base)[: self.k]
