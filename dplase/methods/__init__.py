"""Direction-discovery methods behind one interface: ``fit(name, generator, config, context) -> DirectionSet``.

Each method module defines ``SPEC = MethodSpec(...)``: a config dataclass (subclass of `MethodConfig`, every
hyperparameter with its default) and a ``fit(generator, config, context) -> DirectionSet`` function, and has
one line in `METHODS`. The workflow, metrics and figures only ever see the DirectionSet, so no caller
special-cases a method.

A config field may declare the name configs and the CLI use for it, where the Python name must differ
(``lam: float = field(default=1.0, metadata={"option": "lambda"})``: ``lambda`` is a Python keyword);
`option_fields` resolves those spellings, the only place that knows about them.

Iterative methods (DP-LaSE, Voynov) resolve their budget (steps, learning rates) from a documented rule of
z_dim where the config leaves it at None, and store `convergence_record` of their loss history in
``DirectionSet.extra["convergence"]``; the evaluation writes it as ``convergence.<term>`` rows. GANSpace's
sample size follows a rule of z_dim the same way. Closed-form methods record nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dplase.directions import DirectionSet
from dplase.generators.base import GeneratorAdapter
from dplase.registry import Registry

#: method name -> the module's SPEC (imported on first use); ``fits_correction``: the DirectionSet carries a learned
#: density correction, so the method's runs may use the learned walk; ``needs_planted``: only for generators
#: with planted directions (family info ``planted``)
METHODS = Registry("method", {
    "dplase": ("dplase.methods.dplase:SPEC", {"fits_correction": True}),
    "sefa": "dplase.methods.sefa:SPEC",
    "ganspace": "dplase.methods.ganspace:SPEC",
    "voynov": "dplase.methods.voynov:SPEC",
    "random": "dplase.methods.simple:SPEC",
    "coordinate": "dplase.methods.simple:SPEC",
    "oracle": ("dplase.methods.oracle:SPEC", {"needs_planted": True}),
})


@dataclass
class MethodConfig:
    """Options every method shares. Subclasses add their own hyperparameters (all with defaults)."""

    k: int = 10
    layer: str | None = None  # None: the generator's default split point
    walk: str = "linear"  # the walk the directions are meant for (and trained with, where it matters)
    #: the latent space the method runs in (one of the generator's `spaces`: "z", or "w" for StyleGAN2)
    space: str = "z"


@dataclass
class FitContext:
    """How to run a fit: seed, device, where to checkpoint and log, whether to show progress."""

    seed: int = 0
    device: str = "cpu"
    checkpoint_path: Path | None = None  # trainers checkpoint here and resume from it
    checkpoint_every: int = 100
    progress: bool = True
    #: filled by trained methods: their loss history as (step, term, value), one entry per logged term and step
    #: (the caller decides where it goes: `dplase.results.write_losses` is the one writer of loss files)
    history: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name(s), config class and fit function."""

    names: tuple[str, ...]
    config_cls: type[MethodConfig]
    fit: Callable[[str, GeneratorAdapter, MethodConfig, FitContext], DirectionSet]


def make_direction_set(
    name: str, generator: GeneratorAdapter, config: MethodConfig, context: FitContext,
    directions: Any, scores: Any, **fields: Any,
) -> DirectionSet:
    """The DirectionSet of a fit, with the provenance every method records (config, walk, layer, seed,
    generator checksum); ``fields`` sets the rest (channel masks, extra tensors) or overrides the layer."""
    provenance = {
        "method": name, "config": dataclasses.asdict(config), "walk": config.walk,
        "layer": config.layer or generator.default_layer(), "seed": context.seed,
        "generator_sha256": generator.checkpoint_sha256, "space": generator.space,
    }
    return DirectionSet(directions=directions, scores=scores, **{**provenance, **fields})


#: the share of the run the convergence record looks at: its last 10% of steps, as two halves of 5%
CONVERGENCE_WINDOW = 0.10


