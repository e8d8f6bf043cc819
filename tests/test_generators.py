"""Generator adapter contract (every adapter config, every layer), DCGAN checkpoints and their failure modes."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dplase.artifacts import ArtifactError, save_artifact, sha256_file, sha256_tensors
from dplase.directions import DirectionSet
from dplase.generators import load_generator, save_generator
from dplase.generators.dcgan import DCGANAdapter, DCGANDiscriminator, DCGANGenerator, MinibatchStd
from dplase.priors import PRIOR_NAMES, make_prior
from dplase.training.gan import build_networks

Z_DIM = 6
CONFIGS = [
    {"image_size": size, "pixelnorm": pixelnorm, "prior": prior, "channels": channels, "hidden": hidden}
    for size, channels in ((32, 1), (64, 3))
    for pixelnorm in (False, True)
    for prior in PRIOR_NAMES
    for hidden in ((0, 16) if prior == "gaussian" else (0,))  # with and without G's hidden layer
]


def _adapter(image_size: int, pixelnorm: bool, prior: str, channels: int, hidden: int = 0,
             seed: int = 0) -> DCGANAdapter:
    arch = {"z_dim": Z_DIM, "image_size": image_size, "channels": channels, "width": 4, "pixelnorm": pixelnorm,
            "hidden": hidden}
    adapter = DCGANAdapter.build(arch, prior={"name": prior, "dim": Z_DIM}, seed=seed)
    _randomise_bn_statistics(adapter.net, seed)
    return adapter


def _randomise_bn_statistics(net: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm non-trivial running statistics, as after training (init has mean 0, var 1)."""
    gen = torch.Generator().manual_seed(seed + 1)
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)


def _cases() -> list[tuple[dict, str]]:
    cases = []
    for config in CONFIGS:
        n_layers = 3 if config["image_size"] == 32 else 4
        cases += [(config, f"block{i}") for i in range(n_layers)]
    return cases


def _case_id(case: tuple[dict, str]) -> str:
    config, layer = case
    pn = "pn" if config["pixelnorm"] else "plain"
    return f"{config['image_size']}px-{pn}-{config['prior']}-h{config['hidden']}-{layer}"


@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_adapter_contract(case: tuple[dict, str]) -> None:
    config, layer = case
    adapter = _adapter(**config)
    z = adapter.sample_latents(5, seed=1)
    assert z.shape == (5, Z_DIM)
    image = adapter.forward(z)
    size, channels = config["image_size"], config["channels"]
    assert image.shape == (5, channels, size, size)
    assert image.min() >= -1 and image.max() <= 1
    assert image.std() > 0  # not a constant image

    f = adapter.features(z, layer)
    index = int(layer.removeprefix("block"))
    assert f.shape[0] == 5 and f.shape[-2:] == (4 * 2**index, 4 * 2**index)
    torch.testing.assert_close(adapter.from_features(f, layer), image, rtol=0, atol=1e-6)
    torch.testing.assert_close(adapter(z), image)
    torch.testing.assert_close(adapter.generate(z, batch_size=2), image)  # batching changes nothing (eval BN)


@pytest.mark.parametrize("config", [c for c in CONFIGS if not c["pixelnorm"]],
                         ids=lambda c: f"{c['image_size']}px-{c['prior']}-h{c['hidden']}")
def test_adapter_metadata(config: dict) -> None:
    adapter = _adapter(**config)
    assert adapter.layers == [f"block{i}" for i in range(len(adapter.layers))]
    assert adapter.default_layer() == "block0"
    assert adapter.prior.name == config["prior"] and adapter.prior.dim == Z_DIM
    weight = adapter.latent_projection_weight()
    assert weight.shape == (config["hidden"] or 4 * 2 ** (len(adapter.layers) - 1) * 16, Z_DIM)
    # the projection really is the first map: changing it changes block0 features
    z = adapter.sample_latents(3, seed=0)
    before = adapter.features(z, "block0").clone()
    adapter.net.project.weight.mul_(2)
    assert not torch.allclose(adapter.features(z, "block0"), before)
    with pytest.raises(ValueError, match=r"unknown layer 'block9'.*choose one of block0"):
        adapter.features(z, "block9")


