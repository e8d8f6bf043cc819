"""StyleGAN2 checkpoint importers: rosinality ``.pt``, genforce ``.pth``, and the refused NVlabs ``.pkl``.

The layouts are facts from the reference implementations (tests/fixtures/*_stylegan2*.json: key -> shape, each
with its source commit and configuration); tests/fixtures/stylegan2_golden.pt holds two tiny generators run by
their own reference code (genforce's, and NVlabs' converted by the README's script into rosinality's layout) with
the images they produced, which the imports must reproduce.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from dplase.generators.importers import (
    ImportFormatError,
    detect_format,
    genforce,
    import_checkpoint,
    nvlabs,
    rosinality,
)
from dplase.generators.importers.stylegan2_layout import Shape, channel_config, standard_kernel, stylegan2_arch
from dplase.generators.registry import load_generator
from dplase.generators.stylegan2 import StyleGAN2Generator

FIXTURES = Path(__file__).parent / "fixtures"
MODULES = {"rosinality": rosinality, "genforce": genforce}
#: small architectures in each format's layout (widths 16, 16, 8, 4: channel_base 128, max_channels 16)
SMALL = Shape(size=32, z_dim=12, w_dim=16, n_mlp=2, channels=3, widths={4: 16, 8: 16, 16: 8, 32: 4})


def fixture(name: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    data = json.loads((FIXTURES / name).read_text())
    return data["config"], {k: tuple(v) for k, v in data["keys"].items()}


def tensors(layout: dict[str, tuple[int, ...]], seed: int = 0, cheap: bool = False) -> dict[str, torch.Tensor]:
    """Seeded random tensors in ``layout`` (blur-filter buffers: the standard filter); ``cheap``: one random
    value per tensor, broadcast (the file stays tiny; the importer materialises it)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("kernel"):
            out[key] = standard_kernel().reshape(shape)
        elif cheap:
            out[key] = torch.randn((), generator=gen).expand(shape)
        else:
            out[key] = torch.randn(shape, generator=gen) * (0.2 if key.endswith(("bias", "noise_strength")) else 1)
    return out


def nest(flat: dict[str, torch.Tensor]) -> dict:
    """{"g_ema.a.b": t, "latent_avg": t} -> {"g_ema": {"a.b": t}, "latent_avg": t}."""
    out: dict = {}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[head] = value
    return out


def save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def rosinality_file(tmp_path: Path, shape: Shape = SMALL, seed: int = 0, **extra) -> Path:
    sd = tensors(rosinality.layout(shape), seed)
    latent_avg = torch.randn(shape.w_dim, generator=torch.Generator().manual_seed(seed + 1))
    return save(tmp_path / "ckpt.pt", {"g_ema": sd, "latent_avg": latent_avg, **extra})


def genforce_file(tmp_path: Path, shape: Shape = SMALL, seed: int = 0) -> Path:
    sd = tensors(genforce.layout(shape), seed)
    return save(tmp_path / "ckpt.pth", {"generator": sd, "generator_smooth": sd, "discriminator": {}})


def meta_net(arch: dict) -> StyleGAN2Generator:
    with torch.device("meta"):
        return StyleGAN2Generator(**arch)


# --- layouts: our reading of each format against the reference's own key names and shapes -------------------

@pytest.mark.parametrize("name, fmt, prefix, arch", [
    ("rosinality_stylegan2_1024.json", "rosinality", "g_ema.", (1024, 512, 8, 32768)),
    ("rosinality_stylegan2_256.json", "rosinality", "g_ema.", (256, 512, 8, 32768)),
    ("genforce_stylegan2_1024.json", "genforce", "generator_smooth.", (1024, 512, 8, 32768)),
    ("genforce_stylegan2_256.json", "genforce", "generator_smooth.", (256, 512, 8, 32768)),
])
def test_layout_is_the_references(name, fmt, prefix, arch):
    _, keys = fixture(name)
    state = {k[len(prefix):]: torch.empty(s, device="meta") for k, s in keys.items() if k.startswith(prefix)}
    module = MODULES[fmt]
    shape = module.read_shape(Path(name), state, "fixture")
    assert module.layout(shape) == {k: tuple(v.shape) for k, v in state.items()}
    got = stylegan2_arch(Path(name), shape, 1.0)
    assert (got["image_size"], got["w_dim"], got["n_mlp"], got["channel_base"], got["max_channels"]) == (*arch, 512)


