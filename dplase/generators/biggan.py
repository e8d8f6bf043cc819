"""BigGAN-deep (Brock et al., ICLR 2019), in the parameter layout of pytorch-pretrained-biggan, and its adapter.

Written here from the published architecture; the module tree and parameter names are those of
huggingface/pytorch-pretrained-BigGAN's ``BigGAN`` (its ``pytorch_model.bin`` loads into `BigGANGenerator`
as is, key for key, and its ``config.json`` keys are this network's keyword arguments):

- ``embeddings``: Linear(num_classes -> z_dim, no bias) on a one-hot class; cond = concat(z, embedding).
- ``generator.gen_z``: spectrally normalised Linear(2 z_dim -> 4 * 4 * 16 channel_width), read in TF order
  (N, 4, 4, C) and permuted to (N, C, 4, 4).
- ``generator.layers``: one bottleneck GenBlock per entry (up, in, out) of ``layers`` (channels in units of
  channel_width): four conditional batchnorms (bn_0..bn_3, each with SN-Linear ``scale`` and ``offset`` on
  cond) each followed by ReLU and a SN conv (1x1 to in / 4, 3x3, 3x3, 1x1 to out), nearest 2x upsampling
  before conv_1 and on the skip when ``up``, the skip keeping its first out channels when out < in; a
  self-attention layer is inserted before the block at index ``attention_layer_position``.
- ``generator.bn`` (unconditional), ReLU, ``generator.conv_to_rgb`` (SN 3x3, channel_width channels of which
  the first 3 are kept), tanh.

Spectral norm is evaluated as torch.nn.utils.spectral_norm does in eval mode, with no power iteration:
W = weight_orig / sigma, sigma = u . (W_mat v) from the stored ``weight_u``, ``weight_v``. The batchnorms use
precomputed statistics for ``n_stats`` truncation values on [0, 1] (``running_means``/``running_vars``, one row
each), picked for this network's ``truncation`` exactly as the reference does: with (frac, i) =
modf(truncation / (1 / (n_stats - 1))) (in that floating-point order) and frac != 0, the row i weighted by
frac and the row i + 1 by 1 - frac (the reference's weighting, the reverse of linear interpolation, kept so the
outputs are those of the published models); row i alone when frac == 0. Inference only (eval mode).

The adapter fixes one class (``class_index``) and the truncation, and walks in z with the truncated normal
prior of `dplase.priors.TruncatedNormalPrior`. Because every conditional batchnorm after a split reads the
latent, G2 takes it too (``g2_needs_latent``). Split points: ``generator.gen_z`` (the 4x4 maps) and
``generator.layers.<i>`` (after layer i, the attention layer counting as one), GANSpace's names for BigGAN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dplase.generators.base import NetworkAdapter
from dplase.priors import make_prior

#: the keys of pytorch-pretrained-biggan's config.json, which are `BigGANGenerator`'s layout arguments
CONFIG_KEYS = ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers",
               "attention_layer_position", "eps", "n_stats")
#: channels of gen_z's 4x4 maps in units of channel_width (fixed in the reference: layers[0] must start there)
GEN_Z_WIDTH = 16


def sn_weight(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """weight_orig / sigma with sigma = u . (W_mat v), W_mat = weight_orig as (out, -1) (eval-mode SN)."""
    sigma = torch.dot(u, torch.mv(weight_orig.reshape(weight_orig.shape[0], -1), v))
    return weight_orig / sigma


class _SpectralNorm(nn.Module):
    """Holds ``weight_orig`` (+ optional ``bias``) and the buffers ``weight_u``, ``weight_v``."""

    def _init_sn(self, shape: tuple[int, ...], bias: bool) -> None:
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None  # first, as in the reference's order
        self.weight_orig = nn.Parameter(torch.empty(shape))
        self.register_buffer("weight_u", torch.empty(shape[0]))
        self.register_buffer("weight_v", torch.empty(math.prod(shape[1:])))
        with torch.no_grad():  # a fresh weight, and u, v after one power step (so sigma > 0)
            nn.init.normal_(self.weight_orig, std=0.02)
            mat = self.weight_orig.reshape(shape[0], -1)
            v = F.normalize(torch.mv(mat.T, F.normalize(torch.randn(shape[0]), dim=0)), dim=0)
            self.weight_v.copy_(v)
            self.weight_u.copy_(F.normalize(torch.mv(mat, v), dim=0))

    @property
    def weight(self) -> torch.Tensor:
        return sn_weight(self.weight_orig, self.weight_u, self.weight_v)


class SNLinear(_SpectralNorm):
    """Spectrally normalised Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self._init_sn((out_features, in_features), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class SNConv2d(_SpectralNorm):
    """Spectrally normalised square Conv2d, stride 1, 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self._init_sn((out_channels, in_channels, kernel_size, kernel_size), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


def truncation_stats(table: torch.Tensor, truncation: float) -> torch.Tensor:
    """The row of a (n_stats x C) statistics table for ``truncation``, as the reference picks it (module doc)."""
    frac, start = math.modf(truncation / (1.0 / (table.shape[0] - 1)))
    start = int(start)
    if frac != 0.0 and start + 1 < table.shape[0]:  # (the reference indexes past the table there)
        return table[start] * frac + table[start + 1] * (1 - frac)
    return table[start]


class _StatsNorm(nn.Module):
    """Batchnorm with precomputed statistics per truncation (``running_means``, ``running_vars``)."""

    def __init__(self, num_features: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))


class CondBatchNorm(_StatsNorm):
    """Conditional batchnorm: gain 1 + scale(cond) and bias offset(cond), both SN-Linear without bias."""

    def __init__(self, num_features: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__(num_features, n_stats, eps)
        self.scale = SNLinear(cond_dim, num_features, bias=False)
        self.offset = SNLinear(cond_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        mean = truncation_stats(self.running_means, truncation)[None, :, None, None]
        var = truncation_stats(self.running_vars, truncation)[None, :, None, None]
        gain = 1 + self.scale(cond)[:, :, None, None]
        return (x - mean) / torch.sqrt(var + self.eps) * gain + self.offset(cond)[:, :, None, None]


class StatsBatchNorm(_StatsNorm):
    """Unconditional batchnorm with learned ``weight`` and ``bias`` (the generator's last one)."""

    def __init__(self, num_features: int, n_stats: int, eps: float) -> None:
        super().__init__(num_features, n_stats, eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        mean = truncation_stats(self.running_means, truncation)
        var = truncation_stats(self.running_vars, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)


class GenBlock(nn.Module):
    """BigGAN-deep's bottleneck residual block (module doc)."""

    def __init__(self, in_size: int, out_size: int, cond_dim: int, up_sample: bool, n_stats: int,
                 eps: float) -> None:
        super().__init__()
        self.up_sample, self.out_size = up_sample, out_size
        mid = in_size // 4
        sizes = [(in_size, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, out_size, 1)]
        for i, (c_in, c_out, k) in enumerate(sizes):
            self.add_module(f"bn_{i}", CondBatchNorm(c_in, cond_dim, n_stats, eps))
            self.add_module(f"conv_{i}", SNConv2d(c_in, c_out, k))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        skip = x
        for i in range(4):
            x = F.relu(getattr(self, f"bn_{i}")(x, cond, truncation))
            if i == 1 and self.up_sample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, f"conv_{i}")(x)
        if skip.shape[1] != self.out_size:
            skip = skip[:, : skip.shape[1] // 2]
        if self.up_sample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return x + skip


class SelfAttn(nn.Module):
    """SAGAN self-attention: keys and values 2x2 max-pooled, out = x + gamma * o_conv(attended values)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        query = self.snconv1x1_theta(x).reshape(n, c // 8, h * w)
        key = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(n, c // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # (n, hw, hw / 4)
        value = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(n, c // 2, h * w // 4)
        out = torch.bmm(value, attn.transpose(1, 2)).reshape(n, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(out)


def check_layout(layers: Sequence[Sequence[Any]], channel_width: int, output_dim: int,
                 attention_layer_position: int) -> list[tuple[bool, int, int]]:
    """The ``layers`` triples (up, in, out) as tuples, or a ValueError naming what does not fit."""
    if not layers or any(len(layer) != 3 for layer in layers):
        raise ValueError(f"layers must be a non-empty list of [up_sample, in, out] triples, got {layers!r}")
    out = [(bool(up), int(c_in), int(c_out)) for up, c_in, c_out in layers]
    if channel_width < 3:
        raise ValueError(f"channel_width must be at least 3 (conv_to_rgb keeps 3 of its channels), got "
                         f"{channel_width}")
    if out[0][1] != GEN_Z_WIDTH or out[-1][2] != 1:
        raise ValueError(f"layers must start at {GEN_Z_WIDTH} (gen_z's width) and end at 1 (conv_to_rgb's), got "
                         f"{out[0][1]} and {out[-1][2]}")
    for i, (_, c_in, c_out) in enumerate(out):
        if c_out not in (c_in, c_in / 2) or (i + 1 < len(out) and out[i + 1][1] != c_out):
            raise ValueError(f"layers[{i}] = {list(layers[i])}: a block keeps or halves its width and the next "
                             f"starts where it ends")
        if channel_width * c_in < 4:
            raise ValueError(f"layers[{i}]: channel_width * {c_in} < 4 leaves the bottleneck empty")
    if 0 <= attention_layer_position < len(out) and channel_width * out[attention_layer_position][1] < 8:
        raise ValueError("the attention layer needs at least 8 channels")
    size = 4 * 2 ** sum(up for up, _, _ in out)
    if size != output_dim:
        raise ValueError(f"output_dim {output_dim} does not match layers' {size} px (4 px doubled per up_sample)")
    return out


class _Trunk(nn.Module):
    """The reference's ``generator`` submodule: gen_z, layers, bn, conv_to_rgb."""

    def __init__(self, z_dim: int, ch: int, layers: list[tuple[bool, int, int]], attention: int, n_stats: int,
                 eps: float) -> None:
        super().__init__()
        self.gen_z = SNLinear(2 * z_dim, 4 * 4 * GEN_Z_WIDTH * ch)
        blocks: list[nn.Module] = []
        for i, (up, c_in, c_out) in enumerate(layers):
            if i == attention:
                blocks.append(SelfAttn(ch * c_in))
            blocks.append(GenBlock(ch * c_in, ch * c_out, 2 * z_dim, up, n_stats, eps))
        self.layers = nn.ModuleList(blocks)
        self.bn = StatsBatchNorm(ch, n_stats, eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)


class BigGANGenerator(nn.Module):
    """BigGAN-deep for one class at one truncation: z (N x z_dim) -> images (N x 3 x output_dim^2) in [-1, 1].

    The keyword arguments are pytorch-pretrained-biggan's config.json keys (`CONFIG_KEYS`; ``class_embed_dim``
    is recorded but, as in the reference, the class embedding has z_dim entries) plus ``class_index`` (the
    class generated, 0 <= class_index < num_classes) and ``truncation`` (0 < truncation <= 1).
    """

    def __init__(self, output_dim: int = 128, z_dim: int = 128, class_embed_dim: int = 128,
                 channel_width: int = 128, num_classes: int = 1000, layers: Sequence[Sequence[Any]] = (),
                 attention_layer_position: int = 8, eps: float = 1e-4, n_stats: int = 51, class_index: int = 0,
                 truncation: float = 1.0) -> None:
        super().__init__()
        blocks = check_layout(layers, channel_width, output_dim, attention_layer_position)
        if not 0 <= class_index < num_classes:
            raise ValueError(f"class index {class_index} is out of range: the model has {num_classes} classes "
                             f"(0 to {num_classes - 1})")
        if not 0 < truncation <= 1 or n_stats < 2:
            raise ValueError(f"truncation must be in (0, 1] and n_stats >= 2, got {truncation} and {n_stats}")
        self.z_dim, self.image_size, self.channels = z_dim, output_dim, 3
        self.class_embed_dim, self.class_index, self.truncation = class_embed_dim, class_index, float(truncation)
        self.embeddings = nn.Linear(num_classes, z_dim, bias=False)
        self.generator = _Trunk(z_dim, channel_width, blocks, attention_layer_position, n_stats, eps)

    @property
    def layer_names(self) -> list[str]:
        return ["generator.gen_z", *(f"generator.layers.{i}" for i in range(len(self.generator.layers)))]

    def _index(self, layer: str) -> int:
        """How many of ``generator.layers`` run before the split ``layer``."""
        if layer not in self.layer_names:
            raise ValueError(f"unknown layer '{layer}'; choose one of {', '.join(self.layer_names)}")
        return 0 if layer == "generator.gen_z" else int(layer.rpartition(".")[2]) + 1

    def condition(self, z: torch.Tensor) -> torch.Tensor:
        """cond = concat(z, class embedding) (the embedding of a one-hot class is its weight column)."""
        embed = self.embeddings.weight[:, self.class_index].to(z.dtype)
        return torch.cat([z, embed.expand(z.shape[0], -1)], dim=1)

    def _run(self, x: torch.Tensor, cond: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for block in self.generator.layers[start:stop]:
            x = block(x, cond, self.truncation) if isinstance(block, GenBlock) else block(x)
        return x

    def features(self, z: torch.Tensor, layer: str) -> torch.Tensor:
        """G1: activations (N x C x H x W) after the split ``layer``."""
        stop, cond = self._index(layer), self.condition(z)
        x = self.generator.gen_z(cond)
        x = x.reshape(-1, 4, 4, x.shape[1] // 16).permute(0, 3, 1, 2).contiguous()
        return self._run(x, cond, 0, stop)

    def from_features(self, f: torch.Tensor, layer: str, z: torch.Tensor) -> torch.Tensor:
        """G2: activations at ``layer`` and the latents ``z`` (which the later batchnorms read) to images."""
        x = self._run(f, self.condition(z), self._index(layer), len(self.generator.layers))
        x = F.relu(self.generator.bn(x, self.truncation))
        return torch.tanh(self.generator.conv_to_rgb(x)[:, :3])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(z, "generator.gen_z"), "generator.gen_z", z)

    def latent_projection_weight(self) -> torch.Tensor:
        """The z columns of gen_z's normalised weight (it acts on concat(z, embedding); the embedding's part
        is a constant for the fixed class), out_features x z_dim."""
        gen_z = self.generator.gen_z
        return sn_weight(gen_z.weight_orig, gen_z.weight_u, gen_z.weight_v)[:, : self.z_dim]


class BigGANAdapter(NetworkAdapter):
    """Adapter for `BigGANGenerator`: one class, one truncation, latent z with the truncated normal prior
    (``truncation * N(0, 1)`` truncated to [-2, 2] per dimension, the reference's ``truncated_noise_sample``).
    G2 needs the latent: the conditional batchnorms after any split read it."""

    network = BigGANGenerator
    family = "biggan"
    g2_needs_latent = True

    def from_features(self, f: torch.Tensor, layer: str, latent: torch.Tensor | None = None) -> torch.Tensor:
        if latent is None:
            raise ValueError("BigGAN's G2 needs the latent as well (every later batchnorm is conditioned on it)")
        return self.net.from_features(f.to(self.device), self.check_layer(layer), latent.to(self.device))

    def latent_projection_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        """gen_z's weight on z (`BigGANGenerator.latent_projection_weight`)."""
        if layers is not None:
            raise ValueError(f"{type(self).__name__} has one latent projection; SeFa's layers must be 'all'")
        return self.net.latent_projection_weight().detach()

    @classmethod
    def build(cls, arch: dict[str, Any], prior: dict[str, Any] | None = None, seed: int = 0,
              device: str | torch.device = "cpu") -> BigGANAdapter:
        """A freshly initialised (untrained) generator from architecture kwargs, seeded (global RNG kept)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = BigGANGenerator(**arch)
        prior_obj = make_prior(**(prior or default_prior(net)))
        return cls(net, prior_obj, device=device)


def default_prior(net: BigGANGenerator) -> dict[str, Any]:
    """The `make_prior` arguments of the reference's noise at the network's truncation."""
    return {"name": "truncated_normal", "dim": net.z_dim, "truncation": net.truncation}

