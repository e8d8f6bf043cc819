"""Built-in DCGAN-style generator and discriminator (32 or 64 px) and its adapter.

The first layer is a plain Linear projection of z (no normalisation of z), so the latent norm matters and
density-preserving walks are meaningful; ``pixelnorm=True`` normalises z first to reproduce the caveat that
the norm rescale is then a no-op.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dplase.generators.base import GeneratorAdapter
from dplase.priors import Prior, make_prior

SUPPORTED_SIZES = (32, 64)


class PixelNorm(nn.Module):
    """Normalise each latent to unit RMS (as in PGGAN / StyleGAN's mapping network)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _n_upsamples(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))


class DCGANGenerator(nn.Module):
    """z -> Linear -> 4x4 maps -> (ConvTranspose, BN, ReLU) blocks -> conv -> tanh.

    Split points: ``block0`` (4x4, after the projection), ``block1`` ... (each upsampling block).
    """

    def __init__(self, z_dim: int = 64, image_size: int = 64, channels: int = 1, width: int = 32,
                 pixelnorm: bool = False) -> None:
        super().__init__()
        n_up = _n_upsamples(image_size)
        self.z_dim, self.image_size, self.channels = z_dim, image_size, channels
        widths = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [width]
        widths = [max(w, width) for w in widths]
        self.input_norm = PixelNorm() if pixelnorm else nn.Identity()
        self.project = nn.Linear(z_dim, widths[0] * 16)
        self.block0 = nn.Sequential(nn.Unflatten(1, (widths[0], 4, 4)), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.blocks = nn.ModuleList()
        for i in range(n_up - 1):
            self.blocks.append(nn.Sequential(
                nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(),
            ))
        self.to_image = nn.Sequential(nn.ConvTranspose2d(widths[n_up - 1], channels, 4, 2, 1), nn.Tanh())

    @property
    def layer_names(self) -> list[str]:
        return [f"block{i}" for i in range(len(self.blocks) + 1)]

    def _index(self, layer: str) -> int:
        if layer not in self.layer_names:
            raise ValueError(f"unknown layer '{layer}'; choose one of {', '.join(self.layer_names)}")
        return int(layer.removeprefix("block"))

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        idx = self._index(layer)
        f = self.block0(self.project(self.input_norm(z)))
        for block in self.blocks[:idx]:
            f = block(f)
        return f

    def from_features(self, f: torch.Tensor, layer: str) -> torch.Tensor:
        idx = self._index(layer)
        for block in self.blocks[idx:]:
            f = block(f)
        return self.to_image(f)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(z, "block0"), "block0")


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with LeakyReLU (no normalisation, so R1 / gradient penalties are well defined)."""

    def __init__(self, image_size: int = 64, channels: int = 1, width: int = 32) -> None:
        super().__init__()
        n_down = _n_upsamples(image_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(n_down):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)


class DCGANAdapter(GeneratorAdapter):
    """Adapter for `DCGANGenerator` (always in eval mode: BatchNorm uses running statistics)."""

    family = "dcgan"

    def __init__(self, net: DCGANGenerator, prior: Prior, device: str | torch.device = "cpu",
                 checkpoint_sha256: str = "", name: str = "dcgan") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.z_dim, self.image_size, self.channels = net.z_dim, net.image_size, net.channels
        if prior.dim != self.z_dim:
            raise ValueError(f"prior dimension {prior.dim} != generator z_dim {self.z_dim}")
        self.prior = prior
        self.checkpoint_sha256 = checkpoint_sha256
        self.name = name

    @property
    def layers(self) -> list[str]:
        return self.net.layer_names

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return self.net.features(z.to(self.device), self.check_layer(layer))

    def from_features(self, f: torch.Tensor, layer: str) -> torch.Tensor:
        return self.net.from_features(f.to(self.device), self.check_layer(layer))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.to(self.device))

    def latent_projection_weight(self) -> torch.Tensor:
        return self.net.project.weight.detach()

    @classmethod
    def build(cls, arch: dict[str, Any], prior: dict[str, Any] | None = None, seed: int = 0,
              device: str | torch.device = "cpu") -> DCGANAdapter:
        """A freshly initialised (untrained) generator from architecture kwargs, seeded."""
        torch.manual_seed(seed)
        net = DCGANGenerator(**arch)
        prior_obj = make_prior(**(prior or {"name": "gaussian", "dim": net.z_dim}))
        return cls(net, prior_obj, device=device)