def test_rosinality_channel_multiplier_maps_to_channel_base():
    """rosinality's widths {4..32: 512, 64: 256 m, ...} are min(512, 16384 m // res) for m = 1, 2; m = 4 makes
    the 64 px block wider (1024) than the 4 px one, which no channel_base/max_channels reproduces."""
    def widths(m: int) -> dict[int, int]:
        return {r: 512 if r <= 32 else {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}[r] * m
                for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}

    for m in (1, 2):
        assert channel_config(Path("x"), widths(m)) == (16384 * m, 512)
    with pytest.raises(ImportFormatError, match=r"x: the channel widths per resolution \(4: 512, .*64: 1024"):
        channel_config(Path("x"), widths(4))


@pytest.mark.parametrize("name, fmt", [("rosinality_stylegan2_256.json", "rosinality"),
                                       ("genforce_stylegan2_1024.json", "genforce"),
                                       ("genforce_stylegan2_256.json", "genforce")])
def test_published_layouts_convert_every_tensor(tmp_path, name, fmt):
    """Layout only (broadcast values, a meta-device network): every tensor used, none missing, strict load."""
    _, keys = fixture(name)
    path = save(tmp_path / "ckpt", nest(tensors(keys, cheap=True)))
    converted = MODULES[fmt].convert(path, {})
    net = meta_net(converted.arch)
    assert {k: tuple(v.shape) for k, v in converted.state.items()} == {
        k: tuple(v.shape) for k, v in net.state_dict().items()}
    net.load_state_dict(converted.state, strict=True, assign=True)


def test_config_f_1024_imports_end_to_end(tmp_path):
    """The published stylegan2-ffhq-config-f layout through import_checkpoint into a loadable generator."""
    _, keys = fixture("rosinality_stylegan2_1024.json")
    path = save(tmp_path / "stylegan2-ffhq-config-f.pt", nest(tensors(keys, cheap=True)))
    out = import_checkpoint(path, tmp_path / "g.pt", options={"truncation": 0.7})
    net = load_generator(out).net
    assert (net.image_size, net.w_dim, len(net.mapping), net.truncation) == (1024, 512, 8, 0.7)
    assert net.convs[-1].conv.weight.shape == (32, 32, 3, 3)


def test_nvlabs_conversion_script_writes_rosinality_layout(tmp_path, monkeypatch):
    """The README's script, fed an NVlabs G_ema's layout (stub dnnlib/legacy: no NVlabs code, no pickle)."""
    _, keys = fixture("nvlabs_stylegan2ada_256.json")
    state = {k[len("G_ema."):]: v for k, v in tensors(keys, cheap=True).items()}
    synthesis = types.SimpleNamespace(b4=None, block_resolutions=[4 * 2**i for i in range(7)])
    fake = types.SimpleNamespace(c_dim=0, state_dict=lambda: state, synthesis=synthesis,
                                 mapping=types.SimpleNamespace(w_avg=state["mapping.w_avg"]))
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = types.SimpleNamespace(open_url=lambda url: open(tmp_path / "dummy", "wb"))
    legacy = types.ModuleType("legacy")
    legacy.load_network_pkl = lambda f: {"G_ema": fake}
    monkeypatch.setitem(sys.modules, "dnnlib", dnnlib)
    monkeypatch.setitem(sys.modules, "legacy", legacy)
    monkeypatch.setattr(sys, "argv", ["to_rosinality.py", "network.pkl", str(tmp_path / "network.pt")])
    exec(compile(nvlabs.CONVERSION_SCRIPT, "to_rosinality.py", "exec"), {"__name__": "__main__"})
    assert detect_format(tmp_path / "network.pt") == "rosinality"
    converted = rosinality.convert(tmp_path / "network.pt", {})
    assert converted.arch["channel_base"] == 16384 and converted.meta["w_avg_source"] == "latent_avg"
    meta_net(converted.arch).load_state_dict(converted.state, strict=True, assign=True)


