"""GAN training for the built-in families (DCGAN, StyleGAN2): non-saturating loss with lazy R1, EMA generator,
resume-exact. Both families train against the same discriminator (`DCGANDiscriminator`, with the minibatch
standard-deviation channel); StyleGAN2 additionally gets its truncation mean w_avg from its EMA weights at the
end (no path-length regulariser, no style mixing: the CPU recipe does without them).

Every random number of step t (the real batch and the latents) comes from `step_generator(seed, t)`, and the
networks, optimisers and EMA copy are checkpointed by `run_loop`, so a run that is killed and rerun ends with
the same weights as one that never stopped. Files written beside the output PATH:
PATH.ckpt (while training; removed at the end), PATH.png (sample grid), PATH.losses.parquet (step/term/value).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dplase import __version__
from dplase.artifacts import config_hash, load_artifact
from dplase.generators.dcgan import DCGANDiscriminator, DCGANGenerator
from dplase.generators.registry import load_generator, save_generator
from dplase.generators.stylegan2 import StyleGAN2Generator, fit_w_avg
from dplase.priors import make_prior
from dplase.results import history_frame, write_losses
from dplase.training.loop import LoopState, check_finite_update, run_loop, step_generator

log = logging.getLogger(__name__)

#: config fields that only change bookkeeping, not the trained weights (left out of the hash and resume check)
BOOKKEEPING_FIELDS = ("checkpoint_every", "grid_every")
#: offset that keeps the grid latents' seed apart from the per-step seeds
GRID_SEED_OFFSET = 7_777


@dataclass
class GanConfig:
    """Everything that determines a trained GAN (plus two bookkeeping intervals).

    The defaults are the CPU recipe for the 64 px shapes GAN (see README).
    """

    dataset: str = "shapes"
    #: the generator family trained ("dcgan" or "stylegan2"; `FAMILIES` with ``trainable``)
    family: str = "dcgan"
    #: family-specific architecture options beyond the shared ones (stylegan2: w_dim, n_mlp, lr_mlp,
    #: channel_base, max_channels; `generator_arch`)
    arch: dict[str, Any] = field(default_factory=dict)
    image_size: int = 64
    z_dim: int = 16
    width: int = 16
    prior: str = "gaussian"
    pixelnorm: bool = False
    #: size of the fully connected hidden layer of G (between z and the 4x4 maps) and of D's head; 0: none
    hidden: int = 256
    #: minibatch standard-deviation channel in D (without it our CPU runs dropped most squares)
    mbstd: bool = True
    steps: int = 20000
    batch_size: int = 16
    #: 1e-3 rather than 2e-3: in paired CPU runs (2 seeds each) it halved the domain FID of the samples
    lr: float = 1e-3
    #: fraction of the run after which both learning rates fall linearly to 0 (1.0: constant); annealing
    #: damps the late oscillation of G (without it the EMA samples came out blurrier in our CPU runs)
    lr_decay_start: float = 0.5
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.1
    r1_every: int = 4
    ema_decay: float = 0.995
    seed: int = 0
    checkpoint_every: int = 250
    grid_every: int = 500
    #: extra keyword options for `load_dataset` (e.g. path= for the folder dataset)
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        checks = {
            "steps": self.steps >= 0, "batch_size": self.batch_size >= 1, "width": self.width >= 1,
            "z_dim": self.z_dim >= 1, "hidden": self.hidden >= 0, "lr": self.lr > 0, "r1_gamma": self.r1_gamma >= 0,
            "r1_every": self.r1_every >= 1, "ema_decay": 0 <= self.ema_decay < 1,
            "lr_decay_start": 0 <= self.lr_decay_start <= 1,
            "checkpoint_every": self.checkpoint_every >= 0, "grid_every": self.grid_every >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid GAN config value(s): {', '.join(f'{b}={getattr(self, b)}' for b in bad)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def result_dict(self) -> dict[str, Any]:
        """The fields that determine the weights (what is hashed and checked on resume); a DCGAN's family and
        empty ``arch`` are left out, so its hash is what it was before there were other families."""
        out = {k: v for k, v in self.to_dict().items() if k not in BOOKKEEPING_FIELDS}
        if out["family"] == "dcgan" and not out["arch"]:
            del out["family"], out["arch"]
        return out

    def hash(self) -> str:
        """Short hash of `result_dict`."""
        return config_hash(self.result_dict())


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The files a run writes: the artifact, its checkpoint, sample grid and loss log."""
    out = Path(out)
    return {"out": out, "ckpt": out.with_suffix(".ckpt"), "grid": out.with_suffix(".png"),
            "losses": out.with_suffix(".losses.parquet")}


