"""A StyleGAN2 generator (Karras et al. 2020, config-e/f "skip" generator), written here from the published
architecture, with the arithmetic of the common PyTorch ports (equalised learning rate, the [1, 3, 3, 1] blur of
upfirdn2d, fused bias + leaky ReLU with gain sqrt 2), so that the importers of
`dplase.generators.importers` can load rosinality's and genforce's weights into it.

- mapping: PixelNorm on z, then ``n_mlp`` equalised linear layers (learning-rate multiplier ``lr_mlp``) to w;
  ``truncation`` psi < 1 pulls w towards ``w_avg`` (w_avg + psi (w - w_avg)) wherever z is mapped;
- synthesis: a learned 4x4 constant, then per resolution two modulated/demodulated 3x3 convolutions (the first
  upsamples: transposed convolution, then blur), each followed by a noise input and the activation, and a
  modulated 1x1 to-RGB whose output is added to the upsampled RGB of the resolution before (skip outputs);
- noise: one fixed buffer per convolution (``noise_0`` ...), drawn once from ``noise_seed`` when the network is
  built (and kept in its state dict), so a walk is deterministic;
- widths: ``min(max_channels, channel_base // resolution)`` (rosinality's config-f: channel_base 32768,
  max_channels 512).

Split points ``res4`` ... ``res{image_size}``: G1 is mapping + synthesis through both convolutions of that
resolution (its activation map); G2 is the rest, which needs w again (every later layer is modulated by it), so
`StyleGAN2Generator.from_features` takes the latent as well (`dplase.generators.base`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dplase.generators.base import NetworkAdapter
from dplase.generators.spaces import WhitenedPrior
from dplase.priors import Prior, make_prior

SQRT2 = math.sqrt(2.0)


def blur_kernel() -> torch.Tensor:
    """The normalised 4x4 binomial filter outer([1, 3, 3, 1]) / 64."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Depthwise correlation with ``kernel`` after zero padding (``pad``: before, after) on both axes."""
    c = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


