"""Throughput of the procedural sprite renderer on ONE CPU core (images/s). Target: >= 5,000 images/s at 64 px.

Run:  .venv/bin/python benchmarks/bench_shapes.py [--dataset shapes] [--image-size 64] [--batch 256] [--n 20000]

Each repeat renders ``--n`` random items through `dataset.get` in batches of ``--batch`` (index sampling and
the factors table included, as a training loop would see them). Prints the median and best of the repeats;
on a shared machine the best is the closer estimate of the renderer's own speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dplase.data import load_dataset

TARGET_IMAGES_PER_S = 5000


def measure(dataset_name: str, image_size: int, batch: int, n: int, repeats: int) -> list[float]:
    """Images per second of each repeat."""
    data = load_dataset(dataset_name, image_size=image_size)
    data.sample(batch, seed=0)  # warm-up (allocator, first-call overheads)
    rates = []
    for rep in range(repeats):
        gen = torch.Generator().manual_seed(rep)
        start = time.perf_counter()
        done = 0
        while done < n:
            images, _ = data.sample(min(batch, n - done), seed=gen)
            done += images.shape[0]
        rates.append(n / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes", choices=["shapes", "color_shapes"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n", type=int, default=20000, help="images per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the target is for 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates = measure(args.dataset, args.image_size, args.batch, args.n, args.repeats)
    median, best = statistics.median(rates), max(rates)
    verdict = "meets" if median >= TARGET_IMAGES_PER_S else "below"
    print(
        f"{args.dataset} {args.image_size}px, batch {args.batch}, {args.threads} thread(s): "
        f"median {median:,.0f} images/s, best {best:,.0f} images/s over {args.repeats} x {args.n} images "
        f"({verdict} the {TARGET_IMAGES_PER_S:,} images/s target)"
    )


if __name__ == "__main__":
    main()
