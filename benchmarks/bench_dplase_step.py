"""Benchmark one DP-LaSE training step against the work it cannot avoid (goal: ratio <= 1.3).

The floor on the same batch: G1 forward for z0 (no grad) and for the walked latents, and the backward pass
through G1 for the walked latents. The step adds sampling, the walk, the loss terms, the orthogonality term
and the Adam update. Both are timed in one process, interleaved, median of ``--repeats``.

Usage: python benchmarks/bench_dplase_step.py [--generator results/models/shapes-dcgan64.pt] [--batch 16 64]
           [--layers block0 block1 block2 block3] [--k 10] [--walk norm] [--estimator full] [--threads 1]
Without a generator file (or if it is missing) an untrained 64 px DCGAN with the train-gan defaults
(z_dim 16, width 16) is used: timing does not depend on the weights. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dplase.generators.dcgan import DCGANAdapter
from dplase.methods.dplase import DPLaSEConfig, DPLaSETrainer
from dplase.training.loop import step_generator


def load(path: str | None):
    if path and Path(path).is_file():
        from dplase.generators.registry import load_generator

        return load_generator(path), path
    arch = {"z_dim": 16, "image_size": 64, "channels": 1, "width": 16}
    return DCGANAdapter.build(arch, seed=0), "untrained DCGAN 64px z16 w16"


def floor_fn(trainer: DPLaSETrainer, gen: torch.Generator):
    """The unavoidable work of one step of the full estimator on the same batch shapes."""
    g, cfg, layer = trainer.g, trainer.cfg, trainer.layer
    n, k = cfg.batch_size, cfg.k
    z0 = g.prior.sample(n, gen)
    walked = g.prior.sample(n * k if cfg.estimator == "full" else 2 * n, gen).requires_grad_(True)
    with torch.no_grad():
        g.features(z0, layer)
    f = g.features(walked, layer)
    f.backward(torch.ones_like(f))


def time_pair(trainer: DPLaSETrainer, repeats: int, warmup: int = 3) -> tuple[float, float]:
    step_times, floor_times = [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        trainer.step(i)
        t1 = time.perf_counter()
        floor_fn(trainer, step_generator(0, i))
        t2 = time.perf_counter()
        if i >= warmup:
            step_times.append(t1 - t0)
            floor_times.append(t2 - t1)
    return statistics.median(step_times), statistics.median(floor_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", default="results/models/shapes-dcgan64.pt")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--layers", nargs="+", default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--walk", default="norm")
    parser.add_argument("--estimator", nargs="+", default=["full", "stochastic"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator, source = load(args.generator)
    for estimator in args.estimator:
        for layer in args.layers or generator.layers:
            for batch in args.batch:
                config = DPLaSEConfig(k=args.k, layer=layer, walk=args.walk, estimator=estimator,
                                      batch_size=batch, steps=10**6)
                trainer = DPLaSETrainer(generator, config, seed=0)
                step, floor = time_pair(trainer, args.repeats)
                print(json.dumps({"generator": source, "layer": layer, "batch": batch, "k": args.k,
                                  "walk": args.walk, "estimator": estimator, "threads": args.threads,
                                  "step_ms": 1e3 * step, "floor_ms": 1e3 * floor, "ratio": step / floor}), flush=True)


if __name__ == "__main__":
    main()
