"""Benchmark one DP-LaSE training step against the work it cannot avoid (goal: step / G1 floor <= 1.3).

Two floors, each on the step's own batch shapes (N = ``--batch``, K = ``--k``; M walked latents: N K for the
full estimator, 2 N for the stochastic one):

- ``floor_ms`` (the G1 floor, every walk): G1 forward for the N start latents z0 without grad, plus G1 forward
  and backward for the M walked latents. ``ratio`` = step / this floor; the goal is stated against it.
- ``density_floor_ms`` (learned walk only): the G1 floor plus the density model's unavoidable work, one
  forward + backward of F's log-slope (`MonotoneCDF.log_slope`) on ``density_batch`` prior samples (F learns
  l_mon + l_lik on that batch every step) and, when the step trains the correction network C (l_den +
  proximity; not with the default projection from the linear point, see `trains_correction`), one forward +
  backward of C (`CorrectionNet`) on that batch. ``ratio_density`` = step / this floor. It leaves out the walk's
  own extra work (C and the Newton level projection on F for the M walked rows), which the step must do too.

The step adds to the floor: sampling, the walk, the loss terms, the orthogonality term, the backward through
them and the Adam updates. Step and floors are timed in one process, interleaved (so machine load hits both
alike), median of ``--repeats`` after ``--warmup``; ``ratio_min`` / ``ratio_density_min`` are the ratios of the
minima (the least disturbed runs: steadier on a shared machine).

Settings (all by default, one run): estimator ``full`` with ``cross`` normalized and raw, ``stochastic``;
walks ``norm`` and ``learned``; every layer; batch 16 and 64. Prints one JSON line per setting and, at the
end, a markdown table of the ratios.

Usage: python benchmarks/bench_dplase_step.py [--generator results/models/shapes-dcgan64.pt] [--batch 16 64]
           [--layers block0 ...] [--k 10] [--walks norm learned] [--estimators full:normalized full:raw
           stochastic] [--threads 1] [--repeats 15] [--hidden 0] [--learned newton_steps=3 ...]
Without a generator file (or if it is missing) an untrained 64 px DCGAN (z_dim 16, width 16, ``--hidden``
units of the optional fully connected layer, default 0: block0's G1 is then one Linear layer) is used: timing
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dplase.generators.base import GeneratorAdapter
from dplase.generators.dcgan import DCGANAdapter
from dplase.methods.dplase import DPLaSEConfig, DPLaSETrainer
from dplase.training.loop import step_generator


def load(path: str | None, hidden: int) -> tuple[GeneratorAdapter, str]:
    """The trained generator at ``path`` if it exists, else the untrained 64 px DCGAN."""
    if path and Path(path).is_file():
        from dplase.generators.registry import load_generator

        return load_generator(path), path
    arch = {"z_dim": 16, "image_size": 64, "channels": 1, "width": 16, "hidden": hidden}
    return DCGANAdapter.build(arch, seed=0), f"untrained DCGAN 64px z16 w16 hidden{hidden}"


def g1_floor(trainer: DPLaSETrainer) -> Callable[[torch.Generator], None]:
    """G1 forward for z0 (no grad) + G1 forward and backward for the walked latents, same batch shapes."""
    g, cfg, layer = trainer.g, trainer.cfg, trainer.layer
    n, k = cfg.batch_size, cfg.k
    m = n * k if cfg.estimator == "full" else 2 * n

    def run(gen: torch.Generator) -> None:
        z0 = g.prior.sample(n, gen)
        walked = g.prior.sample(m, gen).requires_grad_(True)
        with torch.no_grad():
            g.features(z0, layer)
        f = g.features(walked, layer)
        f.backward(torch.ones_like(f))

    return run


def trains_correction(trainer: DPLaSETrainer) -> bool:
    """Whether the step trains C's network on the density batch (l_den + proximity): not when the walk's
    projection starts from the linear point (the network is then not in the walk) without density_to_directions."""
    density = trainer.density
    assert density is not None
    return bool(getattr(density, "trains_network", True) or trainer.cfg.density_to_directions)


def density_floor(trainer: DPLaSETrainer) -> Callable[[torch.Generator], None]:
    """The G1 floor + one forward/backward of F's log-slope and, when the step trains C (`trains_correction`),
    one of C's network, on the density batch (copies of F and C: the trainer's gradients are left alone)."""
    assert trainer.density is not None
    g1 = g1_floor(trainer)
    cdf, net = copy.deepcopy(trainer.density.cdf), copy.deepcopy(trainer.density.correction)
    prior, b, delta, k = trainer.g.prior, trainer.cfg.density_batch, trainer.cfg.delta, trainer.cfg.k
    gamma = trainer.dirs().detach()
    with_net = trains_correction(trainer)

    def run(gen: torch.Generator) -> None:
        g1(gen)
        z = prior.sample(b, gen)
        cdf.log_slope(z, delta).sum().backward()
        if with_net:
            eps = trainer.step_range.sample(b, gen)
            idx = torch.randint(0, k, (b,), generator=gen)
            net(z, eps, gamma[idx]).pow(2).sum().backward()

    return run


def time_setting(trainer: DPLaSETrainer, repeats: int, warmup: int) -> dict[str, float]:
    """Median step and floor times (s), interleaved step by step, and each one's minimum (``<name>_min``)."""
    floors: dict[str, Callable[[torch.Generator], None]] = {"floor": g1_floor(trainer)}
    if trainer.density is not None:
        floors["density_floor"] = density_floor(trainer)
    times: dict[str, list[float]] = {"step": [], **{name: [] for name in floors}}
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        trainer.step(i)
        elapsed = {"step": time.perf_counter() - t0}
        for name, fn in floors.items():
            t0 = time.perf_counter()
            fn(step_generator(0, i))
            elapsed[name] = time.perf_counter() - t0
        if i >= warmup:
            for name, value in elapsed.items():
                times[name].append(value)
    return {**{name: statistics.median(values) for name, values in times.items()},
            **{f"{name}_min": min(values) for name, values in times.items()}}


