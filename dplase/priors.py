"""Latent priors p0: sampling with explicit seeds, exact log-densities, per-dimension marginals.

The priors of `PRIOR_NAMES` factorise over dimensions (``independent``; the learned density walk relies on
that and refuses the others); `FullGaussianPrior` (N(0, L L^T)) does not. Each exposes the distribution of
||z|| through `norm_quantiles`, used by the density metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: the factorised priors (independent dimensions)
PRIOR_NAMES = ("gaussian", "uniform", "mixture", "truncated_normal")
#: priors whose dimensions are dependent (the learned density walk refuses them)
DEPENDENT_PRIOR_NAMES = ("gaussian_full",)


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


@dataclass(frozen=True)
class Prior:
    """Base class: a factorised prior over R^dim."""

    dim: int
    name: str = "prior"
    #: whether the dimensions are independent (log p0 is the sum of the marginals); a class attribute
    independent = True

    def sample(self, n: int, seed: int | torch.Generator, device: str | torch.device = "cpu") -> torch.Tensor:
        """Draw ``n`` latents (n x dim). ``seed`` is an int or a torch.Generator; drawn on CPU then moved,
        so the numbers do not depend on the device."""
        gen = seeded_generator(seed) if isinstance(seed, int) else seed
        return self._sample_cpu(n, gen).to(device)

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise marginal log-density of one coordinate."""
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Joint log-density of each row of ``z`` (sum of the marginals)."""
        return self.log_prob_1d(z).sum(dim=-1)

    def norm_quantiles(self, q: torch.Tensor, n_mc: int = 200_000, seed: int = 0) -> torch.Tensor:
        """Quantiles of ||z|| under the prior (Monte Carlo unless a subclass knows them exactly)."""
        norms = self.sample(n_mc, seed).norm(dim=1)
        return torch.quantile(norms, q.to(norms.dtype))

    def to_config(self) -> dict:
        """JSON-able description that `make_prior` accepts."""
        return {"name": self.name, "dim": self.dim}


@dataclass(frozen=True)
class GaussianPrior(Prior):
    """Isotropic standard normal N(0, I)."""

    name: str = "gaussian"

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.dim, generator=gen)

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * x.pow(2) - 0.5 * math.log(2 * math.pi)

    def norm_quantiles(self, q: torch.Tensor, n_mc: int = 0, seed: int = 0) -> torch.Tensor:
        """Exact chi-distribution quantiles."""
        from scipy.stats import chi

        return torch.as_tensor(chi.ppf(q.double().numpy(), df=self.dim), dtype=torch.float32)


@dataclass(frozen=True)
class UniformPrior(Prior):
    """Uniform on the cube [-a, a]^dim; a = sqrt(3) gives unit variance per dimension."""

    name: str = "uniform"
    half_width: float = math.sqrt(3.0)

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return (torch.rand(n, self.dim, generator=gen) * 2 - 1) * self.half_width

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        inside = x.abs() <= self.half_width
        value = torch.full_like(x, -math.log(2 * self.half_width))
        return torch.where(inside, value, torch.full_like(x, -math.inf))

    def to_config(self) -> dict:
        return {**super().to_config(), "half_width": self.half_width}


@dataclass(frozen=True)
class MixturePrior(Prior):
    """Per-dimension two-component Gaussian mixture 0.5 N(-m, s^2) + 0.5 N(m, s^2)."""

    name: str = "mixture"
    mean: float = 1.5
    std: float = 0.5

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        signs = torch.randint(0, 2, (n, self.dim), generator=gen).float() * 2 - 1
        return signs * self.mean + self.std * torch.randn(n, self.dim, generator=gen)

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        norm_const = -0.5 * math.log(2 * math.pi) - math.log(self.std)
        a = -0.5 * ((x - self.mean) / self.std).pow(2)
        b = -0.5 * ((x + self.mean) / self.std).pow(2)
        return torch.logaddexp(a, b) + norm_const - math.log(2.0)

    def to_config(self) -> dict:
        return {**super().to_config(), "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class TruncatedNormalPrior(Prior):
    """BigGAN's truncation trick: z = truncation * x per dimension, x standard normal truncated to
    [-bound, bound], as pytorch-pretrained-biggan's ``truncated_noise_sample`` draws it
    (``truncation * truncnorm.rvs(-2, 2)``), so the support is [-bound * truncation, bound * truncation]."""

    name: str = "truncated_normal"
    truncation: float = 1.0
    bound: float = 2.0

    def __post_init__(self) -> None:
        if not (self.truncation > 0 and self.bound > 0):
            raise ValueError(f"truncated_normal needs truncation > 0 and bound > 0, got truncation="
                             f"{self.truncation}, bound={self.bound}")

    def _log_mass(self) -> float:
        """log(Phi(bound) - Phi(-bound)), the standard normal's mass inside the bounds."""
        return math.log(math.erf(self.bound / math.sqrt(2.0)))

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        # inverse CDF in float64: x = Phi^-1(Phi(-b) + u (Phi(b) - Phi(-b))), u ~ U(0, 1)
        low = 0.5 * math.erfc(self.bound / math.sqrt(2.0))
        u = torch.rand(n, self.dim, generator=gen, dtype=torch.float64)
        x = torch.special.ndtri(low + u * (1.0 - 2.0 * low)).clamp(-self.bound, self.bound)
        return (self.truncation * x).float()

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        s = self.truncation
        value = -0.5 * (x / s).pow(2) - 0.5 * math.log(2 * math.pi) - math.log(s) - self._log_mass()
        return torch.where(x.abs() <= self.bound * s, value, torch.full_like(x, -math.inf))

    def to_config(self) -> dict:
        return {**super().to_config(), "truncation": self.truncation, "bound": self.bound}


