"""rosinality/stylegan2-pytorch checkpoints (``.pt``) into the `stylegan2` family.

The file is a dict: ``g_ema`` (the state dict of its ``Generator``) and ``latent_avg`` (written by its
convert_weight.py: the TF ``dlatent_avg``), or a train.py checkpoint, which adds ``g``, ``d``, the optimiser
states, ``args`` (an argparse.Namespace, the one class the load allows) and ``ada_aug_p``, and has no
``latent_avg``. The architecture (size, style_dim, n_mlp, widths, hence channel_multiplier) is read from the
tensor shapes; every tensor is mapped to `StyleGAN2Generator`'s names (the conv weights' leading 1 and the to-RGB
bias's singleton dimensions dropped); the blur-kernel buffers (``*.blur.kernel``, ``*.upsample.kernel``) are
checked to be the standard [1, 3, 3, 1] filter, and may be absent. The noise buffers ``noises.noise_i`` become the
fixed noise (rosinality's ``randomize_noise=False``).

Options: ``use`` (g_ema | g, default g_ema) and ``truncation`` (psi in (0, 1], default 1, applied to every layer
as rosinality's ``truncation``/``truncation_latent``): towards ``latent_avg`` (g_ema's), or, for ``g`` and in a
checkpoint without one, the mean w of 10k seeded latents (what rosinality's ``mean_latent`` computes).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dplase.generators.importers import Converted, ImportFormatError, load_tensors
from dplase.generators.importers.stylegan2_layout import (
    W_AVG_SAMPLES,
    Rule,
    Shape,
    anchor,
    check_layout,
    count,
    fitted_w_avg,
    read_options,
    same,
    state_dict_at,
    stylegan2_arch,
)

SOURCES = ("g_ema", "g")


def _drop_lead(t: torch.Tensor) -> torch.Tensor:
    return t[0]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def read_shape(path: Path, state: Mapping[str, torch.Tensor], what: str) -> Shape:
    """The architecture of a rosinality ``Generator`` state dict, from its tensor shapes."""
    style = anchor(path, what, state, "style.1.weight", 2)
    const = anchor(path, what, state, "input.input", 4)
    rgb = anchor(path, what, state, "to_rgb1.conv.weight", 5)
    n_up = count(state, "to_rgbs.{}.conv.weight")
    widths = {4: const.shape[1]}
    for k in range(n_up):
        widths[8 * 2**k] = anchor(path, what, state, f"to_rgbs.{k}.conv.weight", 5).shape[2]
    return Shape(size=4 * 2**n_up, z_dim=style.shape[1], w_dim=style.shape[0],
                 n_mlp=count(state, "style.{}.weight", start=1), channels=rgb.shape[1], widths=widths)


def _styled(src: str, dst: str, c_in: int, c_out: int, w_dim: int, k: int) -> list[Rule]:
    return [(f"{src}.conv.weight", (1, c_out, c_in, k, k), f"{dst}.conv.weight", _drop_lead),
            (f"{src}.conv.modulation.weight", (c_in, w_dim), f"{dst}.conv.affine.weight", same),
            (f"{src}.conv.modulation.bias", (c_in,), f"{dst}.conv.affine.bias", same)]


def rules(shape: Shape) -> list[Rule]:
    """Every tensor of the layout: where it goes in `StyleGAN2Generator` and how."""
    out: list[Rule] = []
    for i in range(shape.n_mlp):
        d_in = shape.z_dim if i == 0 else shape.w_dim
        out += [(f"style.{i + 1}.weight", (shape.w_dim, d_in), f"mapping.{i}.weight", same),
                (f"style.{i + 1}.bias", (shape.w_dim,), f"mapping.{i}.bias", same)]
    out.append(("input.input", (1, shape.widths[4], 4, 4), "const", same))
    for i, res, c_in, c_out in shape.convs():
        src = "conv1" if i == 0 else f"convs.{i - 1}"
        out += _styled(src, f"convs.{i}", c_in, c_out, shape.w_dim, 3)
        out += [(f"{src}.noise.weight", (1,), f"convs.{i}.noise_strength", same),
                (f"{src}.activate.bias", (c_out,), f"convs.{i}.bias", same),
                (f"noises.noise_{i}", (1, 1, res, res), f"noise_{i}", same)]
    for i, _, c_in in shape.to_rgbs():
        src = "to_rgb1" if i == 0 else f"to_rgbs.{i - 1}"
        out += _styled(src, f"to_rgbs.{i}", c_in, shape.channels, shape.w_dim, 1)
        out.append((f"{src}.bias", (1, shape.channels, 1, 1), f"to_rgbs.{i}.bias", _flat))
    return out


def kernel_keys(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The blur-filter buffers of the layout (upsampling convolutions and skip upsamplers)."""
    ups = {f"convs.{i - 1}.conv.blur.kernel": (4, 4) for i, *_ in shape.convs() if i % 2}
    return {**ups, **{f"to_rgbs.{i - 1}.upsample.kernel": (4, 4) for i, *_ in shape.to_rgbs() if i}}


def layout(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The full rosinality ``Generator`` state-dict layout (name -> shape) of ``shape``."""
    return {**{src: s for src, s, _, _ in rules(shape)}, **kernel_keys(shape)}


def _check_args(path: Path, top: Mapping[str, Any]) -> None:
    arch = getattr(top.get("args"), "arch", "stylegan2")
    if arch != "stylegan2":
        raise ImportFormatError(f"{path}: a rosinality '{arch}' checkpoint (args.arch); only the stylegan2 "
                                f"architecture is imported")


def _w_avg(path: Path, top: Mapping[str, Any], use: str, arch: dict[str, Any],
           state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, str]:
    """latent_avg (g_ema's), else the fitted mean w of the converted network."""
    avg = top.get("latent_avg") if use == "g_ema" else None
    if avg is None:
        return fitted_w_avg(arch, state), f"fitted: mean w of {W_AVG_SAMPLES} seeded latents"
    if not isinstance(avg, torch.Tensor) or avg.numel() != arch["w_dim"]:
        shape = tuple(avg.shape) if isinstance(avg, torch.Tensor) else type(avg).__name__
        raise ImportFormatError(f"{path}: latent_avg has shape {shape}, expected ({arch['w_dim']},)")
    return avg.detach().float().reshape(-1), "latent_avg"


def convert(path: Path, options: dict[str, Any]) -> Converted:
    """A rosinality checkpoint in dplase terms (see the module docstring)."""
    use, psi = read_options(path, options, SOURCES, "g_ema")
    top = load_tensors(path, allow=(argparse.Namespace,))
    hint = ("; a genforce file (generator_smooth / generator) is format genforce"
            if isinstance(top, Mapping) and {"generator_smooth", "generator"} & set(top) else "")
    source = state_dict_at(path, top, use, hint)
    _check_args(path, top)
    what = f"the rosinality state '{use}'"
    shape = read_shape(path, source, what)
    plan = rules(shape)
    check_layout(path, what, source, layout(shape), list(kernel_keys(shape)))
    arch = stylegan2_arch(path, shape, psi)
    state = {dst: fn(source[src]).detach().float().contiguous() for src, _, dst, fn in plan}
    w_avg, origin = _w_avg(path, top, use, arch, state)
    state["w_avg"] = w_avg
    meta = {"source_state": use, "truncation": psi, "w_avg_source": origin, "noise": "fixed (noises.noise_i)"}
    return Converted("stylegan2", arch, state, {"name": "gaussian", "dim": shape.z_dim}, meta)