#: StyleGAN2 options a GanConfig's ``arch`` may set
STYLEGAN2_ARCH = ("w_dim", "n_mlp", "lr_mlp", "channel_base", "max_channels")


def generator_arch(config: GanConfig, channels: int) -> dict[str, Any]:
    """The generator's keyword arguments for ``config`` (what the artifact records as ``arch``).

    A StyleGAN2 has ``width`` channels at every resolution unless ``arch`` sets channel_base / max_channels;
    w_dim defaults to z_dim, n_mlp to 4; its fixed noise is drawn from the run's seed."""
    if config.family == "dcgan":
        if config.arch:
            raise ValueError(f"the dcgan family takes no arch options, got {sorted(config.arch)}")
        return {"z_dim": config.z_dim, "image_size": config.image_size, "channels": channels,
                "width": config.width, "pixelnorm": config.pixelnorm, "hidden": config.hidden}
    if config.family != "stylegan2":
        raise ValueError(f"family '{config.family}' is not trained by dplase.training.gan (dcgan, stylegan2)")
    unknown = sorted(set(config.arch) - set(STYLEGAN2_ARCH))
    if unknown:
        raise ValueError(f"unknown stylegan2 arch option(s) {unknown}; known: {', '.join(STYLEGAN2_ARCH)}")
    arch = {"z_dim": config.z_dim, "w_dim": config.z_dim, "image_size": config.image_size, "channels": channels,
            "n_mlp": 4, "lr_mlp": 0.01, "channel_base": config.width * config.image_size,
            "max_channels": config.width, "noise_seed": config.seed}
    return {**arch, **config.arch}


def build_networks(arch: dict[str, Any], seed: int, mbstd: bool = False, hidden: int = 0,
                   family: str = "dcgan") -> tuple[nn.Module, DCGANDiscriminator]:
    """Generator and discriminator initialised from ``seed`` without touching the global RNG state.

    The discriminator mirrors the generator's ``image_size`` and ``channels``, its width (a StyleGAN2's
    max_channels) and ``hidden`` (a DCGAN's own; ``hidden`` for the others).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "stylegan2":
            gen: nn.Module = StyleGAN2Generator(**arch)
            width, hidden = arch["max_channels"], hidden
        else:
            gen = DCGANGenerator(**arch)
            width, hidden = arch["width"], arch.get("hidden", 0)
        disc = DCGANDiscriminator(image_size=arch["image_size"], channels=arch["channels"], width=width,
                                  hidden=hidden, mbstd=mbstd)
    return gen, disc


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for parameters; buffers (BN statistics) are copied."""
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)


def lr_at(step: int, config: GanConfig) -> float:
    """Learning rate of ``step``: constant, then linear decay to 0 over the last part of the run."""
    start = config.lr_decay_start * config.steps
    if config.lr_decay_start >= 1 or step < start:
        return config.lr
    return config.lr * max(0.0, (config.steps - step) / (config.steps - start))


def ema_decay_at(step: int, decay: float) -> float:
    """Ramped decay: early on the average follows the fast-changing weights instead of the random init."""
    return min(decay, (1.0 + step) / (10.0 + step))


