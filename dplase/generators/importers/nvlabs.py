"""NVlabs network pickles (stylegan2-ada-pytorch, stylegan3, and the TF stylegan2 / stylegan2-ada ``.pkl``):
refused, never unpickled.

Such a pickle stores its networks as Python objects whose classes (and, for the PyTorch ones, the source code of
those classes) come with the file: unpickling it runs whatever code it names, so dplase does not load it, in any
mode. Convert it yourself, once, in the NVlabs environment you trust (a checkout of NVlabs/stylegan2-ada-pytorch
or NVlabs/stylegan3, whose ``legacy.load_network_pkl`` also reads the TF pickles), into a plain state dict in
rosinality's layout, which `dplase.generators.importers.rosinality` reads: `CONVERSION_SCRIPT` (``python -m
dplase.generators.importers.nvlabs > to_rosinality.py`` writes it; then ``python to_rosinality.py network.pkl
network.pt`` from the checkout's root). It maps every tensor of ``G_ema``
(``mapping.fc{i}`` -> ``style.{i+1}``, ``synthesis.b{res}.conv0/conv1/torgb`` -> ``convs.{j}`` / ``to_rgbs.{k}``,
``noise_const`` -> ``noises.noise_{j}``, ``mapping.w_avg`` -> ``latent_avg``; the weights keep their orientation,
the affine biases already hold the +1), leaving out only the ``resample_filter`` buffers (the standard
[1, 3, 3, 1], which the importer assumes when absent). It refuses conditional generators (``c_dim > 0``) and the
stylegan3 (alias-free, ``--cfg stylegan3-t/-r``) synthesis network, which no dplase family implements;
stylegan3's ``--cfg stylegan2`` networks are StyleGAN2 and convert. dplase does not clamp activations, as the
NVlabs networks trained with ``conv_clamp=256`` do: images agree wherever no activation reaches 256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dplase.generators.importers import Converted, ImportFormatError

#: run in the NVlabs checkout's own environment (Python >= 3.7): network.pkl -> a rosinality-layout network.pt
CONVERSION_SCRIPT = '''\
import re, sys, torch
import dnnlib, legacy  # from the NVlabs checkout

with dnnlib.util.open_url(sys.argv[1]) as f:
    G = legacy.load_network_pkl(f)["G_ema"]
assert G.c_dim == 0 and hasattr(G.synthesis, "b4"), "not an unconditional StyleGAN2 generator"
rgb = dict((r, "to_rgb1" if r == 4 else "to_rgbs.%d" % (r.bit_length() - 4)) for r in G.synthesis.block_resolutions)
g_ema = {}
for key, t in G.state_dict().items():
    t = t.detach().float().cpu()
    m = re.fullmatch(r"synthesis\\.b(\\d+)\\.(conv0|conv1|torgb)\\.(.+)", key)
    fc = re.fullmatch(r"mapping\\.fc(\\d+)\\.(weight|bias)", key)
    if fc:
        g_ema["style.%d.%s" % (int(fc.group(1)) + 1, fc.group(2))] = t
    elif key == "synthesis.b4.const":
        g_ema["input.input"] = t[None]
    elif m:
        res, layer, name = int(m.group(1)), m.group(2), m.group(3)
        j = 2 * (res.bit_length() - 4) + (layer == "conv1")  # b8.conv0 -> convs.0, b8.conv1 -> convs.1, ...
        base = rgb[res] if layer == "torgb" else "conv1" if res == 4 else "convs.%d" % j
        if name == "noise_const":
            g_ema["noises.noise_%d" % (0 if res == 4 else j + 1)] = t[None, None]
        elif name == "noise_strength":
            g_ema[base + ".noise.weight"] = t.reshape(1)
        elif name == "weight":
            g_ema[base + ".conv.weight"] = t[None]
        elif name.startswith("affine."):
            g_ema[base + ".conv.modulation." + name[len("affine."):]] = t
        elif name == "bias":
            g_ema[base + (".bias" if layer == "torgb" else ".activate.bias")] = (
                t.reshape(1, -1, 1, 1) if layer == "torgb" else t)
        elif name != "resample_filter":
            raise KeyError(key)
    elif key != "mapping.w_avg" and not key.endswith("resample_filter"):
        raise KeyError(key)
torch.save({"g_ema": g_ema, "latent_avg": G.mapping.w_avg.detach().float().cpu()}, sys.argv[2])
'''


def convert(path: Path, options: dict[str, Any]) -> Converted:
    """Always an `ImportFormatError`: NVlabs pickles are refused (see the module docstring)."""
    raise ImportFormatError(
        f"{path}: refused: an NVlabs network pickle (stylegan2-ada / stylegan3 .pkl) carries Python objects and "
        f"code that unpickling would run, so dplase never unpickles it. Convert it once, in your own NVlabs "
        f"environment, into a plain state dict in rosinality's layout: python -m dplase.generators.importers.nvlabs "
        f"> to_rosinality.py writes the script (README: 'Importing an NVlabs pickle'); run python to_rosinality.py "
        f"network.pkl network.pt in the stylegan2-ada-pytorch or stylegan3 checkout, then import network.pt with "
        f"format: rosinality")


if __name__ == "__main__":  # python -m dplase.generators.importers.nvlabs > to_rosinality.py
    print(CONVERSION_SCRIPT, end="")
