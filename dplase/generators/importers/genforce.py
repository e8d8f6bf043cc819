"""genforce/genforce StyleGAN2 checkpoints (``.pth``) into the `stylegan2` family.

A model-zoo file (converters/stylegan2_converter.py, stylegan2ada_pth_converter.py) is a dict of state dicts
``generator``, ``discriminator`` and ``generator_smooth`` (the EMA generator, used by default); a training
checkpoint of its runner nests them under ``models``. The generator is models/stylegan2_generator.py's (genforce's
StyleGAN2-ADA generator has the same layout and arithmetic). Its arithmetic is ours with three differences a
key mapping absorbs, all from its keeping the TF orientation of the weights:

- the upsampling convolutions (``synthesis.layer{odd}``) flip their kernel at run time before the transposed
  convolution (``weight.flip(0, 1)`` in its (k, k, in, out) layout): the weight is flipped once here;
- the style affine adds a constant 1 outside its bias (``additional_bias=1.0``): here it moves into the bias;
- ``noise_strength`` is a 0-d tensor: here a 1-vector.

Its blur filters (``*.filter.kernel``, ``synthesis.upsample.kernel``) are checked to be the standard [1, 3, 3, 1]
(x 4, the same paddings as ours); ``truncation.w_avg`` is the truncation average. Refused, with a message: the
'origin' and 'resnet' architectures (one to-RGB layer only), a label-conditional mapping, a mapping whose hidden
width differs from w, ``repeat_w=False``, a non-constant input, and genforce's StyleGAN (v1) and PGGAN
generators (``lod`` buffers). Not detectable from the tensors, and assumed as in every genforce StyleGAN2 config:
``use_wscale=True``, ``final_tanh=False``.

Options: ``use`` (generator_smooth | generator; default generator_smooth when the file has it) and
``truncation`` (psi in (0, 1], default 1), applied to every layer (genforce's ``trunc_layers`` = all).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dplase.generators.importers import Converted, ImportFormatError, load_tensors
from dplase.generators.importers.stylegan2_layout import (
    Rule,
    Shape,
    anchor,
    check_layout,
    count,
    read_options,
    same,
    state_dict_at,
    stylegan2_arch,
)

SOURCES = ("generator_smooth", "generator")


def _flip(t: torch.Tensor) -> torch.Tensor:
    return t.flip(2, 3)


def _plus_one(t: torch.Tensor) -> torch.Tensor:
    return t + 1.0


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _refuse_variants(path: Path, what: str, state: Mapping[str, torch.Tensor]) -> None:
    """Clear refusals for the genforce generators dplase's StyleGAN2 cannot hold."""
    if "lod" in state or "synthesis.lod" in state:
        raise ImportFormatError(f"{path}: {what} is a genforce PGGAN or StyleGAN (v1) generator (it has a 'lod' "
                                f"buffer); dplase imports genforce StyleGAN2 generators only")
    for key, why in (("mapping.label_weight", "a label-conditional mapping"),
                     ("mapping.LabelEmbed.weight", "a label-conditional mapping"),
                     ("synthesis.early_layer.weight", "a learned (non-constant) input")):
        if key in state:
            raise ImportFormatError(f"{path}: {what} has {why} ('{key}'), which dplase's StyleGAN2 does not have")
    n_out = sum(1 for k in state if re.fullmatch(r"synthesis\.output\d+\.weight", k))
    n_layers = count(state, "synthesis.layer{}.weight")
    if n_out == 1 and n_layers > 1:
        raise ImportFormatError(f"{path}: {what} has one to-RGB layer for {n_layers} convolutions: genforce's "
                                f"'origin' or 'resnet' architecture; only 'skip' (config-e/f) is imported")


def read_shape(path: Path, state: Mapping[str, torch.Tensor], what: str) -> Shape:
    """The architecture of a genforce ``StyleGAN2Generator`` state dict, from its tensor shapes."""
    _refuse_variants(path, what, state)
    first = anchor(path, what, state, "mapping.dense0.weight", 2)
    n_mlp = count(state, "mapping.dense{}.weight")
    last = anchor(path, what, state, f"mapping.dense{n_mlp - 1}.weight", 2)
    w_avg = anchor(path, what, state, "truncation.w_avg", 1)
    if w_avg.shape[0] != last.shape[0]:
        raise ImportFormatError(f"{path}: {what} has truncation.w_avg of {w_avg.shape[0]} for a mapping output of "
                                f"{last.shape[0]}: a repeat_w=False generator (one w per layer), not imported")
    if n_mlp > 1 and first.shape[0] != last.shape[0]:
        raise ImportFormatError(f"{path}: {what} has a mapping of hidden width {first.shape[0]} and output "
                                f"{last.shape[0]}; dplase's mapping keeps the width of w throughout")
    const = anchor(path, what, state, "synthesis.early_layer.const", 4)
    n_out = count(state, "synthesis.output{}.weight")
    widths = {4 * 2**k: anchor(path, what, state, f"synthesis.output{k}.weight", 4).shape[1] for k in range(n_out)}
    widths[4] = const.shape[1]
    rgb = anchor(path, what, state, "synthesis.output0.weight", 4)
    return Shape(size=4 * 2 ** max(n_out - 1, 0), z_dim=first.shape[1], w_dim=last.shape[0], n_mlp=n_mlp,
                 channels=rgb.shape[0], widths=widths)


