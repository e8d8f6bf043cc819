"""Rendering throughput of the planted generator on ONE CPU core (images/s, no autograd), beside the shapes
dataset's renderer measured in the same run. Goal: >= 5,000 images/s at 64 px.

Run:  .venv/bin/python benchmarks/bench_planted.py [--image-size 64] [--channels 1] [--batch 500] [--n 10000]

Each repeat draws ``--n`` latents from the prior (seeded) and renders them with `GeneratorAdapter.generate` in
batches of ``--batch``. Prints the median of the repeats for both renderers and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dplase.data import load_dataset
from dplase.generators.planted import build_planted

GOAL_IMAGES_PER_S = 5000


def planted_rates(image_size: int, channels: int, batch: int, n: int, repeats: int) -> list[float]:
    generator = build_planted(image_size=image_size, channels=channels)
    generator.generate(generator.sample_latents(batch, 0), batch)  # warm-up
    rates = []
    for rep in range(repeats):
        z = generator.sample_latents(n, rep + 1)
        start = time.perf_counter()
        generator.generate(z, batch)
        rates.append(n / (time.perf_counter() - start))
    return rates


def shapes_rates(image_size: int, batch: int, n: int, repeats: int) -> list[float]:
    data = load_dataset("shapes", image_size=image_size)
    data.sample(batch, seed=0)  # warm-up
    rates = []
    for rep in range(repeats):
        start = time.perf_counter()
        for first in range(0, n, batch):
            data.sample(min(batch, n - first), seed=rep * n + first)
        rates.append(n / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=64, choices=[32, 64])
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--n", type=int, default=10000, help="images per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    planted = statistics.median(planted_rates(args.image_size, args.channels, args.batch, args.n, args.repeats))
    shapes = statistics.median(shapes_rates(args.image_size, args.batch, args.n, args.repeats))
    print(f"planted {args.image_size}px x{args.channels}: {planted:,.0f} images/s on 1 core "
          f"({'meets' if planted >= GOAL_IMAGES_PER_S else 'below'} the {GOAL_IMAGES_PER_S:,} goal); "
          f"shapes dataset {shapes:,.0f} images/s; ratio planted/shapes {planted / shapes:.2f}")


if __name__ == "__main__":
    main()