def upsample_2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-insertion upsampling by 2, then the blur times 4 (upfirdn2d with up=2, pad (2, 1))."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, kernel * 4, (2, 1))


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Fused bias + leaky ReLU (slope 0.2) with gain sqrt 2."""
    return F.leaky_relu(x + bias.reshape(1, -1, *([1] * (x.ndim - 2))), 0.2) * SQRT2


class PixelNorm(nn.Module):
    """Normalise each latent to unit RMS."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with an equalised learning rate: weights stored as N(0, 1) / lr_mul, scaled at run time by
    lr_mul / sqrt(fan_in); the bias by lr_mul. ``activate``: the fused bias + leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer applies (out x in)."""
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return bias_lrelu(F.linear(x, self.effective_weight()), self.bias * self.lr_mul)
        return F.linear(x, self.effective_weight(), self.bias * self.lr_mul)


class ModulatedConv(nn.Module):
    """Modulated (and optionally demodulated) convolution; ``upsample``: a stride-2 transposed convolution
    followed by the blur. The style comes from w through ``affine`` (bias initialised to 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2
        self.register_buffer("kernel", blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, wd = x.shape
        style = self.affine(w)  # n x in
        weight = self.scale * self.weight[None] * style[:, None, :, None, None]  # n x out x in x k x k
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        out_ch, k = weight.shape[1], weight.shape[-1]
        x = x.reshape(1, n * c, h, wd)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * c, out_ch, k, k)
            y = F.conv_transpose2d(x, weight, stride=2, groups=n)
            y = y.reshape(n, out_ch, *y.shape[2:])
            return _blur(y, self.kernel * 4, (1, 1))
        y = F.conv2d(x, weight.reshape(n * out_ch, c, k, k), padding=self.padding, groups=n)
        return y.reshape(n, out_ch, *y.shape[2:])


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, then the layer's fixed noise (scaled by ``noise_strength``), bias and
    activation."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return bias_lrelu(self.conv(x, w) + self.noise_strength * noise, self.bias)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution (no demodulation) to image channels, plus the upsampled skip image."""

    def __init__(self, in_ch: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("kernel", blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)
        return out if skip is None else out + upsample_2x(skip, self.kernel)


def _log2(image_size: int) -> int:
    log = round(math.log2(image_size)) if image_size > 0 else 0
    if image_size < 4 or 2**log != image_size:
        raise ValueError(f"image_size must be a power of two >= 4, got {image_size}")
    return log


class StyleGAN2Generator(nn.Module):
    """z -> mapping -> w -> synthesis (see the module docstring); forward returns images in about [-1, 1]."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, image_size: int = 1024, channels: int = 3,
                 n_mlp: int = 8, lr_mlp: float = 0.01, channel_base: int = 32768, max_channels: int = 512,
                 truncation: float = 1.0, noise_seed: int = 0) -> None:
        super().__init__()
        log = _log2(image_size)
        if n_mlp < 1 or z_dim < 1 or w_dim < 1 or channels < 1:
            raise ValueError("z_dim, w_dim, channels and n_mlp must be >= 1")
        self.z_dim, self.w_dim, self.image_size, self.channels = z_dim, w_dim, image_size, channels
        self.truncation = float(truncation)
        self.resolutions = [2**i for i in range(2, log + 1)]
        width = {r: max(1, min(max_channels, channel_base // r)) for r in self.resolutions}
        self.input_norm = PixelNorm()
        self.mapping = nn.ModuleList(
            EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mlp, activate=True) for i in range(n_mlp))
        self.const = nn.Parameter(torch.randn(1, width[4], 4, 4))
        self.convs = nn.ModuleList([StyledConv(width[4], width[4], w_dim)])
        self.to_rgbs = nn.ModuleList([ToRGB(width[4], channels, w_dim)])
        for prev, res in itertools.pairwise(self.resolutions):
            self.convs.append(StyledConv(width[prev], width[res], w_dim, upsample=True))
            self.convs.append(StyledConv(width[res], width[res], w_dim))
            self.to_rgbs.append(ToRGB(width[res], channels, w_dim))
        gen = torch.Generator().manual_seed(int(noise_seed))
        for i in range(len(self.convs)):
            res = 4 * 2 ** ((i + 1) // 2)
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res, generator=gen))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @property
    def layer_names(self) -> list[str]:
        return [f"res{r}" for r in self.resolutions]

    def _index(self, layer: str) -> int:
        if layer not in self.layer_names:
            raise ValueError(f"unknown layer '{layer}'; choose one of {', '.join(self.layer_names)}")
        return self.layer_names.index(layer)

    def mapping_network(self, z: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """w for latents z (truncated towards ``w_avg`` when ``truncation`` < 1 and ``truncate``)."""
        w = self.input_norm(z)
        for layer in self.mapping:
            w = layer(w)
        if truncate and self.truncation != 1.0:
            w = self.w_avg + self.truncation * (w - self.w_avg)
        return w

    def first_projection(self) -> torch.Tensor:
        """The effective weight of the mapping's first layer (w_dim x z_dim): what first projects z (SeFa in z)."""
        return self.mapping[0].effective_weight().detach()

    def style_weights(self, layers: list[int] | None = None) -> torch.Tensor:
        """The style-modulation weights of the synthesis convolutions ``layers`` (indices; None: all), stacked
        (sum of in_channels x w_dim): what genforce's SeFa factorises in w."""
        idx = range(len(self.convs)) if layers is None else layers
        bad = [i for i in idx if not 0 <= i < len(self.convs)]
        if bad:
            raise ValueError(f"synthesis layer indices {bad} out of range 0..{len(self.convs) - 1}")
        return torch.cat([self.convs[i].conv.affine.effective_weight().detach() for i in idx])

    def _noise(self, i: int) -> torch.Tensor:
        return getattr(self, f"noise_{i}")

    def _block(self, i: int, x: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        """The convolutions of resolution block ``i`` (block 0: from the constant)."""
        if i == 0:
            return self.convs[0](self.const.expand(w.shape[0], -1, -1, -1), w, self._noise(0))
        x = self.convs[2 * i - 1](x, w, self._noise(2 * i - 1))
        return self.convs[2 * i](x, w, self._noise(2 * i))

    def synthesis_features(self, w: torch.Tensor, layer: str) -> torch.Tensor:
        """G1 from w: the activation map after the convolutions of ``layer``'s resolution."""
        x = None
        for i in range(self._index(layer) + 1):
            x = self._block(i, x, w)
        return x

    def synthesis_from(self, f: torch.Tensor, layer: str, w: torch.Tensor) -> torch.Tensor:
        """G2 from w: the image from the activation map ``f`` at ``layer`` and the styles of w (the skip image
        of the resolutions before ``layer`` is recomputed from w)."""
        idx = self._index(layer)
        x, skip = None, None
        for i in range(idx):
            x = self._block(i, x, w)
            skip = self.to_rgbs[i](x, w, skip)
        x = f
        skip = self.to_rgbs[idx](x, w, skip)
        for i in range(idx + 1, len(self.resolutions)):
            x = self._block(i, x, w)
            skip = self.to_rgbs[i](x, w, skip)
        return skip

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """Images from w."""
        x, skip = None, None
        for i in range(len(self.resolutions)):
            x = self._block(i, x, w)
            skip = self.to_rgbs[i](x, w, skip)
        return skip

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return self.synthesis_features(self.mapping_network(z), layer)

    def from_features(self, f: torch.Tensor, layer: str, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis_from(f, layer, self.mapping_network(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping_network(z))


class StyleGAN2Adapter(NetworkAdapter):
    """Adapter for `StyleGAN2Generator` in latent space ``space``: "z" (the input, prior N(0, I); PixelNorm
    makes the generator invariant to ||z||, so there the norm rescale changes no image) or "w" (the mapping's
    output in the whitened coordinates of `dplase.generators.spaces.WhitenedPrior`). Images are clamped to
    [-1, 1]."""

    network = StyleGAN2Generator
    family = "stylegan2"
    g2_needs_latent = True

    def __init__(self, net: StyleGAN2Generator, prior: Prior, device: str | torch.device = "cpu",
                 checkpoint_sha256: str = "", name: str | None = None, space: str = "z",
                 w_prior: WhitenedPrior | None = None) -> None:
        if space not in self.spaces:
            raise ValueError(f"StyleGAN2 has no latent space '{space}'; its spaces: {', '.join(self.spaces)}")
        super().__init__(net, prior, device, checkpoint_sha256, name)  # z's prior; w's below
        self.z_prior, self.space = prior, space
        self._w_prior = w_prior
        if space == "w" and w_prior is None:
            self._w_prior = WhitenedPrior(self.net.mapping_network, net.z_dim, net.w_dim, device=self.device)
        if space == "w":
            self.prior, self.z_dim = self._w_prior, self._w_prior.dim
            self.latent_basis = self._w_prior.scale_tril.float()

    @property
    def spaces(self) -> tuple[str, ...]:
        return ("z", "w")

    def in_space(self, space: str) -> StyleGAN2Adapter:
        if space == self.space:
            return self
        if space not in self.spaces:
            return super().in_space(space)
        return StyleGAN2Adapter(self.net, self.z_prior, self.device, self.checkpoint_sha256, self.name, space,
                                self._w_prior)

    def default_layer(self) -> str:
        """The 8x8 block (the 4x4 one when the generator has no other), where pose and shape are decided."""
        return self.layers[min(1, len(self.layers) - 1)]

    def to_w(self, latent: torch.Tensor) -> torch.Tensor:
        """w of latents of this space."""
        latent = latent.to(self.device)
        return self.net.mapping_network(latent) if self.space == "z" else self._w_prior.to_native(latent)

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        return self.net.synthesis_features(self.to_w(z), self.check_layer(layer))

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        if latent is None:
            raise ValueError("StyleGAN2's G2 needs the latent as well (every later layer is modulated by it)")
        return self.net.synthesis_from(f.to(self.device), self.check_layer(layer), self.to_w(latent)).clamp(-1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.synthesis(self.to_w(z)).clamp(-1, 1)

    def latent_projection_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        """In z: the mapping's first layer (layers must be None); in w: the stacked style-modulation weights of
        synthesis convolutions ``layers`` (None: all), in raw w (`latent_basis` converts)."""
        if self.space == "w":
            return self.net.style_weights(layers)
        if layers is not None:
            raise ValueError("in space z the latent projection is the mapping's first layer: SeFa's layers must "
                             "be 'all' (choose space w for the synthesis layers' style weights)")
        return self.net.first_projection()

    @classmethod
    def build(cls, arch: dict[str, Any], prior: dict[str, Any] | None = None, seed: int = 0,
              device: str | torch.device = "cpu", space: str = "z") -> StyleGAN2Adapter:
        """A freshly initialised (untrained) generator from architecture kwargs, seeded."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = StyleGAN2Generator(**arch)
        prior_obj = make_prior(**(prior or {"name": "gaussian", "dim": net.z_dim}))
        return cls(net, prior_obj, device=device, space=space)


@torch.no_grad()
def fit_w_avg(net: StyleGAN2Generator, n: int = 10_000, seed: int = 0) -> torch.Tensor:
    """The mean of w over ``n`` seeded latents (what truncation pulls towards), stored into ``net.w_avg``."""
    z = torch.randn(n, net.z_dim, generator=torch.Generator().manual_seed(seed)).to(net.w_avg.device)
    net.w_avg.copy_(net.mapping_network(z, truncate=False).mean(0))
    return net.w_avg