def test_sampling_latents_is_seeded() -> None:
    adapter = _adapter(32, False, "mixture", 1)
    assert torch.equal(adapter.sample_latents(4, seed=3), adapter.sample_latents(4, seed=3))
    assert not torch.equal(adapter.sample_latents(4, seed=3), adapter.sample_latents(4, seed=4))


@pytest.mark.parametrize("image_size", [32, 64])
def test_pixelnorm_makes_generator_invariant_to_latent_norm(image_size: int) -> None:
    z = make_prior("gaussian", Z_DIM).sample(4, seed=0)
    with_norm = _adapter(image_size, True, "gaussian", 1)
    plain = _adapter(image_size, False, "gaussian", 1)
    for scale in (0.5, 3.0):
        torch.testing.assert_close(with_norm(z * scale), with_norm(z), rtol=0, atol=1e-5)
        assert (plain(z * scale) - plain(z)).abs().max() > 1e-2


def test_init_is_deterministic_under_seed() -> None:
    arch = {"z_dim": Z_DIM, "image_size": 32, "channels": 1, "width": 4}
    a, b, c = (DCGANAdapter.build(arch, seed=s).net.state_dict() for s in (5, 5, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_trainer_init_is_seeded_and_leaves_global_rng_alone() -> None:
    arch = {"z_dim": Z_DIM, "image_size": 32, "channels": 1, "width": 4, "pixelnorm": False}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    (g1, d1), (g2, d2) = build_networks(arch, seed=7), build_networks(arch, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    for one, two in ((g1, g2), (d1, d2)):
        assert all(torch.equal(x, y) for x, y in zip(one.state_dict().values(), two.state_dict().values(),
                                                      strict=True))
    g3, _ = build_networks(arch, seed=8)
    assert not torch.equal(g1.project.weight, g3.project.weight)


def test_minibatch_std_channel_matches_numpy() -> None:
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = MinibatchStd()(x)
    assert out.shape == (5, 4, 4, 4)
    assert torch.equal(out[:, :3], x)
    expected = float(np.std(x.numpy().astype(np.float64), axis=0).mean())  # population std per feature
    torch.testing.assert_close(out[:, 3], torch.full((5, 4, 4), expected), rtol=1e-5, atol=1e-6)
    alone = x[:1].clone().requires_grad_(True)  # one image: no spread; value ~0 and a finite gradient
    spread = MinibatchStd()(alone)[:, 3]
    assert spread.abs().max() < 1e-3
    spread.sum().backward()
    assert torch.isfinite(alone.grad).all()


@pytest.mark.parametrize("hidden", [0, 8])
def test_discriminator_sees_the_batch_only_with_minibatch_std(hidden: int) -> None:
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    for mbstd in (False, True):
        torch.manual_seed(0)
        disc = DCGANDiscriminator(image_size=32, channels=1, width=4, hidden=hidden, mbstd=mbstd)
        with_other = disc(x)[0]  # the first image beside a different one
        with_copy = disc(torch.cat([x[:1], x[:1]]))[0]  # beside a copy of itself: zero spread
        assert torch.isclose(with_other, with_copy).item() is (not mbstd)


def test_negative_hidden_size_is_refused() -> None:
    with pytest.raises(ValueError, match="hidden must be >= 0, got -1"):
        DCGANGenerator(z_dim=4, image_size=32, width=4, hidden=-1)
    with pytest.raises(ValueError, match="hidden must be >= 0, got -2"):
        DCGANDiscriminator(image_size=32, width=4, hidden=-2)


# ---------------------------------------------------------------------------------------------- checkpoints


def _save(path: Path, adapter: DCGANAdapter, arch: dict) -> Path:
    meta = {"dataset": "shapes", "seed": 0, "steps": 0}
    return save_generator(path, adapter.net, "dcgan", arch, adapter.prior.to_config(), meta)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, DCGANAdapter]:
    # no "hidden" key: the architecture record of generators saved before that option existed
    arch = {"z_dim": Z_DIM, "image_size": 32, "channels": 1, "width": 4, "pixelnorm": False}
    adapter = DCGANAdapter.build(arch, prior={"name": "uniform", "dim": Z_DIM}, seed=2)
    _randomise_bn_statistics(adapter.net, 2)
    return _save(tmp_path / "g.pt", adapter, arch), adapter


def test_checkpoint_round_trip(saved: tuple[Path, DCGANAdapter]) -> None:
    path, original = saved
    loaded = load_generator(path)
    assert isinstance(loaded, DCGANAdapter)
    assert loaded.checkpoint_sha256 == sha256_file(path)
    assert loaded.prior == original.prior and loaded.layers == original.layers
    z = original.sample_latents(6, seed=0)
    assert torch.equal(loaded(z), original(z))
    for key, value in original.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key


def test_checkpoint_holds_no_code(saved: tuple[Path, DCGANAdapter]) -> None:
    path, _ = saved
    payload = torch.load(path, weights_only=True)  # would raise if anything but plain data were inside
    assert set(payload["tensors"]) == {"generator"}


def test_truncated_checkpoint_is_refused(saved: tuple[Path, DCGANAdapter]) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"g\.pt: not a readable dplase artifact \(corrupted, truncated"):
        load_generator(path)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ArtifactError, match=r"noise\.pt: not a readable dplase artifact"):
        load_generator(path)


