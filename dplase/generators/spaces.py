"""Latent spaces other than z: the prior of a mapping network's output, and its whitened coordinates.

The latent a method walks in need not be the generator's input z. For a style-based generator, w = M(z) has no
analytic density: its "prior" is the push-forward of N(0, I) through the mapping network M. `WhitenedPrior`
makes that space usable by every method, walk and metric:

- sampling is exact: w = M(z) with z ~ N(0, I) from the seed, as the generator itself samples;
- its density is approximated by a full-covariance Gaussian N(mu, Sigma) fitted on ``n_fit`` (default 100,000)
  mapped samples from a fixed seed, in float64;
- the space's coordinates are the whitened u = L^-1 (w - mu), with Sigma = L L^T: w = mu + L u. Under the
  Gaussian approximation u ~ N(0, I), so the norm rescale is that approximation's iso-density walk, the density
  metrics measure log N(u; 0, I), and the learned walk (`dplase.walks.learned`) fits its per-dimension density
  F on the exact samples of u, i.e. the learned density on whitened w, which corrects the Gaussian's error in
  each marginal (whitening decorrelates, it does not make the dimensions independent: F's factorisation is an
  approximation here, and so is the Gaussian).

A unit step in u is one standard deviation of the fitted Gaussian along that axis; `latent_basis` (L) lets a
method that is defined in raw w (SeFa) convert its directions (`dplase.methods.sefa`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dplase.priors import Prior

#: mapped samples the Gaussian approximation of a push-forward is fitted on, and their seed
N_FIT = 100_000
FIT_SEED = 20_211_017


class WhitenedPrior(Prior):
    """The push-forward of N(0, I_zdim) through ``mapping``, in whitened coordinates (see the module)."""

    independent = True  # an approximation: whitened dimensions are uncorrelated, not independent (module doc)

    def __init__(self, mapping: Callable[[torch.Tensor], torch.Tensor], z_dim: int, dim: int,
                 device: str | torch.device = "cpu", n_fit: int = N_FIT, name: str = "w_whitened") -> None:
        object.__setattr__(self, "dim", int(dim))
        object.__setattr__(self, "name", name)
        # Prior is a frozen dataclass: its fields are set once, here
        fields = {"_mapping": mapping, "_z_dim": int(z_dim), "_device": torch.device(device), "_n_fit": int(n_fit)}
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        mean, tril = self._fit(int(n_fit))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale_tril", tril)

    @torch.no_grad()
    def mapped(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` exact samples of w (CPU, float32), from z drawn with ``gen`` on the CPU."""
        z = torch.randn(n, self._z_dim, generator=gen)
        out = [self._mapping(chunk.to(self._device)).cpu() for chunk in torch.split(z, 4096)]
        return torch.cat(out).float()

    def _fit(self, n_fit: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n_fit <= self.dim:
            raise ValueError(f"fitting a {self.dim}-dimensional Gaussian needs more than {self.dim} samples, "
                             f"got n_fit={n_fit}")
        w = self.mapped(n_fit, torch.Generator().manual_seed(FIT_SEED)).double()
        mean = w.mean(0)
        cov = torch.cov((w - mean).T).reshape(self.dim, self.dim)
        # a small ridge keeps L invertible where the mapping's output is (nearly) degenerate
        ridge = 1e-6 * float(torch.diagonal(cov).mean()) + 1e-12
        tril = torch.linalg.cholesky(cov + ridge * torch.eye(self.dim, dtype=cov.dtype))
        return mean, tril

    def to_native(self, u: torch.Tensor) -> torch.Tensor:
        """w = mu + L u."""
        return (self.mean.to(u) + u @ self.scale_tril.to(u).T)

    def from_native(self, w: torch.Tensor) -> torch.Tensor:
        """u = L^-1 (w - mu)."""
        tril = self.scale_tril.to(device=w.device)
        white = torch.linalg.solve_triangular(tril, (w.double() - self.mean.to(w.device)).T, upper=False).T
        return white.to(w.dtype)

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.from_native(self.mapped(n, gen).double()).float()

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        """The Gaussian approximation's marginal: standard normal in whitened coordinates."""
        return -0.5 * x.pow(2) - 0.5 * math.log(2 * math.pi)

    def to_config(self) -> dict:
        """A description for metadata (not rebuildable on its own: the space is rebuilt from its generator)."""
        return {"name": self.name, "dim": self.dim, "n_fit": self._n_fit, "fit_seed": FIT_SEED}

    def __repr__(self) -> str:
        return f"WhitenedPrior(dim={self.dim}, name={self.name!r})"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return other is self
