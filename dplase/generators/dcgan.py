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

from dplase.generators.base import NetworkAdapter
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


class MinibatchStd(nn.Module):
    """Append one channel holding the batch's mean feature standard deviation (as in PGGAN).

    It lets the discriminator see how varied a batch is, so a generator that drops a mode (in our CPU runs:
    the squares of the shapes dataset) is easier to catch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sqrt(var + eps), not std(): the gradient of std is NaN where a batch has no spread at all
        std = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class DCGANGenerator(nn.Module):
    """z -> Linear [-> BN, ReLU, Linear] -> 4x4 maps -> (ConvTranspose, BN, ReLU) blocks -> conv -> tanh.

    ``hidden`` > 0 inserts a fully connected hidden layer of that size between z and the 4x4 maps (as in
    InfoGAN's dSprites generator); in our CPU runs it sharpened the shapes of the shapes dataset.
    ``project`` is always the first layer applied to z. Split points: ``block0`` (4x4, after the
    projection), ``block1`` ... (each upsampling block).
    """

    def __init__(self, z_dim: int = 64, image_size: int = 64, channels: int = 1, width: int = 32,
                 pixelnorm: bool = False, hidden: int = 0) -> None:
        super().__init__()
        n_up = _n_upsamples(image_size)
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        self.z_dim, self.image_size, self.channels = z_dim, image_size, channels
        widths = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [width]
        widths = [max(w, width) for w in widths]
        self.input_norm = PixelNorm() if pixelnorm else nn.Identity()
        self.project = nn.Linear(z_dim, hidden or widths[0] * 16)
        self.hidden: nn.Module = nn.Identity()
        if hidden:
            self.hidden = nn.Sequential(nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, widths[0] * 16))
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
        f = self.block0(self.hidden(self.project(self.input_norm(z))))
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
    """Strided convolutions with LeakyReLU (no normalisation, so R1 / gradient penalties are well defined).

    ``mbstd`` appends a minibatch standard-deviation channel before the head; ``hidden`` > 0 makes the head
    two fully connected layers (that size, LeakyReLU) instead of one.
    """

    def __init__(self, image_size: int = 64, channels: int = 1, width: int = 32, hidden: int = 0,
                 mbstd: bool = False) -> None:
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        n_down = _n_upsamples(image_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(n_down):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.batch_stat: nn.Module = MinibatchStd() if mbstd else nn.Identity()
        n_in = (c_in + int(mbstd)) * 16
        self.head = (nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)) if hidden
                     else nn.Linear(n_in, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.batch_stat(self.features(x)).flatten(1)).squeeze(1)


class DCGANAdapter(NetworkAdapter):
    """Adapter for `DCGANGenerator` (always in eval mode: BatchNorm uses running statistics)."""

    network = DCGANGenerator  # what a checkpoint's ``arch`` builds
    family = "dcgan"

    def __init__(self, net: DCGANGenerator, prior: Prior, device: str | torch.device = "cpu",
                 checkpoint_sha256: str = "", name: str = "dcgan") -> None:
        super().__init__(net, prior, device, checkpoint_sha256, name)

    @classmethod
    def build(cls, arch: dict[str, Any], prior: dict[str, Any] | None = None, seed: int = 0,
              device: str | torch.device = "cpu") -> DCGANAdapter:
        """A freshly initialised (untrained) generator from architecture kwargs, seeded."""
        torch.manual_seed(seed)
        net = DCGANGenerator(**arch)
        prior_obj = make_prior(**(prior or {"name": "gaussian", "dim": net.z_dim}))
        return cls(net, prior_obj, device=device)