def _modulated(src: str, dst: str, c_in: int, c_out: int, w_dim: int, k: int, flip: bool) -> list[Rule]:
    return [(f"{src}.weight", (c_out, c_in, k, k), f"{dst}.conv.weight", _flip if flip else same),
            (f"{src}.style.weight", (c_in, w_dim), f"{dst}.conv.affine.weight", same),
            (f"{src}.style.bias", (c_in,), f"{dst}.conv.affine.bias", _plus_one)]


def rules(shape: Shape) -> list[Rule]:
    """Every tensor of the layout: where it goes in `StyleGAN2Generator` and how."""
    out: list[Rule] = []
    for i in range(shape.n_mlp):
        d_in = shape.z_dim if i == 0 else shape.w_dim
        out += [(f"mapping.dense{i}.weight", (shape.w_dim, d_in), f"mapping.{i}.weight", same),
                (f"mapping.dense{i}.bias", (shape.w_dim,), f"mapping.{i}.bias", same)]
    out += [("truncation.w_avg", (shape.w_dim,), "w_avg", same),
            ("synthesis.early_layer.const", (1, shape.widths[4], 4, 4), "const", same)]
    for i, res, c_in, c_out in shape.convs():
        src = f"synthesis.layer{i}"
        out += _modulated(src, f"convs.{i}", c_in, c_out, shape.w_dim, 3, flip=bool(i % 2))
        out += [(f"{src}.bias", (c_out,), f"convs.{i}.bias", same),
                (f"{src}.noise", (1, 1, res, res), f"noise_{i}", same),
                (f"{src}.noise_strength", (), f"convs.{i}.noise_strength", _flat)]
    for i, _, c_in in shape.to_rgbs():
        src = f"synthesis.output{i}"
        out += _modulated(src, f"to_rgbs.{i}", c_in, shape.channels, shape.w_dim, 1, flip=False)
        out.append((f"{src}.bias", (shape.channels,), f"to_rgbs.{i}.bias", same))
    return out


def kernel_keys(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The blur-filter buffers of the layout (after each upsampling convolution; the skip upsampler's)."""
    ups = {f"synthesis.layer{i}.filter.kernel": (1, 1, 4, 4) for i, *_ in shape.convs() if i % 2}
    return {**ups, **({"synthesis.upsample.kernel": (1, 1, 4, 4)} if shape.size > 4 else {})}


def layout(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The full genforce ``StyleGAN2Generator`` state-dict layout (name -> shape) of ``shape``."""
    return {**{src: s for src, s, _, _ in rules(shape)}, **kernel_keys(shape)}


def _top(path: Path, obj: Any) -> tuple[Any, str]:
    """The dict holding the generators (a runner checkpoint nests them under 'models'), and a hint for errors."""
    if isinstance(obj, Mapping) and isinstance(obj.get("models"), Mapping) and set(SOURCES) & set(obj["models"]):
        return obj["models"], ""
    hint = "; a rosinality file (g_ema) is format rosinality" if isinstance(obj, Mapping) and "g_ema" in obj else ""
    return obj, hint


def convert(path: Path, options: dict[str, Any]) -> Converted:
    """A genforce checkpoint in dplase terms (see the module docstring)."""
    top, hint = _top(path, load_tensors(path))
    default = "generator" if isinstance(top, Mapping) and "generator_smooth" not in top else "generator_smooth"
    use, psi = read_options(path, options, SOURCES, default)
    source = state_dict_at(path, top, use, hint)
    what = f"the genforce state '{use}'"
    shape = read_shape(path, source, what)
    check_layout(path, what, source, layout(shape), list(kernel_keys(shape)))
    arch = stylegan2_arch(path, shape, psi)
    state = {dst: fn(source[src]).detach().float().contiguous() for src, _, dst, fn in rules(shape)}
    meta = {"source_state": use, "truncation": psi, "w_avg_source": "truncation.w_avg",
            "noise": "fixed (synthesis.layer{i}.noise)"}
    return Converted("stylegan2", arch, state, {"name": "gaussian", "dim": shape.z_dim}, meta)
