"""Core pieces: artifacts, priors, walks, DirectionSet, the checkpointed loop, the method registry."""

from __future__ import annotations

import os
import pickle
import random
import signal

import numpy as np
import pytest
import torch
from scipy import stats

from dplase.artifacts import ArtifactError, atomic_write, load_artifact, save_artifact, sha256_tensors
from dplase.directions import DirectionSet
from dplase.methods import get_method
from dplase.priors import GaussianPrior, make_prior
from dplase.training.loop import LoopState, NonFiniteLossError, Preempted, run_loop, step_generator
from dplase.walks import apply_walk, linear_walk, norm_walk


class _Payload:
    """Pickling this runs code on load: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_artifact_round_trip(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "nested": {"b": torch.ones(2, dtype=torch.int64)}}
    path = save_artifact(tmp_path / "x.pt", "thing", tensors, {"seed": 3, "names": ["p", "q"]})
    loaded, meta = load_artifact(path, kind="thing")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["nested"]["b"], tensors["nested"]["b"])
    assert meta["seed"] == 3 and meta["names"] == ["p", "q"] and meta["kind"] == "thing"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable dplase artifact"),
        (random.Random(0).randbytes(512), "not a readable dplase artifact"),
        (pickle.dumps(_Payload()), "not a readable dplase artifact"),
    ],
)
def test_artifact_rejects_broken_or_foreign_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_artifact_rejects_truncated_and_wrong_kind(tmp_path):
    path = save_artifact(tmp_path / "x.pt", "thing", {"a": torch.zeros(1000)}, {})
    with pytest.raises(ArtifactError, match="expected a 'generator' artifact, found 'thing'"):
        load_artifact(path, kind="generator")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ArtifactError, match=r"x\.pt: not a readable dplase artifact"):
        load_artifact(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ArtifactError, match="missing 'dplase_format' header"):
        load_artifact(tmp_path / "plain.pt")
    with pytest.raises(ArtifactError, match="no such artifact file"):
        load_artifact(tmp_path / "absent.pt")


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def crash(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_sha256_tensors_is_order_independent_and_content_sensitive():
    a = {"x": torch.ones(3), "y": torch.zeros(2)}
    assert sha256_tensors(a) == sha256_tensors(dict(reversed(list(a.items()))))
    assert sha256_tensors(a) != sha256_tensors({"x": torch.ones(3), "y": torch.tensor([0.0, 1e-7])})


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("gaussian", stats.norm()),
        ("uniform", stats.uniform(loc=-np.sqrt(3), scale=2 * np.sqrt(3))),
    ],
)
def test_prior_log_prob_matches_scipy(name, reference):
    prior = make_prior(name, 3)
    x = torch.linspace(-1.7, 1.7, 11, dtype=torch.float64)
    np.testing.assert_allclose(prior.log_prob_1d(x).numpy(), reference.logpdf(x.numpy()), rtol=1e-6)


def test_mixture_log_prob_matches_scipy_and_samples_are_seeded():
    prior = make_prior("mixture", 2)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    ref = np.log(0.5 * stats.norm(-1.5, 0.5).pdf(x.numpy()) + 0.5 * stats.norm(1.5, 0.5).pdf(x.numpy()))
    np.testing.assert_allclose(prior.log_prob_1d(x).numpy(), ref, rtol=1e-6)
    assert torch.equal(prior.sample(5, 7), prior.sample(5, 7))
    assert not torch.equal(prior.sample(5, 7), prior.sample(5, 8))


def test_gaussian_norm_quantiles_match_monte_carlo():
    prior = GaussianPrior(dim=16)
    q = torch.tensor([0.01, 0.5, 0.99])
    mc = torch.quantile(prior.sample(100_000, 0).norm(dim=1), q)
    np.testing.assert_allclose(prior.norm_quantiles(q).numpy(), mc.numpy(), rtol=0.01)


def test_unknown_prior_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prior 'cauchy'; choose one of gaussian, uniform, mixture"):
        make_prior("cauchy", 4)


def test_norm_walk_preserves_norm_and_linear_walk_is_affine():
    z0 = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    gamma = torch.nn.functional.normalize(torch.randn(8, generator=torch.Generator().manual_seed(1)), dim=0)
    eps = torch.linspace(-10, 10, 32)
    torch.testing.assert_close(norm_walk(z0, gamma, eps).norm(dim=1), z0.norm(dim=1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(linear_walk(z0, gamma, 2.0) - z0, 2.0 * gamma.expand_as(z0))
    with pytest.raises(ValueError, match="needs a correction network"):
        apply_walk("learned", z0, gamma, 1.0)


def test_direction_set_round_trip_and_validation(tmp_path):
    ds = DirectionSet(
        directions=torch.randn(3, 5), scores=torch.tensor([3.0, 2.0, 1.0]), method="random",
        config={"k": 3}, walk="norm", layer="block1", seed=4, generator_sha256="ab",
        channel_masks=torch.ones(3, 2, 7), extra={"correction.w": torch.ones(2)},
    )
    torch.testing.assert_close(ds.directions.norm(dim=1), torch.ones(3))
    back = DirectionSet.load(ds.save(tmp_path / "d.pt"))
    assert torch.equal(back.directions, ds.directions) and torch.equal(back.scores, ds.scores)
    assert torch.equal(back.channel_masks, ds.channel_masks) and torch.equal(back.extra["correction.w"], torch.ones(2))
    assert (back.method, back.config, back.walk, back.layer, back.seed) == ("random", {"k": 3}, "norm", "block1", 4)
    with pytest.raises(ValueError, match="one score per direction"):
        DirectionSet(directions=torch.randn(3, 5), scores=torch.ones(2), method="x", config={})
    with pytest.raises(ValueError, match="unknown walk 'spiral'"):
        DirectionSet(directions=torch.randn(1, 5), scores=torch.ones(1), method="x", config={}, walk="spiral")


def _toy_training(tmp_path, total, interrupt_at=None, seed=0):
    """A tiny regression trained with run_loop; returns its final weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    state = LoopState({"model": model, "opt": opt})

    def step(t):
        if interrupt_at is not None and t == interrupt_at:
            os.kill(os.getpid(), signal.SIGUSR2)
        gen = step_generator(seed, t)
        x = torch.randn(8, 4, generator=gen)
        loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"mse": loss}

    run_loop(total_steps=total, step_fn=step, state=state, checkpoint_path=tmp_path / "c.ckpt",
             checkpoint_every=3, meta={"seed": seed}, progress=False)
    return model.weight.detach().clone(), state


def test_loop_resume_after_preemption_equals_uninterrupted(tmp_path):
    reference, ref_state = _toy_training(tmp_path / "a", 10)
    with pytest.raises(Preempted) as info:
        _toy_training(tmp_path / "b", 10, interrupt_at=6)
    assert info.value.code == 143 and info.value.step == 7
    resumed, state = _toy_training(tmp_path / "b", 10)
    assert torch.equal(reference, resumed)
    assert state.history == ref_state.history


def test_loop_refuses_checkpoint_of_other_config(tmp_path):
    _toy_training(tmp_path, 3, seed=0)
    with pytest.raises(ArtifactError, match="different configuration"):
        _toy_training(tmp_path, 6, seed=1)


def test_loop_stops_on_non_finite_term_naming_it():
    state = LoopState({})
    with pytest.raises(NonFiniteLossError, match="loss term 'decorrelation' is nan at step 2"):
        run_loop(total_steps=5, step_fn=lambda t: {"variation": 1.0, "decorrelation": float("nan") if t == 2 else 0.0},
                 state=state, checkpoint_path=None, progress=False)


def test_method_registry_errors():
    with pytest.raises(ValueError, match="unknown method 'pca'; choose one of dplase, sefa"):
        get_method("pca")