def markdown(rows: list[dict[str, Any]], suffix: str = "") -> str:
    """One table row per (estimator, cross, walk), one column per (layer, batch): the ratio to the G1 floor,
    and for the learned walk the ratio to the density floor in parentheses (``suffix`` "_min": the ratios of
    the minima)."""
    cols = sorted({(r["layer"], r["batch"]) for r in rows}, key=lambda c: (c[0], c[1]))
    keys = list(dict.fromkeys((r["estimator"], r["cross"], r["walk"]) for r in rows))
    head = "| estimator | cross | walk | " + " | ".join(f"{lay} b{b}" for lay, b in cols) + " |"
    lines = [head, "| --- | --- | --- | " + " | ".join("---:" for _ in cols) + " |"]
    by_key = {(r["estimator"], r["cross"], r["walk"], r["layer"], r["batch"]): r for r in rows}
    for key in keys:
        cells = []
        for col in cols:
            r = by_key.get((*key, *col))
            extra = f" ({r['ratio_density' + suffix]:.2f})" if r and "ratio_density" in r else ""
            cells.append(f"{r['ratio' + suffix]:.2f}{extra}" if r else "")
        lines.append(f"| {key[0]} | {key[1] if key[0] == 'full' else '-'} | {key[2]} | " + " | ".join(cells) + " |")
    floor_cells = []
    for col in cols:
        hit = [r for r in rows if (r["layer"], r["batch"]) == col and r["estimator"] == "full"]
        floor_cells.append(f"{hit[0]['floor_ms']:.2f}" if hit else "")
    lines.append("| G1 floor (ms), full | | | " + " | ".join(floor_cells) + " |")
    return "\n".join(lines)


def _value(text: str) -> Any:
    """A command-line value as JSON (numbers, true/false) or else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="results/models/shapes-dcgan64.pt")
    parser.add_argument("--hidden", type=int, default=0, help="hidden layer of the untrained DCGAN (0: none)")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--layers", nargs="+", default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--walks", nargs="+", default=["norm", "learned"])
    parser.add_argument("--estimators", nargs="+", default=["full:normalized", "full:raw", "stochastic"],
                        help="estimator[:cross] (cross of the full estimator: normalized or raw)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--learned", nargs="*", default=[], metavar="KEY=VALUE",
                        help="DPLaSEConfig options for the learned walk, e.g. newton_steps=3 projection_start=network")
    args = parser.parse_args()
    learned = {key: _value(value) for key, _, value in (item.partition("=") for item in args.learned)}
    torch.set_num_threads(args.threads)
    generator, source = load(args.generator, args.hidden)
    rows = []
    for spec in args.estimators:
        estimator, _, cross = spec.partition(":")
        for walk in args.walks:
            for layer in args.layers or generator.layers:
                for batch in args.batch:
                    config = DPLaSEConfig(k=args.k, layer=layer, walk=walk, estimator=estimator,
                                          cross=cross or "normalized", batch_size=batch, steps=10**6,
                                          **(learned if walk == "learned" else {}))
                    trainer = DPLaSETrainer(generator, config, seed=0)
                    t = time_setting(trainer, args.repeats, args.warmup)
                    row: dict[str, Any] = {
                        "generator": source, "layer": layer, "batch": batch, "k": args.k, "walk": walk,
                        "estimator": estimator, "cross": config.cross, "threads": args.threads,
                        "step_ms": 1e3 * t["step"], "floor_ms": 1e3 * t["floor"], "ratio": t["step"] / t["floor"],
                        "ratio_min": t["step_min"] / t["floor_min"]}
                    if "density_floor" in t:
                        row.update(learned=learned, trains_correction=trains_correction(trainer),
                                   newton_steps=config.newton_steps,
                                   projection_start=getattr(config, "projection_start", "network"),
                                   density_floor_ms=1e3 * t["density_floor"],
                                   ratio_density=t["step"] / t["density_floor"],
                                   ratio_density_min=t["step_min"] / t["density_floor_min"])
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\nstep / floor, medians:\n")
    print(markdown(rows))
    print("\nstep / floor, minima (less sensitive to other load):\n")
    print(markdown(rows, "_min"))


if __name__ == "__main__":
    main()
