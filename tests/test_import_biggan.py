"""BigGAN-deep: the network's layout against the published one (tests/fixtures, from scripts/biggan_layout.py),
importing pytorch-pretrained-biggan checkpoints of random tensors in that layout, the adapter contract on the
imported generator, and each bad input's error naming the file or key."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dplase.generators import load_generator
from dplase.generators.biggan import CONFIG_KEYS, BigGANAdapter, BigGANGenerator, truncation_stats
from dplase.generators.importers import ImportFormatError, import_checkpoint
from dplase.generators.registry import FAMILIES
from dplase.priors import TruncatedNormalPrior

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
#: small configurations that run on the CPU: attention in the middle (16 px) and first (8 px)
SMALL = {
    "attn2": {"output_dim": 16, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4, "num_classes": 5,
              "layers": [[True, 16, 8], [False, 8, 4], [True, 4, 2], [False, 2, 1]], "attention_layer_position": 2,
              "eps": 1e-4, "n_stats": 51},
    "attn0": {"output_dim": 8, "z_dim": 6, "class_embed_dim": 6, "channel_width": 3, "num_classes": 3,
              "layers": [[False, 16, 8], [True, 8, 4], [False, 4, 2], [False, 2, 1]], "attention_layer_position": 0,
              "eps": 1e-4, "n_stats": 11},
}
OPTIONS = {"classes": [2], "truncation": 0.4}


def layout_script():
    """scripts/biggan_layout.py, the reference layout derived without dplase's network."""
    spec = importlib.util.spec_from_file_location("biggan_layout", ROOT / "scripts" / "biggan_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the reference layout: positive running variances, spectral-norm u, v after one power
    step (as the reference's converter leaves them), a non-zero attention gain."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout_script().layout(config).items():
        if key.endswith("running_vars"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * (0.1 if len(shape) > 1 else 0.5)
    for key in [k for k in state if k.endswith("weight_u")]:
        base = key.removesuffix("weight_u")
        mat = state[base + "weight_orig"].reshape(len(state[key]), -1)
        state[base + "weight_v"] = F.normalize(mat.T @ state[key], dim=0)
        state[key] = F.normalize(mat @ state[base + "weight_v"], dim=0)
    return state


def write_checkpoint(folder: Path, config: dict, state: dict | None = None, seed: int = 0) -> Path:
    """pytorch_model.bin (the 2019 torch.save format the published files use) + config.json in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(random_state(config, seed) if state is None else state, folder / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(params=list(SMALL))
def imported(request, tmp_path):
    config = SMALL[request.param]
    folder = write_checkpoint(tmp_path / "biggan", config)
    out = import_checkpoint(folder, tmp_path / "g.pt", options=OPTIONS)
    return config, random_state(config), load_generator(out)


@pytest.mark.parametrize("name", ["biggan_deep_128", "biggan_deep_256"])
def test_network_has_the_published_layout(name):
    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    assert set(fixture["config"]) == set(CONFIG_KEYS)
    assert fixture["shapes"] == layout_script().layout(fixture["config"])  # fixture and script agree
    with torch.device("meta"):
        net = BigGANGenerator(**fixture["config"])
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == list(fixture["shapes"].items())
    assert net.image_size == fixture["config"]["output_dim"]


def test_import_uses_every_tensor(imported):
    config, state, adapter = imported
    loaded = adapter.net.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert isinstance(adapter, BigGANAdapter) and adapter.family == "biggan"
    assert adapter.net.class_index == 2 and adapter.net.truncation == 0.4
    assert adapter.prior == TruncatedNormalPrior(dim=config["z_dim"], truncation=0.4, bound=2.0)
    assert (adapter.z_dim, adapter.image_size, adapter.channels) == (config["z_dim"], config["output_dim"], 3)


def test_adapter_contract_every_layer(imported):
    _, _, adapter = imported
    z = adapter.sample_latents(4, seed=1)
    assert z.abs().max() <= 0.8  # truncation 0.4 times the reference's bound 2
    image = adapter.forward(z)
    assert image.shape == (4, 3, adapter.image_size, adapter.image_size)
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0
    assert adapter.layers[0] == "generator.gen_z" == adapter.default_layer()
    assert len(adapter.layers) == 1 + len(adapter.net.generator.layers)
    for layer in adapter.layers:
        f = adapter.features(z, layer)
        assert f.ndim == 4 and f.shape[0] == 4
        torch.testing.assert_close(adapter.from_features(f, layer, z), image, rtol=0, atol=1e-6)
    torch.testing.assert_close(adapter.generate(z, batch_size=3), image)
    with pytest.raises(ValueError, match=r"unknown layer 'block0'.*generator\.gen_z"):
        adapter.features(z, "block0")


def test_g2_reads_the_latent(imported):
    _, _, adapter = imported
    z = adapter.sample_latents(3, seed=2)
    f = adapter.features(z, "generator.gen_z")
    assert adapter.g2_needs_latent
    assert not torch.allclose(adapter.from_features(f, "generator.gen_z", z.flip(0)),
                              adapter.from_features(f, "generator.gen_z", z))
    with pytest.raises(ValueError, match="needs the latent"):
        adapter.from_features(f, "generator.gen_z")


def test_latent_projection_weight_is_gen_z_on_z(imported):
    config, _, adapter = imported
    weight = adapter.latent_projection_weight()
    assert weight.shape == (4 * 4 * 16 * config["channel_width"], config["z_dim"])
    net, z = adapter.net, adapter.sample_latents(2, seed=3)
    step = torch.zeros_like(z)
    step[:, 1] = 1.0
    change = net.generator.gen_z(net.condition(z + step)) - net.generator.gen_z(net.condition(z))
    torch.testing.assert_close(change, weight[:, 1].expand(2, -1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="one latent projection"):
        adapter.latent_projection_weight(layers=[0])


def test_sefa_runs_on_the_imported_generator(imported):
    from dplase.methods import fit
    from dplase.methods.sefa import factorize_weight

    _, _, adapter = imported
    directions = fit("sefa", adapter, {"k": 3})
    top = factorize_weight(adapter.latent_projection_weight())[1][:3]
    torch.testing.assert_close(directions.directions.double(), top, rtol=0, atol=1e-5)


def test_class_changes_the_image(tmp_path):
    config = SMALL["attn2"]
    folder = write_checkpoint(tmp_path / "biggan", config)
    images = []
    for index in (0, 4):
        out = import_checkpoint(folder / "pytorch_model.bin", tmp_path / f"g{index}.pt",
                                options={"classes": index})
        adapter = load_generator(out)
        images.append(adapter(adapter.sample_latents(2, seed=0)))
    assert (images[0] - images[1]).abs().max() > 1e-3


def test_statistics_row_follows_the_reference():
    """truncation t picks row t * (n - 1); between rows the reference weights the lower one by the fraction."""
    table = torch.arange(11.0)[:, None].expand(11, 3)
    torch.testing.assert_close(truncation_stats(table, 0.4), torch.full((3,), 4.0))
    torch.testing.assert_close(truncation_stats(table, 1.0), torch.full((3,), 10.0))
    torch.testing.assert_close(truncation_stats(table, 0.425), torch.full((3,), 4 * 0.25 + 5 * 0.75))


def test_family_is_registered_import_only():
    entry = FAMILIES["biggan"]
    assert entry.load() is BigGANAdapter and BigGANAdapter.network is BigGANGenerator
    assert not entry.get("trainable") and not entry.get("planted")


def test_build_is_seeded_and_keeps_the_global_rng():
    arch = {**SMALL["attn0"], "class_index": 1, "truncation": 0.5}
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a, b = BigGANAdapter.build(arch, seed=3), BigGANAdapter.build(arch, seed=3)
    assert torch.equal(torch.rand(2), expected)
    assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(),
                                                  strict=True))
    assert a.prior.to_config() == {"name": "truncated_normal", "dim": 6, "truncation": 0.5, "bound": 2.0}


# ------------------------------------------------------------------------------------------------ bad input


def _import(path: Path, tmp_path: Path, options: dict | None = None) -> Path:
    return import_checkpoint(path, tmp_path / "out.pt", format="biggan", options=OPTIONS if options is None
                             else options)


def test_missing_config_json_names_it(tmp_path):
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"])
    (folder / "config.json").unlink()
    with pytest.raises(ImportFormatError, match=r"m/config\.json: missing: .*beside pytorch_model\.bin"):
        _import(folder / "pytorch_model.bin", tmp_path)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"config\.json: not valid JSON"),
    ("[1, 2]", r"config\.json: expected a JSON object"),
    (json.dumps({k: v for k, v in SMALL["attn2"].items() if k != "layers"}), r"config\.json: missing key\(s\) layers"),
    (json.dumps({**SMALL["attn2"], "z_dim": "8"}), r"config\.json: key 'z_dim' must be a positive integer"),
    (json.dumps({**SMALL["attn2"], "layers": [[1, 16, 8]]}), r"config\.json: key 'layers' must be a list"),
    (json.dumps({**SMALL["attn2"], "output_dim": 32}),
     r"config\.json: not a BigGAN-deep configuration: output_dim 32 does not match layers' 16 px"),
    (json.dumps({**SMALL["attn2"], "layers": [[True, 16, 4], [False, 4, 1]]}),
     r"config\.json: not a BigGAN-deep configuration: layers\[0\] = \[True, 16, 4\]"),
])
def test_bad_config_json_names_the_file_and_key(tmp_path, text, message):
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"])
    (folder / "config.json").write_text(text)
    with pytest.raises(ImportFormatError, match=message):
        _import(folder, tmp_path)


@pytest.mark.parametrize(("options", "message"), [
    ({"classes": [5]}, r"config\.json: class index 5 \(option 'classes'\) is out of range: num_classes is 5"),
    ({"classes": -1}, r"class index -1 \(option 'classes'\) is out of range"),
    ({"truncation": 0.5}, r"option 'classes' is required"),
    ({"classes": [0, 1]}, r"option 'classes' must be one class index .* use one entry per class"),
    ({"classes": [0], "truncation": 1.5}, r"option 'truncation' must be a number in \(0, 1\]"),
    ({"classes": [0], "class": 3}, r"option\(s\) class unknown; known: classes, truncation"),
])
def test_bad_options_name_the_key(tmp_path, options, message):
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"])
    with pytest.raises(ImportFormatError, match=message):
        _import(folder, tmp_path, options)


def test_wrong_layout_lists_missing_unexpected_and_misshaped_keys(tmp_path):
    state = random_state(SMALL["attn2"])
    state.pop("generator.gen_z.weight_v")
    state["generator.extra.weight"] = torch.zeros(3)
    state["embeddings.weight"] = torch.zeros(8, 6)
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"], state=state)
    with pytest.raises(ImportFormatError, match=(
            r"m/pytorch_model\.bin: the BigGAN-deep state dict does not have the expected layout: "
            r"1 missing: generator\.gen_z\.weight_v; 1 unexpected: generator\.extra\.weight; "
            r"1 wrong shape: embeddings\.weight \(8, 6\) \(expected \(8, 5\)\)")):
        _import(folder, tmp_path)


def test_another_configs_weights_are_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"], state=random_state(SMALL["attn0"]))
    with pytest.raises(ImportFormatError, match=r"pytorch_model\.bin: the BigGAN-deep state dict .*missing: "):
        _import(folder, tmp_path)


def test_truncated_or_missing_or_foreign_weights_name_the_file(tmp_path):
    folder = write_checkpoint(tmp_path / "m", SMALL["attn2"])
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ImportFormatError, match=r"m/pytorch_model\.bin: not a readable torch checkpoint \(truncated"):
        _import(folder, tmp_path)
    torch.save(torch.zeros(3), weights)
    with pytest.raises(ImportFormatError, match=r"pytorch_model\.bin: expected a state dict .* got Tensor"):
        _import(folder, tmp_path)
    weights.unlink()
    with pytest.raises(ImportFormatError, match=r"m/pytorch_model\.bin: no such checkpoint file"):
        _import(folder, tmp_path)