# --- the arithmetic: images of reference code reproduced ----------------------------------------------------

@pytest.mark.parametrize("case, fmt", [("genforce", "genforce"), ("nvlabs_via_rosinality", "rosinality")])
@pytest.mark.parametrize("psi", ["1.0", "0.7"])
def test_reference_images_reproduced(tmp_path, case, fmt, psi):
    golden = torch.load(FIXTURES / "stylegan2_golden.pt", weights_only=True)[case]
    path = save(tmp_path / "ref.pt", golden["file"])
    net = load_generator(import_checkpoint(path, tmp_path / "g.pt", format=fmt,
                                           options={"truncation": float(psi)})).net
    with torch.no_grad():
        image = net(golden["z"])
    assert torch.allclose(image, golden["images"][psi], atol=1e-5, rtol=0)


# --- small configurations: every tensor used, and the adapter contract --------------------------------------

def contract(adapter, z: torch.Tensor) -> None:
    """G2(G1(z), z) == G(z) at every layer."""
    full = adapter(z)
    for layer in adapter.layers:
        torch.testing.assert_close(adapter.from_features(adapter.features(z, layer), layer, z), full)


@pytest.mark.parametrize("fmt, make", [("rosinality", rosinality_file), ("genforce", genforce_file)])
def test_small_import_is_strict_and_keeps_the_contract(tmp_path, fmt, make):
    path = make(tmp_path)
    assert detect_format(path) == fmt
    adapter = load_generator(import_checkpoint(path, tmp_path / "g.pt"))
    assert adapter.net.image_size == 32 and adapter.z_dim == 12
    contract(adapter, adapter.prior.sample(3, seed=1))
    w_adapter = adapter.in_space("w")
    contract(w_adapter, w_adapter.prior.sample(3, seed=2))


def test_genforce_conversion_flips_upsampling_kernels_and_moves_the_style_constant(tmp_path):
    path = genforce_file(tmp_path)
    source = torch.load(path, weights_only=True)["generator_smooth"]
    state = genforce.convert(path, {}).state
    assert torch.equal(state["convs.1.conv.weight"], source["synthesis.layer1.weight"].flip(2, 3))
    assert torch.equal(state["convs.2.conv.weight"], source["synthesis.layer2.weight"])
    assert torch.equal(state["to_rgbs.0.conv.affine.bias"], source["synthesis.output0.style.bias"] + 1)
    assert torch.equal(state["convs.1.noise_strength"], source["synthesis.layer1.noise_strength"].reshape(1))
    assert torch.equal(state["w_avg"], source["truncation.w_avg"])


def test_rosinality_training_checkpoint_uses_g_or_g_ema_and_fits_w_avg(tmp_path):
    g = tensors(rosinality.layout(SMALL), seed=1)
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([param])
    param.sum().backward()
    opt.step()
    args = argparse.Namespace(arch="stylegan2", size=32, latent=16, n_mlp=2, channel_multiplier=2, iter=10)
    path = save(tmp_path / "000010.pt", {"g": g, "d": {"x": torch.zeros(1)}, "g_ema": tensors(rosinality.layout(SMALL)),
                                         "g_optim": opt.state_dict(), "d_optim": opt.state_dict(), "args": args,
                                         "ada_aug_p": 0.0})
    for use, seed in (("g_ema", 0), ("g", 1)):
        converted = rosinality.convert(path, {"use": use})
        expected = tensors(rosinality.layout(SMALL), seed)["style.1.weight"]
        assert torch.equal(converted.state["mapping.0.weight"], expected)
        assert converted.meta["w_avg_source"].startswith("fitted")
    net = load_generator(import_checkpoint(path, tmp_path / "g.pt", options={"use": "g"})).net
    with torch.no_grad():
        w = net.mapping_network(torch.randn(10_000, 12, generator=torch.Generator().manual_seed(0)), truncate=False)
    torch.testing.assert_close(net.w_avg, w.mean(0))