@dataclass(frozen=True)
class FullGaussianPrior(Prior):
    """N(0, L L^T) with a lower-triangular ``scale_tril`` L (rows as tuples): dependent dimensions, e.g. a
    Gaussian fitted to a mapping network's output. It has no per-dimension marginal factorisation."""

    name: str = "gaussian_full"
    scale_tril: tuple[tuple[float, ...], ...] = ()
    independent = False

    def __post_init__(self) -> None:
        tril = self.tril()
        if tril.shape != (self.dim, self.dim) or not bool((torch.diagonal(tril) > 0).all()):
            raise ValueError(f"scale_tril must be a {self.dim} x {self.dim} lower-triangular matrix with a "
                             f"positive diagonal, got shape {tuple(tril.shape)}")

    def tril(self) -> torch.Tensor:
        return torch.tril(torch.tensor(self.scale_tril, dtype=torch.float64).reshape(-1, self.dim))

    def _sample_cpu(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return (torch.randn(n, self.dim, generator=gen).double() @ self.tril().T).float()

    def log_prob_1d(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("the gaussian_full prior's dimensions are dependent: it has no factorised marginals")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        tril = self.tril()
        white = torch.linalg.solve_triangular(tril, z.double().T, upper=False).T
        log_det = torch.log(torch.diagonal(tril)).sum()
        return (-0.5 * white.pow(2).sum(-1) - log_det - 0.5 * self.dim * math.log(2 * math.pi)).to(z.dtype)

    def to_config(self) -> dict:
        return {**super().to_config(), "scale_tril": [list(row) for row in self.scale_tril]}


def make_prior(name: str, dim: int, **kwargs: float) -> Prior:
    """Build a prior by name ("gaussian", "uniform", "mixture", "truncated_normal"; "gaussian_full" with
    ``scale_tril``)."""
    classes = {"gaussian": GaussianPrior, "uniform": UniformPrior, "mixture": MixturePrior,
               "truncated_normal": TruncatedNormalPrior, "gaussian_full": FullGaussianPrior}
    if name == "gaussian_full" and "scale_tril" in kwargs:
        kwargs["scale_tril"] = tuple(tuple(float(v) for v in row) for row in kwargs["scale_tril"])
    if name not in classes:
        raise ValueError(f"unknown prior '{name}'; choose one of {', '.join(PRIOR_NAMES + DEPENDENT_PRIOR_NAMES)}")
    if dim <= 0:
        raise ValueError(f"prior dimension must be positive, got {dim}")
    return classes[name](dim=dim, **kwargs)


def prior_from_config(config: dict) -> Prior:
    """Inverse of `Prior.to_config`."""
    config = dict(config)
    return make_prior(config.pop("name"), config.pop("dim"), **config)
