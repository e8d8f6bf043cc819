"""DP-LaSE (Li et al., ACM MM 2021): K latent directions that maximise the change of intermediate features
G1(z) along density-preserving walks while keeping the changes of different directions decorrelated.

Objective per batch (see ../shared/design/method.md): l_var = -variation + lambda * cross, plus
zeta * orthogonality penalty (or an exactly orthogonal parametrisation), plus, for the learned walk, the
density terms l_mon + l_lik (F) and l_den + proximity (C) from `dplase.walks.learned`.

Two estimators of l_var (``estimator``):
- ``full`` (the write-up's exact sums, default): every sample is walked along all K directions with one step
  eps ~ U(-T, T); variation = mean of squared feature changes; cross = mean over samples and ordered pairs
  j != h of a function of D_j^T D_h, where D is the change as a (positions x channels) matrix (a flat feature
  vector is D x 1); D_j^T D_h (C x C) holds the inner products of channels' spatial change patterns, like the
  authors' per-channel cosine. Its two forms (``cross``), which differ only in that normalisation:
  - ``normalized`` (default): ||D_j^T D_h||_F^2 / (||D_j||_F^2 ||D_h||_F^2), in [0, 1] (flat features: the
    squared cosine of the two changes), scale-free: lambda weighs one bounded quantity at every layer.
  - ``raw``: ||D_j^T D_h||_F^2, the write-up's lambda sum_{j != h} ||Delta_j^T Delta_h||_F^2 (as a mean). It
    grows as the 4th power of the feature scale s, so lambda needs retuning per layer; hence not the default.
    Neither makes lambda * cross / variation scale-free (variation ~ s^2): on the tiny test DCGAN (K = 3,
    random directions) raw/variation is 267, 21, 2.5 at block0/1/2, normalized/variation 7.6, 38, 224.
- ``stochastic`` (the authors' code): each sample gets one eps and two random labels j, h; variation = mean
  squared change for both; cross = mean over channels of the squared cosine of the per-channel spatial
  change patterns, averaged over samples with j != h only (0 when there are none: no 0/0 for K = 1). It is
  normalised by construction and has no raw form: ``cross="raw"`` with it is refused (ValueError).
Orthogonality: ``penalty`` = ||Gamma Gamma^T - I||_F^2 (divided by K^2 for the stochastic estimator, as
in the authors' code) on the row-normalised Gamma; ``expm`` = first K rows of expm(A - A^T) Q0 (exact).
The loss terms and Gamma's parametrisation live in `dplase.methods.dplase_losses`; this module is the config
and the trainer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.methods import FitContext, MethodConfig, MethodSpec, convergence_record, latent_budget
from dplase.methods.dplase_losses import (
    CROSS_FORMS,
    Directions,
    _ContiguousGrad,
    as_matrix,
    full_terms,
    orthogonality_penalty,
    stochastic_walk_terms,
)
from dplase.subspace import SelfExpression, SubspaceConfig, cluster_channels, labels_to_masks, subspace_step
from dplase.training.loop import LoopState, check_finite_update, run_loop, step_generator
from dplase.walks import WALKS, apply_walk
from dplase.walks.learned import (
    PROJECTION_STARTS,
    PROJECTIONS,
    CorrectionFn,
    DensityConfig,
    DensityModel,
    correction_state,
    density_state,
)
from dplase.walks.steps import StepRange

ESTIMATORS = ("full", "stochastic")
ORTHOGONAL = ("penalty", "expm")
DENSITY_MODES = ("joint", "pretrain")


#: the budget rule (`dplase.methods.latent_budget`): lr x (the rule's) steps
DIRECTIONS_MOVE = 4.0


def dplase_budget(z_dim: int, k: int | None = None) -> dict[str, float | int]:
    """DP-LaSE's default budget at latent size ``z_dim``: ``steps = 50 z_dim`` main-loop steps and
    ``lr = 4 / steps`` (800 and 5e-3 at d = 16); ``k`` does not change it (every step moves all K directions;
    the full estimator's cost per step grows with K, not its step count). The step range is T of the prior."""
    steps, lr = latent_budget(z_dim, DIRECTIONS_MOVE)
    return {"steps": steps, "lr": lr}


@dataclass
class DPLaSEConfig(MethodConfig):
    """Every DP-LaSE hyperparameter with its default.

    Defaults that differ from the authors' runs, and why: the budget follows `dplase_budget` (``steps`` and
    ``lr`` None): steps = 50 z_dim (800 at d = 16) and lr = 4 / (50 z_dim) (5e-3 at d = 16, 1.6e-4 at d = 512,
    near the authors' 1e-4), so that Adam, which moves each parameter by at most ~lr per step, can move the
    directions O(1) within the rule's steps (at 1e-4 a 16-d run of 1000 steps moves each coordinate by at most
    ~0.1, about the size of a unit vector's coordinate: the directions would barely leave their random start);
    an explicit ``steps`` keeps the rule's lr, an explicit ``lr`` overrides it. K = 10 instead of 20 (our small
    GANs have z_dim 16); T = 10 scaled to the prior's RMS latent norm (T = 10 at d = 512, so T ~ 1.8 at d = 16)
    instead of a fixed 10, which would leave the prior's typical set at d = 16: the one step range of
    `dplase.walks.steps`, which the learned walk's F and C train on and the evaluation grid defaults to.
    """

    walk: str = "norm"
    steps: int | None = None  # None: 50 * z_dim (`dplase_budget`)
    lr: float | None = None  # None: 4 / (50 * z_dim)
    batch_size: int = 16
    max_step: float | None = None  # T; None: scaled to the prior (`dplase.walks.steps.max_step`); 0 refused
    lam: float = field(default=1.0, metadata={"option": "lambda"})  # weight of the decorrelation (cross) term
    zeta: float = 10.0  # weight of the orthogonality penalty (unused with orthogonal="expm")
    estimator: str = "full"
    cross: str = "normalized"  # full estimator's cross term: "normalized" (scale-free) or "raw" (the write-up's)
    orthogonal: str = "penalty"
    # learned walk (walk="learned"): F and C
    density_mode: str = "joint"  # "joint": F, C, Gamma together; "pretrain": F first, then frozen
    density_pretrain_steps: int = 500  # F-only steps before the main loop (pretrain mode)
    cdf_width: int = 16
    correction_width: int = 256
    correction_depth: int = 2
    min_slope: float = 1e-4  # v in l_mon
    delta: float = 1e-3  # finite-difference step for F'
    proximity: float = 0.1  # weight of mean ||C||^2 (C is kept orthogonal to gamma, see dplase.walks.learned)
    cdf_lr: float = 1e-2  # Adam for F
    correction_lr: float = 3e-3  # Adam for C
    density_batch: int = 512
    newton_steps: int = 5  # C's level projection on F (0: the network alone; dplase.walks.learned)
    projection_start: str = "linear"  # the projection starts from z0 + eps gamma ("linear") or C's network
    projection: str = "normal"  # C's Newton steps along the level's normal, or "orthogonal" to gamma
    correction_from_variation: bool = False  # let l_var's gradient reach C's weights too
    density_to_directions: bool = False  # let l_den's gradient reach Gamma too (the objective's min over Gamma)
    # scoring
    score_samples: int = 256
    # channel subspaces
    subspace: bool = False
    # subspace_<name> is SubspaceConfig.<name> (see `subspace_config`); the defaults live there
    subspace_steps: int = SubspaceConfig.steps
    subspace_batch: int = SubspaceConfig.batch
    subspace_lr: float = SubspaceConfig.lr
    subspace_groups: int = SubspaceConfig.groups
    subspace_dim: int = SubspaceConfig.dim
    subspace_rho: float = SubspaceConfig.rho
    subspace_power: float = SubspaceConfig.power
    subspace_w_feat: float = SubspaceConfig.w_feat
    subspace_w_img: float = SubspaceConfig.w_img
    subspace_w_sparse: float = SubspaceConfig.w_sparse
    subspace_reg: str = SubspaceConfig.reg

    def __post_init__(self) -> None:
        choices = {"walk": (self.walk, tuple(WALKS)), "estimator": (self.estimator, ESTIMATORS),
                   "cross": (self.cross, CROSS_FORMS),
                   "orthogonal": (self.orthogonal, ORTHOGONAL), "density_mode": (self.density_mode, DENSITY_MODES),
                   "projection_start": (self.projection_start, PROJECTION_STARTS),
                   "projection": (self.projection, PROJECTIONS),
                   "subspace_reg": (self.subspace_reg, ("l1", "l2"))}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got '{value}'")
        positive = {"steps": self.steps is None or self.steps >= 0, "lr": self.lr is None or self.lr > 0,
                    "batch_size": self.batch_size >= 1,
                    "lam": self.lam >= 0, "zeta": self.zeta >= 0, "delta": self.delta > 0,
                    "cdf_lr": self.cdf_lr > 0, "correction_lr": self.correction_lr > 0,
                    "density_batch": self.density_batch >= 1,
                    "density_pretrain_steps": self.density_pretrain_steps >= 0, "min_slope": self.min_slope >= 0,
                    "newton_steps": self.newton_steps >= 0,
                    "proximity": self.proximity >= 0, "score_samples": self.score_samples >= 1,
                    "subspace_steps": self.subspace_steps >= 0, "subspace_groups": self.subspace_groups >= 1,
                    "subspace_rho": 0 < self.subspace_rho <= 1}
        bad = [name for name, ok in positive.items() if not ok]
        if bad:
            raise ValueError(f"invalid value for {', '.join(bad)} (see DPLaSEConfig)")
        if self.cross != "normalized" and self.estimator != "full":
            raise ValueError(f"cross='{self.cross}' needs estimator='full': the stochastic estimator is the authors' "
                             "per-channel cosine (normalised by construction) and has no raw form")
        if self.max_step is not None and not (self.max_step > 0 and math.isfinite(self.max_step)):
            raise ValueError(f"max_step (T) must be a positive number or None (auto), got {self.max_step}")

    def resolved(self, z_dim: int) -> DPLaSEConfig:
        """This config with ``steps`` / ``lr`` left at None filled in by `dplase_budget` at ``z_dim``."""
        budget = dplase_budget(z_dim, self.k)
        return dataclasses.replace(self, steps=int(budget["steps"] if self.steps is None else self.steps),
                                   lr=float(budget["lr"] if self.lr is None else self.lr))

    def density_config(self) -> DensityConfig:
        """The learned-density options (same names here, except ``batch`` = ``density_batch``)."""
        return DensityConfig(**{f.name: getattr(self, "density_batch" if f.name == "batch" else f.name)
                                for f in dataclasses.fields(DensityConfig)})

    def subspace_config(self) -> SubspaceConfig:
        """The channel-subspace options (``subspace_<name>`` here)."""
        fields = dataclasses.fields(SubspaceConfig)
        return SubspaceConfig(**{f.name: getattr(self, f"subspace_{f.name}") for f in fields})


# ----------------------------------------------------------------------------------------------- trainer


class DPLaSETrainer:
    """State and one training step; `fit` drives it through `run_loop`."""

    def __init__(self, generator: GeneratorAdapter, config: DPLaSEConfig, seed: int) -> None:
        self.g, self.cfg, self.seed = generator, config.resolved(generator.z_dim), seed
        config = self.cfg
        self.layer = config.layer or generator.default_layer()
        given = config.max_step is not None
        self.step_range = StepRange(float(config.max_step)) if given else StepRange.for_prior(generator.prior)
        self.max_step = self.step_range.max_step  # T
        init = torch.Generator().manual_seed(int(seed))
        self.dirs = Directions(config.k, generator.z_dim, config.orthogonal, init).to(generator.device)
        self.opt = torch.optim.Adam(self.dirs.parameters(), lr=config.lr)
        self.stateful: dict[str, Any] = {"directions": self.dirs, "opt": self.opt}
        self.density: DensityModel | None = None
        self.pretrain = 0
        if config.walk == "learned":
            self.density = DensityModel(generator.prior, config.density_config(), self.max_step, seed)
            self.density.to(generator.device)
            self.opt_cdf = torch.optim.Adam(self.density.cdf.parameters(), lr=config.cdf_lr)
            self.opt_corr = torch.optim.Adam(self.density.correction.parameters(), lr=config.correction_lr)
            self.stateful.update(density=self.density, opt_cdf=self.opt_cdf, opt_corr=self.opt_corr)
            self.pretrain = config.density_pretrain_steps if config.density_mode == "pretrain" else 0
        self.sub_cfg = config.subspace_config()
        self.subspace: SelfExpression | None = None
        self.sub_steps = 0
        if config.subspace:
            channels = int(generator.features(generator.sample_latents(1, 0), self.layer).shape[1])
            self.subspace = SelfExpression(config.k, channels).to(generator.device)
            self.opt_sub = torch.optim.Adam(self.subspace.parameters(), lr=config.subspace_lr)
            self.stateful.update(subspace=self.subspace, opt_sub=self.opt_sub)
            self.sub_steps = config.k * config.subspace_steps

    @property
    def total_steps(self) -> int:
        return self.pretrain + self.cfg.steps + self.sub_steps

    # -- walks
    def walk(self, z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor, train: bool = False) -> torch.Tensor:
        """The configured walk (`dplase.walks.apply_walk`), with C from `_correction` for the learned walk."""
        return apply_walk(self.cfg.walk, z0, gamma, eps, self._correction(train))

    def _correction(self, train: bool) -> CorrectionFn | None:
        """The learned C (None for the other walks); during training with detached weights unless
        ``correction_from_variation`` (so C learns density preservation, not extra variation)."""
        if self.density is None:
            return None
        return self.density.walk_correction(detach=train and not self.cfg.correction_from_variation)

    def _sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z0 = self.g.prior.sample(n, gen).to(self.g.device)
        return z0, self.step_range.sample(n, gen).to(self.g.device)

    # -- steps
    def step(self, step: int) -> dict[str, torch.Tensor]:
        gen = step_generator(self.seed, step)
        if step < self.pretrain:
            return self._cdf_step(gen)
        if step < self.pretrain + self.cfg.steps:
            return self._main_step(gen, step)
        return self._subspace_step(step - self.pretrain - self.cfg.steps, gen)

    def _cdf_step(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        assert self.density is not None
        z = self.g.prior.sample(self.cfg.density_batch, gen).to(self.g.device)
        terms = self.density.cdf_losses(z)
        self.opt_cdf.zero_grad(set_to_none=True)
        (terms["mon"] + terms["lik"]).backward()
        self.opt_cdf.step()
        return terms

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        return as_matrix(_ContiguousGrad.apply(self.g.features(z, self.layer)))

    def variation_terms(self, gamma: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """l_var's parts for one batch (the G1 work of the step)."""
        n, k = self.cfg.batch_size, gamma.shape[0]
        z0, eps = self._sample(n, gen)
        with torch.no_grad():
            f0 = as_matrix(self.g.features(z0, self.layer))
        if self.cfg.estimator == "full":
            zr, er = z0.repeat_interleave(k, 0), eps.repeat_interleave(k, 0)
            f = self._features(self.walk(zr, gamma.repeat(n, 1), er, train=True))
            delta = f0[:, None] - f.reshape(n, k, *f.shape[1:])
            return full_terms(delta, self.cfg.cross)
        labels = torch.randint(0, k, (2, n), generator=gen).to(self.g.device)
        zr, er = z0.repeat(2, 1), eps.repeat(2)
        f = self._features(self.walk(zr, gamma[labels.reshape(-1)], er, train=True))
        return stochastic_walk_terms(f0, f, labels[0] != labels[1])

    def _main_step(self, gen: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        gamma = self.dirs()
        terms = self.variation_terms(gamma, gen)
        terms["l_var"] = -terms["variation"] + cfg.lam * terms["cross"]
        loss = terms["l_var"]
        if cfg.orthogonal == "penalty":
            terms["ortho"] = orthogonality_penalty(gamma, per_k2=cfg.estimator == "stochastic")
            loss = loss + cfg.zeta * terms["ortho"]
        optimisers = [self.opt]
        if self.density is not None:
            if cfg.density_mode == "joint":
                zf = self.g.prior.sample(cfg.density_batch, gen).to(self.g.device)
                terms.update(self.density.cdf_losses(zf))
                loss = loss + terms["mon"] + terms["lik"]
                optimisers.append(self.opt_cdf)
            if self.density.trains_network or cfg.density_to_directions:  # else l_den has nothing to train
                zd, ed = self._sample(cfg.density_batch, gen)
                idx = torch.randint(0, gamma.shape[0], (cfg.density_batch,), generator=gen).to(self.g.device)
                gd = gamma if cfg.density_to_directions else gamma.detach()
                terms.update(self.density.den_losses(zd, ed, gd[idx]))
                loss = loss + terms["den"] + terms["prox"]
                optimisers.append(self.opt_corr)
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        loss.backward()  # then a NaN/Inf loss term or gradient stops the run before any update
        check_finite_update(terms, [p for opt in optimisers for g in opt.param_groups for p in g["params"]], step)
        for opt in optimisers:
            opt.step()
        terms["loss"] = loss
        return terms

    def _subspace_step(self, index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        assert self.subspace is not None
        j = index // self.cfg.subspace_steps
        with torch.no_grad():
            gamma = self.dirs()[j]
        terms = subspace_step(self.subspace, j, self.g, self.layer, gamma, self._eval_walk, self.max_step,
                              self.sub_cfg, gen)
        self.opt_sub.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        self.opt_sub.step()
        return terms

    def _eval_walk(self, z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        gamma = gamma.to(z0).expand_as(z0)
        with torch.no_grad():
            return self.walk(z0, gamma, eps.reshape(-1))

    # -- results
    @torch.no_grad()
    def scores(self, gamma: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Mean squared feature change per direction over a fixed seeded sample and 8 steps in [-T, T]."""
        gen = step_generator(self.seed, self.total_steps)  # a stream no training step uses
        z0 = self.g.prior.sample(self.cfg.score_samples, gen).to(self.g.device)
        grid = self.step_range.probe()
        f0 = self.g.features(z0, self.layer)
        out = torch.zeros(gamma.shape[0])
        for j in range(gamma.shape[0]):
            total = 0.0
            for e in grid.tolist():
                for start in range(0, z0.shape[0], chunk):
                    zc = z0[start : start + chunk]
                    eps = torch.full((zc.shape[0],), e, device=zc.device)
                    f = self.g.features(self.walk(zc, gamma[j].expand_as(zc), eps), self.layer)
                    total += float((f0[start : start + chunk] - f).pow(2).flatten(1).mean(1).sum())
            out[j] = total / (z0.shape[0] * grid.numel())
        return out

    def channel_masks(self) -> torch.Tensor | None:
        if self.subspace is None:
            return None
        masks = []
        for j in range(self.cfg.k):
            labels = cluster_channels(self.subspace.matrix(j), self.sub_cfg.groups, self.sub_cfg.dim,
                                      self.sub_cfg.rho, self.sub_cfg.power, self.seed)
            masks.append(labels_to_masks(labels, min(self.sub_cfg.groups, self.subspace.matrix(j).shape[0])))
        return torch.stack(masks)

    def extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"max_step": torch.tensor(self.max_step, dtype=torch.float64)}
        if self.density is not None:  # C (network, projection steps and F) and F on its own
            extra["correction"] = correction_state(self.density.walk_correction())
            extra["density"] = density_state(self.density.cdf, self.cfg.delta)
        return extra


def fit(name: str, generator: GeneratorAdapter, config: DPLaSEConfig, context: FitContext) -> DirectionSet:
    """Train DP-LaSE directions on ``generator`` and return them sorted by score (descending)."""
    trainer = DPLaSETrainer(generator, config, context.seed)
    config = trainer.cfg  # the budget resolved (`dplase_budget`)
    config_dict = dataclasses.asdict(config)
    meta = {"method": name, "config": config_dict, "seed": context.seed, "z_dim": generator.z_dim,
            "generator_sha256": generator.checkpoint_sha256}
    state = LoopState(trainer.stateful)
    run_loop(total_steps=trainer.total_steps, step_fn=trainer.step, state=state,
             checkpoint_path=context.checkpoint_path, checkpoint_every=context.checkpoint_every,
             kind="dplase-checkpoint", meta=meta, desc=f"dplase k={config.k} {config.walk}",
             progress=context.progress)
    with torch.no_grad():
        gamma = trainer.dirs().detach()
    scores = trainer.scores(gamma)
    order = torch.argsort(scores, descending=True, stable=True)
    masks = trainer.channel_masks()
    context.history.extend(state.history)
    return DirectionSet(
        directions=gamma.cpu()[order],
        scores=scores[order],
        method=name,
        config=config_dict,
        walk=config.walk,
        layer=trainer.layer,
        seed=context.seed,
        generator_sha256=generator.checkpoint_sha256, space=generator.space,
        channel_masks=None if masks is None else masks[order],
        extra={**trainer.extra(), "convergence": convergence_record(state.history)},
    )


SPEC = MethodSpec(names=("dplase",), config_cls=DPLaSEConfig, fit=fit)