def test_genforce_runner_checkpoint_nests_models(tmp_path):
    sd = tensors(genforce.layout(SMALL))
    path = save(tmp_path / "checkpoint_iter010000.pth",
                {"models": {"generator": sd, "discriminator": {}}, "running_metadata": {"iter": 10000}})
    assert detect_format(path) == "genforce"
    assert genforce.convert(path, {}).meta["source_state"] == "generator"


# --- bad input: each a clear error naming the file or the key ----------------------------------------------

def test_genforce_file_given_as_rosinality(tmp_path):
    path = genforce_file(tmp_path)
    with pytest.raises(ImportFormatError, match=r"ckpt\.pth: no 'g_ema' among the top-level keys \(discriminator, "
                                                r"generator, generator_smooth\); a genforce file .* format genforce"):
        import_checkpoint(path, tmp_path / "g.pt", format="rosinality")
    with pytest.raises(ImportFormatError, match=r"ckpt\.pt: no 'generator_smooth' .*format rosinality"):
        import_checkpoint(rosinality_file(tmp_path), tmp_path / "g.pt", format="genforce", options={
            "use": "generator_smooth"})


def test_truncated_file(tmp_path):
    path = rosinality_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for fmt in (None, "rosinality"):
        with pytest.raises(ImportFormatError, match=r"ckpt\.pt: not a readable torch checkpoint \(truncated"):
            import_checkpoint(path, tmp_path / "g.pt", format=fmt)


