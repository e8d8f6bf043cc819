"""DP-LaSE's loss terms (variation, cross, orthogonality) and its direction parametrisation Gamma.

The estimators and the orthogonality options are described in `dplase.methods.dplase`, the trainer that uses
them (and re-exports these names).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

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


class _PositionPairs(torch.autograd.Function):
    """For changes N x K x C x P: sq and num as in `_ChannelPairs`, through the P x P Grams A_j = X_j^T X_j:
    ||X_j X_h^T||_F^2 = <A_j, A_h>_F and ||X_j||^2 = tr A_j. The gradient in A_j, sum_h W_jh A_h + dsq_j I, is
    symmetric, so the backward is two products and no transpose, scatter or sum of gradient buffers."""

    @staticmethod
    def forward(ctx: Any, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k, c, p = delta.shape
        x = delta.reshape(n * k, c, p)
        gram = torch.bmm(x.transpose(1, 2), x).reshape(n, k, p * p)
        ctx.save_for_backward(delta, gram)
        return gram[..., :: p + 1].sum(-1), torch.bmm(gram, gram.transpose(1, 2))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dsq: torch.Tensor, dnum: torch.Tensor) -> torch.Tensor:
        delta, gram = ctx.saved_tensors
        n, k, c, p = delta.shape
        # twice the gradient in A_j: X_j (G + G^T) = 2 X_j G for the symmetric G
        grad_gram = torch.bmm(2 * (dnum + dnum.transpose(1, 2)), gram)
        grad_gram[..., :: p + 1] += (2 * dsq)[..., None]
        return torch.bmm(delta.reshape(n * k, c, p), grad_gram.reshape(n * k, p, p)).reshape(delta.shape)


class _ChannelPairs(torch.autograd.Function):
    """For changes N x K x C x P: sq = ||D_j||_F^2 (N x K) and num = ||D_j^T D_h||_F^2 for j != h (N x K x K, 0 on
    the diagonal), from the strictly upper C x C blocks X_j X_h^T (j < h) of all directions' channel Gram.

    The Gram is symmetric and its diagonal blocks are needed only for their traces (sq), so the forward computes
    K (K - 1) / 2 of its K^2 blocks (at K = 10, 45% of the products of one full Gram); the backward writes the
    blocks' gradients 2 (dnum_jh + dnum_hj) X_j X_h^T and their transposes into one symmetric KC x KC matrix
    (sq's gradient on its diagonal) and applies it in one product: no per-element pass over the changes.
    """

    @staticmethod
    def forward(ctx: Any, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, k, c, p = delta.shape
        y = delta.reshape(n, k * c, p)
        blocks = [torch.bmm(y[:, j * c : (j + 1) * c], y[:, (j + 1) * c :].transpose(1, 2)) for j in range(k - 1)]
        num = delta.new_zeros(n, k, k)
        for j, block in enumerate(blocks):
            value = block.reshape(n, c, k - j - 1, c).square().sum(dim=(1, 3))
            num[:, j, j + 1 :] = value
            num[:, j + 1 :, j] = value
        ctx.save_for_backward(delta, *blocks)
        # a norm, not square().sum(): no temporary of the changes' size (large ones cost page faults on CPU)
        return torch.linalg.vector_norm(delta.flatten(2), dim=2).square(), num

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dsq: torch.Tensor, dnum: torch.Tensor) -> torch.Tensor:
        delta, *blocks = ctx.saved_tensors
        n, k, c, p = delta.shape
        weight = 2 * (dnum + dnum.transpose(1, 2))
        grad_gram = delta.new_zeros(n, k * c, k * c)
        for j, block in enumerate(blocks):
            rows, cols = slice(j * c, (j + 1) * c), slice((j + 1) * c, None)
            upper = grad_gram[:, rows, cols]
            torch.mul(block.reshape(n, c, -1, c), weight[:, None, j, j + 1 :, None], out=upper.unflatten(2, (-1, c)))
            grad_gram[:, cols, rows] = upper.transpose(1, 2)
        grad_gram.diagonal(dim1=1, dim2=2).copy_((2 * dsq).repeat_interleave(c, dim=1))
        return torch.bmm(grad_gram, delta.reshape(n, k * c, p)).reshape(delta.shape)


#: forms of the full estimator's cross term (`full_terms`); the first is the default
CROSS_FORMS = ("normalized", "raw")


def full_terms(delta: torch.Tensor, cross: str = "normalized") -> dict[str, torch.Tensor]:
    """Variation and cross terms of the full estimator for changes ``delta`` (N x K x C x P).

    With D_j = delta[n, j].T (positions x channels): variation = mean(delta^2); cross = mean over n and
    ordered pairs j != h of ||D_j^T D_h||_F^2 / (||D_j||^2 ||D_h||^2) (``cross="normalized"``, scale-free)
    or of ||D_j^T D_h||_F^2 itself (``cross="raw"``, the write-up's form; quartic in the feature scale).
    Both come from batched Gram
    matrices, over positions (P x P per direction) or over channels of all directions (the C x C blocks of the
    KC x KC Gram per sample, `_ChannelPairs`), whichever is cheaper, so the loss costs a few matrix products
    and few per-element passes.
    """
    if cross not in CROSS_FORMS:
        raise ValueError(f"cross must be one of {', '.join(CROSS_FORMS)}, got '{cross}'")
    _, k, c, p = delta.shape
    if k < 2:
        return {"variation": delta.pow(2).mean(), "cross": delta.new_zeros(())}
    # multiply-adds per sample of each route's forward: K P^2 (C + K) for the positions, P (K C)^2 for the channels
    if k * p * p * (c + k) <= p * (k * c) ** 2:
        sq, num = _PositionPairs.apply(delta)  # the P x P Grams of each direction and their inner products
    else:
        sq, num = _ChannelPairs.apply(delta)  # the blocks D_j^T D_h (C x C), j < h
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
    return _stochastic_from_sums(sq_j, sq_h, (delta_j * delta_h).sum(dim=2), delta_j.shape[2], differ)


def stochastic_walk_terms(f0: torch.Tensor, f: torch.Tensor, differ: torch.Tensor) -> dict[str, torch.Tensor]:
    """`stochastic_terms` for D_j = f0 - f[:N], D_h = f0 - f[N:] (f0: N x C x P start features without grad,
    f: 2N x C x P walked features), with the sums and their backward fused (`_PairSums`)."""
    sq_j, sq_h, dot = _PairSums.apply(f0, f)
    return _stochastic_from_sums(sq_j, sq_h, dot, f.shape[2], differ)


def _stochastic_from_sums(sq_j: torch.Tensor, sq_h: torch.Tensor, dot: torch.Tensor, positions: int,
                          differ: torch.Tensor) -> dict[str, torch.Tensor]:
    """The stochastic estimator's terms from per-(sample, channel) sums over positions: ||D_j||^2, ||D_h||^2
    and <D_j, D_h> (each N x C)."""
    variation = sq_j.mean() / positions + sq_h.mean() / positions
    cos2 = (dot.pow(2) / (sq_j * sq_h).clamp_min(_TINY)).mean(dim=1)  # N
    w = differ.to(cos2)
    cross = (cos2 * w).sum() / w.sum().clamp_min(1.0)
    return {"variation": variation, "cross": cross}


class _PairSums(torch.autograd.Function):
    """(f0, f) -> sums over positions of D_j^2, D_h^2 and D_j D_h, D_j = f0 - f[:N], D_h = f0 - f[N:]; gradient to
    f only, written into one buffer (autograd's graph of the same makes ~15 passes over the changes and
    zero-fills a buffer per slice of f)."""

    @staticmethod
    def forward(ctx: Any, f0: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = f0.shape[0]
        delta_j, delta_h = f0 - f[:n], f0 - f[n:]
        ctx.save_for_backward(delta_j, delta_h)
        return delta_j.pow(2).sum(dim=2), delta_h.pow(2).sum(dim=2), (delta_j * delta_h).sum(dim=2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_j: torch.Tensor, g_h: torch.Tensor, g_dot: torch.Tensor) -> tuple[None, torch.Tensor]:
        delta_j, delta_h = ctx.saved_tensors
        n = delta_j.shape[0]
        grad = delta_j.new_empty((2 * n, *delta_j.shape[1:]))
        # d/df = -d/dD: -(2 g_j D_j + g_dot D_h) for the first half, -(2 g_h D_h + g_dot D_j) for the second
        torch.mul(delta_j, (-2 * g_j)[..., None], out=grad[:n]).addcmul_(delta_h, -g_dot[..., None])
        torch.mul(delta_h, (-2 * g_h)[..., None], out=grad[n:]).addcmul_(delta_j, -g_dot[..., None])
        return None, grad


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
