"""Key names -> tensor shapes of pytorch-pretrained-biggan's ``pytorch_model.bin`` for a config.json, and the
test fixtures of the published BigGAN-deep configurations.

The facts come from huggingface/pytorch-pretrained-BigGAN (commit 1e18aed, read, not imported):
``pytorch_pretrained_biggan/model.py`` (the module tree of ``BigGAN``: ``embeddings``, ``generator.gen_z``,
``generator.layers`` of ``GenBlock`` with a ``SelfAttn`` inserted at ``attention_layer_position``,
``generator.bn``, ``generator.conv_to_rgb``; every conv and linear but ``embeddings`` wrapped in
``torch.nn.utils.spectral_norm``, which stores ``weight_orig``, ``weight_u`` (out,) and ``weight_v``
(in * kh * kw,); ``BigGANBatchNorm``'s ``running_means``/``running_vars`` of shape (n_stats, C)), and
``convert_tf_to_pytorch.py`` (``BigGAN128``, ``BigGAN256``, ``BigGAN512``: the configurations the published
``config.json`` files were written from). This file derives the layout from those rules on its own, without
dplase's network, so the test that compares the two is a check of dplase against the reference.

Run ``python scripts/biggan_layout.py`` to rewrite tests/fixtures/biggan_deep_{128,256}.json.
"""

from __future__ import annotations

import json
from pathlib import Path

SOURCE = ("huggingface/pytorch-pretrained-BigGAN@1e18aed: pytorch_pretrained_biggan/model.py (module tree, "
          "spectral_norm buffers), convert_tf_to_pytorch.py (BigGAN128/256/512 configs); derived by "
          "scripts/biggan_layout.py")

_COMMON = {"z_dim": 128, "class_embed_dim": 128, "channel_width": 128, "num_classes": 1000,
           "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51}
_HEAD = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8]]
_TAIL = [[True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]
#: the published configurations (config.json contents)
PUBLISHED = {
    "biggan-deep-128": {"output_dim": 128, **_COMMON, "layers": _HEAD + _TAIL},
    "biggan-deep-256": {"output_dim": 256, **_COMMON, "layers": [*_HEAD, [True, 8, 8], [False, 8, 8], *_TAIL]},
    "biggan-deep-512": {"output_dim": 512, **_COMMON,
                        "layers": [*_HEAD, [True, 8, 8], [False, 8, 8], *_TAIL, [False, 1, 1], [True, 1, 1]]},
}


def _sn(prefix: str, shape: list[int], bias: bool) -> dict[str, list[int]]:
    """A spectral-normed module's tensors (parameters first, then the power-iteration buffers)."""
    out = {f"{prefix}.bias": [shape[0]]} if bias else {}
    n_in = 1
    for s in shape[1:]:
        n_in *= s
    return {**out, f"{prefix}.weight_orig": shape, f"{prefix}.weight_u": [shape[0]], f"{prefix}.weight_v": [n_in]}


def _block(prefix: str, c_in: int, c_out: int, cond: int, n_stats: int) -> dict[str, list[int]]:
    """A GenBlock: bn_i then conv_i for i = 0..3 (convs 1x1 to c_in / 4, 3x3, 3x3, 1x1 to c_out)."""
    mid = c_in // 4
    shapes: dict[str, list[int]] = {}
    for i, (a, b, k) in enumerate([(c_in, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, c_out, 1)]):
        bn = f"{prefix}.bn_{i}"
        shapes |= {f"{bn}.running_means": [n_stats, a], f"{bn}.running_vars": [n_stats, a]}
        shapes |= _sn(f"{bn}.scale", [a, cond], bias=False) | _sn(f"{bn}.offset", [a, cond], bias=False)
        shapes |= _sn(f"{prefix}.conv_{i}", [b, a, k, k], bias=True)
    return shapes


def _attention(prefix: str, c: int) -> dict[str, list[int]]:
    shapes = {f"{prefix}.gamma": [1]}
    for name, a, b in (("theta", c, c // 8), ("phi", c, c // 8), ("g", c, c // 2), ("o_conv", c // 2, c)):
        shapes |= _sn(f"{prefix}.snconv1x1_{name}", [b, a, 1, 1], bias=False)
    return shapes


def layout(config: dict) -> dict[str, list[int]]:
    """Key -> shape of the reference's ``BigGAN(config).state_dict()``, in its order."""
    z, ch, n_stats = config["z_dim"], config["channel_width"], config["n_stats"]
    shapes = {"embeddings.weight": [z, config["num_classes"]]}
    shapes |= _sn("generator.gen_z", [4 * 4 * 16 * ch, 2 * z], bias=True)
    index = 0
    for i, (_, c_in, c_out) in enumerate(config["layers"]):
        if i == config["attention_layer_position"]:
            shapes |= _attention(f"generator.layers.{index}", ch * c_in)
            index += 1
        shapes |= _block(f"generator.layers.{index}", ch * c_in, ch * c_out, 2 * z, n_stats)
        index += 1
    shapes |= {"generator.bn.weight": [ch], "generator.bn.bias": [ch],
               "generator.bn.running_means": [n_stats, ch], "generator.bn.running_vars": [n_stats, ch]}
    return shapes | _sn("generator.conv_to_rgb", [ch, ch, 3, 3], bias=True)


def write_fixtures(folder: Path, names: tuple[str, ...] = ("biggan-deep-128", "biggan-deep-256")) -> list[Path]:
    """Write one ``{source, model, config, shapes}`` JSON file per published configuration."""
    paths = []
    for name in names:
        config = PUBLISHED[name]
        path = folder / f"{name.replace('-', '_')}.json"
        body = {"source": SOURCE, "model": name, "config": config, "shapes": layout(config)}
        path.write_text(json.dumps(body, indent=1) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_fixtures(Path(__file__).resolve().parent.parent / "tests" / "fixtures"):
        print(written)
