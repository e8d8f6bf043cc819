"""What the StyleGAN2 importers (`rosinality`, `genforce`) share: the architecture read off a foreign state dict
(`Shape`), the dplase ``arch`` it becomes, the import options, the blur-kernel check and the truncation average.

A foreign StyleGAN2 fits `dplase.generators.stylegan2.StyleGAN2Generator` when its widths follow
``min(max_channels, channel_base // resolution)`` (rosinality's channel_multiplier m is channel_base 16384 m,
max_channels 512; genforce's and NVlabs' fmaps_base/channel_base and fmaps_max are the same two numbers) and its
blur filter is the standard [1, 3, 3, 1]; anything else is an `ImportFormatError` naming the file.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from dplase.generators.importers import SHOWN_KEYS, ImportFormatError, key_report

#: one tensor of a foreign layout: (its key, its shape, the dplase key, the conversion to dplase's tensor)
Rule = tuple[str, tuple[int, ...], str, Callable[[torch.Tensor], torch.Tensor]]


def same(t: torch.Tensor) -> torch.Tensor:
    """The identity conversion (a tensor stored as dplase stores it)."""
    return t

#: the blur filters' gain in both formats (upsampling by 2 in each direction)
KERNEL_GAIN = 4.0
#: latents the truncation average is fitted on when a checkpoint carries none
W_AVG_SAMPLES = 10_000


@dataclass(frozen=True)
class Shape:
    """A StyleGAN2 generator's architecture as read from its tensors (``widths``: resolution -> channels)."""

    size: int
    z_dim: int
    w_dim: int
    n_mlp: int
    channels: int
    widths: dict[int, int]

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.size.bit_length())]

    def convs(self) -> Iterator[tuple[int, int, int, int]]:
        """(index, resolution, in channels, out channels) of every styled 3x3 convolution, in order (the first of
        each resolution above 4 upsamples: the odd indices)."""
        yield 0, 4, self.widths[4], self.widths[4]
        for block, (prev, res) in enumerate(pairwise(self.resolutions), start=1):
            yield 2 * block - 1, res, self.widths[prev], self.widths[res]
            yield 2 * block, res, self.widths[res], self.widths[res]

    def to_rgbs(self) -> Iterator[tuple[int, int, int]]:
        """(index, resolution, in channels) of every to-RGB layer."""
        yield from ((i, res, self.widths[res]) for i, res in enumerate(self.resolutions))