def test_corrupted_weights_fail_the_sha256_check(saved: tuple[Path, DCGANAdapter], tmp_path: Path) -> None:
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["tensors"]["generator"]["project.weight"][0, 0] += 1.0
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    with pytest.raises(ArtifactError, match=r"forged\.pt: generator weights do not match their recorded sha256"):
        load_generator(forged)


class _Payload:
    """An object whose unpickling would run code (creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    if container == "torch-zip":
        torch.save({"dplase_format": 1, "kind": "generator", "tensors": _Payload(marker)}, path)
        assert zipfile.is_zipfile(path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(ArtifactError, match=r"evil\.pt: not a readable dplase artifact"):
        load_generator(path)
    assert not marker.exists()
    # control: without the weights-only guard the same file does run its code
    if container == "raw-pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_directions_artifact_is_not_a_generator(tmp_path: Path) -> None:
    path = DirectionSet(torch.eye(3, 5), torch.ones(3), "random", {}).save(tmp_path / "directions.pt")
    with pytest.raises(ArtifactError, match="expected a 'generator' artifact, found 'directions'"):
        load_generator(path)


def test_foreign_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(DCGANGenerator(z_dim=4, image_size=32, width=4).state_dict(), path)  # a bare state dict
    with pytest.raises(ArtifactError, match=r"plain\.pt: not a dplase artifact \(missing 'dplase_format' header\)"):
        load_generator(path)


def test_unknown_family_and_wrong_architecture(tmp_path: Path, saved: tuple[Path, DCGANAdapter]) -> None:
    _, adapter = saved
    state = {k: v.clone() for k, v in adapter.net.state_dict().items()}
    common = {"prior": adapter.prior.to_config(), "weights_sha256": sha256_tensors(state)}
    save_artifact(tmp_path / "fam.pt", "generator", {"generator": state},
                  {**common, "family": "stylegan9", "arch": {}})
    with pytest.raises(ArtifactError, match="unknown generator family 'stylegan9'; known: dcgan"):
        load_generator(tmp_path / "fam.pt")
    wrong_arch = {"z_dim": Z_DIM, "image_size": 32, "channels": 1, "width": 8, "pixelnorm": False}
    save_artifact(tmp_path / "arch.pt", "generator", {"generator": state},
                  {**common, "family": "dcgan", "arch": wrong_arch})
    with pytest.raises(ArtifactError, match=r"arch\.pt: weights do not fit architecture"):
        load_generator(tmp_path / "arch.pt")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"absent\.pt: no such artifact file"):
        load_generator(tmp_path / "absent.pt")