class GanTrainer:
    """Holds the networks and optimisers of one run and performs its steps."""

    def __init__(self, config: GanConfig, dataset: Any, device: str | torch.device = "cpu") -> None:
        self.config, self.dataset, self.device = config, dataset, torch.device(device)
        self.prior = make_prior(config.prior, config.z_dim)
        self.arch = generator_arch(config, int(dataset.channels))
        gen, disc = build_networks(self.arch, config.seed, mbstd=config.mbstd, hidden=config.hidden,
                                   family=config.family)
        self.gen, self.disc = gen.to(self.device).train(), disc.to(self.device).train()
        self.ema = copy.deepcopy(self.gen).eval().requires_grad_(False)
        # the fused kernel updates all tensors in one pass: ~10% faster steps on CPU for the default recipe
        fused = self.device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=config.lr, betas=config.betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=config.betas, fused=fused)
        self.state = LoopState({"generator": self.gen, "discriminator": self.disc, "ema": self.ema,
                                "opt_g": self.opt_g, "opt_d": self.opt_d})

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One discriminator update (plus R1 every ``r1_every`` steps) and one generator update."""
        cfg = self.config
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
            group["lr"] = lr_at(step, cfg)  # a function of the step, so resuming needs no scheduler state
        gen = step_generator(cfg.seed, step)
        real, _ = self.dataset.sample(cfg.batch_size, gen)
        real = real.to(self.device).detach()  # a fresh leaf, never the dataset's own tensor
        z = self.prior.sample(cfg.batch_size, gen, device=self.device)
        fake = self.gen(z)  # one forward serves both updates

        lazy_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
        real.requires_grad_(lazy_r1)
        d_real, d_fake = self.disc(real), self.disc(fake.detach())
        d_loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        terms = {"d_loss": d_loss.detach(), "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}
        total = d_loss
        if lazy_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            # lazy regularisation: scale by the interval so the effective strength does not depend on it
            total = total + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
            terms["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        # a NaN/Inf loss or gradient stops the run here, before it reaches the weights (or a checkpoint)
        check_finite_update({k: terms[k] for k in ("d_loss", "r1") if k in terms}, self.disc.parameters(), step)
        self.opt_d.step()

        g_loss = F.softplus(-self.disc(fake)).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(self.gen.parameters()))  # no weight gradients for D here
        check_finite_update({"g_loss": g_loss}, self.gen.parameters(), step)
        self.opt_g.step()
        update_ema(self.ema, self.gen, ema_decay_at(step, cfg.ema_decay))
        terms["g_loss"] = g_loss.detach()
        return terms

    @torch.no_grad()
    def ema_samples(self, n: int = 64) -> torch.Tensor:
        """Images of the EMA generator for fixed latents (same every call), on CPU."""
        z = self.prior.sample(n, self.config.seed + GRID_SEED_OFFSET, device=self.device)
        return self.ema(z).cpu()


def _already_trained(out: Path, cfg: GanConfig) -> bool:
    if not out.exists():
        return False
    try:
        _, meta = load_artifact(out, kind="generator")
    except Exception:
        return False
    return meta.get("config_hash") == cfg.hash()


def train_gan(
    config: GanConfig,
    out: str | os.PathLike,
    device: str | torch.device = "cpu",
    progress: bool = True,
    dataset: Any = None,
    on_step: Callable[[int], None] | None = None,
    name: str | None = None,
) -> Path:
    """Train (or resume training) a GAN of ``config.family`` and write the EMA generator to ``out`` with its grid
    and losses.

    ``dataset`` overrides ``load_dataset(config.dataset, ...)`` (an object with ``channels``,
    ``image_size`` and ``sample(n, generator)``). If ``out`` already holds a generator of the same
    config hash, nothing is retrained. Raises `dplase.training.Preempted` on SIGTERM/SIGUSR2 after
    checkpointing; rerunning the same call resumes.
    """
    from dplase.plots.grids import save_image_grid

    paths = output_paths(out)
    if _already_trained(paths["out"], config):
        log.info("%s is up to date (config %s)", paths["out"], config.hash())
        return paths["out"]
    if dataset is None:
        from dplase.data import load_dataset

        dataset = load_dataset(config.dataset, image_size=config.image_size, seed=config.seed,
                               **config.dataset_options)
    if int(dataset.image_size) != config.image_size:
        raise ValueError(f"dataset '{config.dataset}' has image size {dataset.image_size}, "
                         f"config asks for {config.image_size}")
    trainer = GanTrainer(config, dataset, device)

    def after_step(step: int) -> None:
        if config.grid_every and (step + 1) % config.grid_every == 0 and step + 1 < config.steps:
            save_image_grid(trainer.ema_samples(), paths["grid"], nrow=8, title=f"step {step + 1}")
        if on_step is not None:
            on_step(step)

    started = time.perf_counter()
    run_loop(total_steps=config.steps, step_fn=trainer.step, state=trainer.state, checkpoint_path=paths["ckpt"],
             checkpoint_every=config.checkpoint_every, kind="gan-checkpoint", meta=config.result_dict(),
             desc=f"train-gan {config.dataset}", on_step=after_step, progress=progress)
    log.info("trained %d steps in %.1f s (this session)", config.steps, time.perf_counter() - started)

    dataset_config = dataset.to_config() if hasattr(dataset, "to_config") else None
    meta = {"dataset": config.dataset, "dataset_options": config.dataset_options, "dataset_config": dataset_config,
            "image_size": config.image_size, "seed": config.seed, "steps": config.steps,
            "package_version": __version__, "config": config.to_dict(), "config_hash": config.hash(),
            "name": name or paths["out"].stem, "trainer": "dplase.training.gan (non-saturating + lazy R1, EMA)"}
    if config.family == "stylegan2":
        fit_w_avg(trainer.ema, seed=config.seed)
    save_generator(paths["out"], trainer.ema, config.family, trainer.arch, trainer.prior.to_config(), meta)
    adapter = load_generator(paths["out"])  # the grid comes from the saved file, as every user will see it
    images = adapter.generate(adapter.sample_latents(64, config.seed + GRID_SEED_OFFSET))
    save_image_grid(images, paths["grid"], nrow=8)
    write_losses(history_frame(trainer.state.history), paths["losses"])
    paths["ckpt"].unlink(missing_ok=True)
    return paths["out"]