def channel_config(path: Path, widths: Mapping[int, int]) -> tuple[int, int]:
    """(channel_base, max_channels) that reproduce ``widths`` through min(max_channels, channel_base // res)."""
    max_channels = max(widths.values())
    for base in sorted({w * r for r, w in widths.items()}):
        if all(min(max_channels, base // r) == w for r, w in widths.items()):
            return base, max_channels
    shown = ", ".join(f"{r}: {w}" for r, w in sorted(widths.items()))
    raise ImportFormatError(f"{path}: the channel widths per resolution ({shown}) do not follow "
                            f"min(max_channels, channel_base // resolution), which dplase's StyleGAN2 needs")


def stylegan2_arch(path: Path, shape: Shape, truncation: float) -> dict[str, Any]:
    """`StyleGAN2Generator` keyword arguments for ``shape``."""
    if shape.size < 4 or shape.size & (shape.size - 1):
        raise ImportFormatError(f"{path}: inferred image size {shape.size} is not a power of two >= 4")
    base, max_channels = channel_config(path, shape.widths)
    return {"z_dim": shape.z_dim, "w_dim": shape.w_dim, "image_size": shape.size, "channels": shape.channels,
            "n_mlp": shape.n_mlp, "lr_mlp": 0.01, "channel_base": base, "max_channels": max_channels,
            "truncation": truncation}


def read_options(path: Path, options: Mapping[str, Any], sources: tuple[str, ...],
                 default: str) -> tuple[str, float]:
    """(``use``: which state dict of the file, ``truncation`` psi) from the import options, checked."""
    unknown = sorted(set(options) - {"use", "truncation"})
    if unknown:
        raise ImportFormatError(f"{path}: unknown import option(s) {', '.join(unknown)}; this format takes "
                                f"use ({' | '.join(sources)}) and truncation")
    use = options.get("use", default)
    if use not in sources:
        raise ImportFormatError(f"{path}: option use must be one of {', '.join(sources)}, got {use!r}")
    psi = options.get("truncation", 1.0)
    if not isinstance(psi, numbers.Real) or isinstance(psi, bool) or not 0.0 < float(psi) <= 1.0:
        raise ImportFormatError(f"{path}: option truncation must be a number in (0, 1], got {psi!r}")
    return use, float(psi)


def state_dict_at(path: Path, top: Any, key: str, hint: str) -> dict[str, torch.Tensor]:
    """``top[key]``, checked to be a state dict (name -> tensor); ``hint``: what the file may be instead."""
    if not isinstance(top, Mapping):
        raise ImportFormatError(f"{path}: expected a dict with '{key}', got {type(top).__name__}{hint}")
    if key not in top:
        shown = ", ".join(sorted(map(str, top))[:8]) or "(empty)"
        raise ImportFormatError(f"{path}: no '{key}' among the top-level keys ({shown}){hint}")
    state = top[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImportFormatError(f"{path}: '{key}' is not a state dict (name -> tensor)")
    return dict(state)


def anchor(path: Path, what: str, state: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    """The tensor ``key`` the architecture is read from (an error naming it when absent or of another rank)."""
    if key not in state:
        shown = ", ".join(list(state)[:8]) or "(empty)"
        raise ImportFormatError(f"{path}: {what} has no '{key}', so it is not in the expected layout (its first "
                                f"keys: {shown})")
    if state[key].ndim != ndim:
        raise ImportFormatError(f"{path}: {what} key '{key}' has shape {tuple(state[key].shape)}, expected "
                                f"{ndim} dimensions")
    return state[key]


def count(state: Mapping[str, Any], pattern: str, start: int = 0) -> int:
    """How many consecutive indices i = start, start + 1, ... have ``pattern.format(i)`` in ``state``."""
    n = 0
    while pattern.format(start + n) in state:
        n += 1
    return n


def check_layout(path: Path, what: str, state: Mapping[str, torch.Tensor], want: Mapping[str, tuple[int, ...]],
                 kernels: list[str]) -> None:
    """``state`` has exactly the keys and shapes of ``want``, except that the blur-kernel buffers ``kernels``
    (constants, not learned) may be absent; those present must be the standard [1, 3, 3, 1] filter."""
    want = {k: v for k, v in want.items() if k not in kernels or k in state}
    report = key_report(state, want)
    if report:
        missing = [f"{k} {tuple(s)}" for k, s in want.items() if k not in state][:SHOWN_KEYS]
        shapes = f"; the missing keys' shapes: {', '.join(missing)}" if missing else ""
        raise ImportFormatError(f"{path}: {what} does not have the expected layout: {report}{shapes}")
    expected = standard_kernel()
    for key in kernels:
        if key in state and not torch.allclose(state[key].detach().float().reshape(4, 4), expected, atol=1e-6):
            raise ImportFormatError(f"{path}: {what} key '{key}' is not the standard [1, 3, 3, 1] blur filter "
                                    f"(x {KERNEL_GAIN:g}), the only one dplase's StyleGAN2 implements")


def standard_kernel() -> torch.Tensor:
    """outer([1, 3, 3, 1]) / 64 times the upsampling gain: the filter both formats store."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(k, k) / 64 * KERNEL_GAIN


@torch.no_grad()
def fitted_w_avg(arch: dict[str, Any], state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean w of `W_AVG_SAMPLES` seeded latents under the converted weights (for checkpoints that carry no
    truncation average); the network is built on the meta device and takes the converted tensors as they are."""
    from dplase.generators.stylegan2 import StyleGAN2Generator, fit_w_avg

    with torch.device("meta"):
        net = StyleGAN2Generator(**{**arch, "truncation": 1.0})
    net.load_state_dict({**state, "w_avg": torch.zeros(arch["w_dim"])}, strict=True, assign=True)
    return fit_w_avg(net, n=W_AVG_SAMPLES, seed=0).clone()