class _Payload:
    """Unpickling this runs ``Path.touch`` on a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("fmt", [None, "rosinality", "genforce"])
def test_pickle_with_code_is_refused_and_never_run(tmp_path, fmt):
    marker = tmp_path / "code-ran"
    path = save(tmp_path / "evil.pt", {"g_ema": _Payload(marker), "generator": _Payload(marker)})
    with pytest.raises(ImportFormatError, match=r"evil\.pt: refused to unpickle"):
        import_checkpoint(path, tmp_path / "g.pt", format=fmt)
    assert not marker.exists()


def test_nvlabs_pickle_is_refused_with_the_conversion_hint(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Payload(marker)}))
    assert detect_format(path) == "nvlabs"
    with pytest.raises(ImportFormatError, match=r"network-snapshot\.pkl: refused: an NVlabs network pickle .*never "
                                                r"unpickles it.*nvlabs > to_rosinality\.py.*format: rosinality"):
        import_checkpoint(path, tmp_path / "g.pt")
    assert not marker.exists()


def test_partial_state_dict_lists_missing_keys_and_shapes(tmp_path):
    sd = tensors(rosinality.layout(SMALL))
    for key in ("convs.3.conv.weight", "noises.noise_4", "to_rgbs.1.bias"):
        del sd[key]
    sd["convs.0.conv.weight"] = sd["convs.0.conv.weight"][:, :, :5]
    path = save(tmp_path / "partial.pt", {"g_ema": sd, "latent_avg": torch.zeros(16)})
    with pytest.raises(ImportFormatError, match=(
            r"partial\.pt: the rosinality state 'g_ema' does not have the expected layout: 3 missing: "
            r"convs\.3\.conv\.weight, noises\.noise_4, to_rgbs\.1\.bias; 1 wrong shape: convs\.0\.conv\.weight "
            r"\(1, 16, 5, 3, 3\) \(expected \(1, 16, 16, 3, 3\)\); the missing keys' shapes: "
            r"convs\.3\.conv\.weight \(1, 8, 8, 3, 3\), noises\.noise_4 \(1, 1, 16, 16\)")):
        import_checkpoint(path, tmp_path / "g.pt")


def test_wrong_top_level_layout_lists_the_keys(tmp_path):
    path = save(tmp_path / "weights.pt", {"state_dict": {}, "epoch": 3})
    with pytest.raises(ImportFormatError, match=r"weights\.pt: cannot tell the checkpoint format from its top-level "
                                                r"keys \(epoch, state_dict\); give format: one of rosinality"):
        import_checkpoint(path, tmp_path / "g.pt")


def test_a_state_dict_of_another_network(tmp_path):
    path = save(tmp_path / "other.pt", {"g_ema": {"layer.weight": torch.zeros(2, 2)}})
    with pytest.raises(ImportFormatError, match=r"other\.pt: the rosinality state 'g_ema' has no 'style\.1\.weight'"):
        import_checkpoint(path, tmp_path / "g.pt")


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.update({"synthesis.lod": torch.zeros(())}), r"a genforce PGGAN or StyleGAN \(v1\) generator"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith(("synthesis.output0.", "synthesis.output1.",
                                                              "synthesis.output2."))],
     r"one to-RGB layer .*'origin' or 'resnet'"),
    (lambda sd: sd.update({"mapping.label_weight": torch.zeros(10, 12)}), r"label-conditional mapping"),
    (lambda sd: sd.update({"truncation.w_avg": torch.zeros(16 * 10)}), r"repeat_w=False"),
    (lambda sd: sd["synthesis.layer3.filter.kernel"].mul_(2),
     r"key 'synthesis\.layer3\.filter\.kernel' is not the standard \[1, 3, 3, 1\] blur filter"),
])
def test_genforce_variants_dplase_cannot_hold_are_refused(tmp_path, edit, message):
    sd = tensors(genforce.layout(SMALL))
    edit(sd)
    path = save(tmp_path / "variant.pth", {"generator": sd})
    with pytest.raises(ImportFormatError, match=r"variant\.pth: .*" + message):
        import_checkpoint(path, tmp_path / "g.pt")


@pytest.mark.parametrize("options, message", [
    ({"truncation": 1.5}, r"option truncation must be a number in \(0, 1\], got 1\.5"),
    ({"truncation": "0.7"}, r"option truncation must be a number"),
    ({"use": "g"}, r"no 'g' among the top-level keys \(g_ema, latent_avg\)"),
    ({"use": "d"}, r"option use must be one of g_ema, g, got 'd'"),
    ({"trunc_layers": 8}, r"unknown import option\(s\) trunc_layers"),
])
def test_bad_options_name_the_file_and_option(tmp_path, options, message):
    with pytest.raises(ImportFormatError, match=r"ckpt\.pt: " + message):
        import_checkpoint(rosinality_file(tmp_path), tmp_path / "g.pt", options=options)


def test_rosinality_swagan_and_odd_widths_are_refused(tmp_path):
    path = rosinality_file(tmp_path, args=argparse.Namespace(arch="swagan"))
    with pytest.raises(ImportFormatError, match=r"ckpt\.pt: a rosinality 'swagan' checkpoint"):
        import_checkpoint(path, tmp_path / "g.pt")
    odd = Shape(size=16, z_dim=8, w_dim=8, n_mlp=1, channels=3, widths={4: 16, 8: 12, 16: 8})
    path = rosinality_file(tmp_path, shape=odd)
    with pytest.raises(ImportFormatError, match=r"ckpt\.pt: the channel widths per resolution \(4: 16, 8: 12, "
                                                r"16: 8\) do not follow min\(max_channels, channel_base"):
        import_checkpoint(path, tmp_path / "g.pt")