def relative_change(values: Sequence[float], window: float = CONVERGENCE_WINDOW) -> float:
    """Relative change of a loss over the last ``window`` share of its steps.

    With n logged values (in step order) and h = max(1, round(n * window / 2)): the last h values (B, the
    last 5%) against the h before them (A, the 5% before): |mean(B) - mean(A)| / |mean(A)| (NaN when
    n < 2 or mean(A) = 0). A small value means the loss has stopped moving; it says nothing about noise.
    """
    n = len(values)
    if n < 2:
        return math.nan
    half = min(max(1, round(n * window / 2)), n // 2)
    before = math.fsum(values[n - 2 * half : n - half]) / half
    last = math.fsum(values[n - half :]) / half
    return abs(last - before) / abs(before) if before != 0 else math.nan


#: the iterative methods' budget rule: steps per latent dimension
STEPS_PER_DIM = 50


def latent_budget(z_dim: int, move: float, steps_per_dim: int = STEPS_PER_DIM) -> tuple[int, float]:
    """The shared budget rule of the iterative methods: ``steps = steps_per_dim * z_dim`` and ``lr = move /
    steps``. Adam moves a parameter by at most ~lr per step, so ``move`` bounds how far the directions'
    parameters can travel within the budget, whatever the latent size."""
    if z_dim < 1:
        raise ValueError(f"need z_dim >= 1, got {z_dim}")
    steps = steps_per_dim * int(z_dim)
    return steps, move / steps


def convergence_record(history: Sequence[tuple[int, str, float]], total: Sequence[str] | None = None,
                       skip: Sequence[str] = ("batch_accuracy",)) -> dict[str, Any]:
    """Every iterative method's convergence record, stored as ``DirectionSet.extra["convergence"]``:
    term -> `relative_change` of that term's values over the steps where it was logged (float64 scalar
    tensors). ``total``: these terms summed per step (steps that log all of them) give the term "loss"
    (a trainer that logs "loss" itself needs none); ``skip``: logged terms that are no losses."""
    series: dict[str, dict[int, float]] = {}
    for step, term, value in history:
        if term not in skip:
            series.setdefault(term, {})[int(step)] = float(value)
    if total:
        steps = sorted(set.intersection(*(set(series.get(t, {})) for t in total)))
        if steps:
            series["loss"] = {s: math.fsum(series[t][s] for t in total) for s in steps}
    return {term: torch.tensor(relative_change([v for _, v in sorted(values.items())]), dtype=torch.float64)
            for term, values in sorted(series.items())}


def get_method(name: str) -> MethodSpec:
    """The spec of a method by name (clear error for an unknown one)."""
    return METHODS.load(name)


def option_fields(config_cls: type) -> dict[str, str]:
    """Option name (as configs and the CLI spell it) -> config field, for every field of ``config_cls``."""
    return {f.metadata.get("option", f.name): f.name for f in dataclasses.fields(config_cls)}


def config_kwargs(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as spelled in configs (``lambda``) -> keyword arguments of method ``name``'s config (``lam``).

    Field names are accepted as well; an option the method lacks is kept as it is (`make_config` rejects it).
    """
    fields = option_fields(get_method(name).config_cls)
    return {fields.get(key, key): value for key, value in options.items()}


def make_config(name: str, **overrides: Any) -> MethodConfig:
    """The method's config with ``overrides`` (field names or config spellings) applied; unknown keys are a
    clear error naming them."""
    cls = get_method(name).config_cls
    overrides = config_kwargs(name, overrides)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"method '{name}' has no option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**overrides)


def fit(
    name: str, generator: GeneratorAdapter, config: MethodConfig | dict[str, Any] | None = None,
    context: FitContext | None = None,
) -> DirectionSet:
    """Fit method ``name`` on ``generator`` and return its DirectionSet."""
    spec = get_method(name)
    if config is None or isinstance(config, dict):
        config = make_config(name, **(config or {}))
    context = context or FitContext()
    generator = generator.in_space(config.space)  # every method runs in the chosen space, none knows which
    if config.k < 1 or config.k > generator.z_dim:
        raise ValueError(f"k must be between 1 and z_dim={generator.z_dim}, got {config.k}")
    if config.layer is not None:
        generator.check_layer(config.layer)
    return spec.fit(name, generator, config, context)
