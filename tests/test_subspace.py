"""Channel subspace learning: thresholding, clustering, learning S, masked edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from dplase.generators.dcgan import DCGANAdapter
from dplase.subspace import (
    SelfExpression,
    SubspaceConfig,
    cluster_channels,
    labels_to_masks,
    masked_edit,
    masked_features,
    subspace_loss,
    threshold_rows,
)
from dplase.walks import linear_walk


def test_threshold_rows_keeps_the_top_mass():
    s = np.array([[0.0, -5.0, 3.0, 2.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out = threshold_rows(s, rho=0.5)
    # row 0: L1 mass 10, the largest entry (|-5|) already covers half of it
    np.testing.assert_array_equal(out[0], [0.0, -5.0, 0.0, 0.0])
    # row 1: ties broken by position; one entry covers 1/2
    np.testing.assert_array_equal(out[1], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[2], np.zeros(4))
    np.testing.assert_array_equal(threshold_rows(s, rho=0.9)[0], [0.0, -5.0, 3.0, 2.0])


def test_self_expression_has_zero_diagonal_and_no_diagonal_gradient():
    module = SelfExpression(2, 4)
    with torch.no_grad():
        module.weight[1].fill_(1.0)
    s = module.matrix(1)
    assert torch.equal(torch.diagonal(s), torch.zeros(4))
    f = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    sum(subspace_loss(s, f, lambda x: x, SubspaceConfig(w_img=0.0)).values()).backward()
    assert torch.equal(torch.diagonal(module.weight[1].grad), torch.zeros(4))
    assert module.weight[1].grad.abs().sum() > 0
    assert module.weight[0].grad is None  # other directions untouched, so Adam skips them


def test_subspace_loss_hand_values():
    s = torch.tensor([[0.0, 1.0], [0.5, 0.0]])
    f = torch.tensor([[1.0, 2.0]])  # one sample, two flat channels: f_rec = (2, 0.5)
    cfg = SubspaceConfig(w_feat=1.0, w_img=2.0, w_sparse=0.1, reg="l2")
    terms = subspace_loss(s, f, lambda x: 3 * x, cfg)
    assert float(terms["sub_feat"]) == pytest.approx(((1 - 2) ** 2 + (2 - 0.5) ** 2) / 2)
    assert float(terms["sub_img"]) == pytest.approx(2 * 9 * ((1 - 2) ** 2 + (2 - 0.5) ** 2) / 2)
    assert float(terms["sub_sparse"]) == pytest.approx(0.1 * (1 + 0.25) / 4)
    l1 = subspace_loss(s, f, lambda x: x, SubspaceConfig(w_sparse=1.0, reg="l1"))
    assert float(l1["sub_sparse"]) == pytest.approx(1.5 / 4)


def test_learned_self_expression_recovers_channel_groups():
    # 12 channels in 3 groups; channels of a group are mixtures of that group's own 2 latent signals
    gen = torch.Generator().manual_seed(0)
    truth = np.repeat(np.arange(3), 4)
    mixing = torch.randn(12, 2, generator=gen)
    module = SelfExpression(1, 12)
    opt = torch.optim.Adam(module.parameters(), lr=2e-2)
    cfg = SubspaceConfig(w_img=0.0, w_sparse=1e-3)
    for step in range(300):
        signals = torch.randn(64, 3, 2, generator=torch.Generator().manual_seed(step))
        f = torch.einsum("cs,ncs->nc", mixing, signals[:, torch.as_tensor(truth)])
        loss = sum(subspace_loss(module.matrix(0), f, lambda x: x, cfg).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    labels = cluster_channels(module.matrix(0), groups=3, dim=2, rho=0.9, power=3.0, seed=0)
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    shuffled = cluster_channels(torch.randn(12, 12, generator=gen), groups=3, dim=2, rho=0.9, power=3.0, seed=0)
    assert adjusted_rand_score(truth, shuffled) < 0.5  # random S does not find the groups


def test_labels_to_masks_partition_channels():
    masks = labels_to_masks(np.array([0, 2, 1, 2]), 3)
    torch.testing.assert_close(masks, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]]))


def test_masked_edit_limits():
    gen = DCGANAdapter.build({"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}, seed=0)
    z0 = gen.sample_latents(3, 0)
    gamma = torch.nn.functional.normalize(torch.ones(8), dim=0)
    channels = gen.features(z0, "block1").shape[1]
    full = masked_edit(gen, "block1", z0, gamma, 2.0, torch.ones(channels), linear_walk)
    none = masked_edit(gen, "block1", z0, gamma, 2.0, torch.zeros(channels), linear_walk)
    with torch.no_grad():
        torch.testing.assert_close(full, gen(z0 + 2.0 * gamma))
        torch.testing.assert_close(none, gen(z0))
    half = torch.zeros(channels)
    half[: channels // 2] = 1
    f0, f1 = torch.zeros(1, channels, 2, 2), torch.ones(1, channels, 2, 2)
    mixed = masked_features(f0, f1, half)
    assert torch.equal(mixed[0, :, 0, 0], half)
