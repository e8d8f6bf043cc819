"""Wall time of each direction-discovery baseline on the built-in 64 px shapes model (CPU).

Usage: python benchmarks/bench_methods.py [--generator results/models/shapes-dcgan64.pt] [--threads 2]
           [--k 10] [--ganspace-n 100000] [--voynov-steps 200] [--methods sefa,ganspace,...]
Uses the trained checkpoint when it exists, else a freshly built generator of the same architecture (the
timings do not depend on the weights). Voynov is timed for ``--voynov-steps`` steps of its default config and
the per-step time is extrapolated to the default step count. Prints one JSON line per method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from dplase.generators.base import GeneratorAdapter
from dplase.generators.dcgan import DCGANAdapter
from dplase.methods import FitContext, fit, get_method, make_config

#: the architecture of config/config.yaml's shapes-dcgan64 (GanConfig defaults)
SHAPES64 = {"z_dim": 16, "image_size": 64, "channels": 1, "width": 16}
CASES = {
    "sefa": ("sefa", {}),
    "random": ("random", {}),
    "coordinate": ("coordinate", {}),
    "ganspace": ("ganspace", {}),
    "ganspace-latent": ("ganspace", {"space": "latent"}),
    "voynov": ("voynov", {}),
}


def load_model(path: Path) -> tuple[GeneratorAdapter, str]:
    """The trained checkpoint if present, else an untrained generator of the same architecture."""
    if path.is_file():
        from dplase.generators.registry import load_generator

        return load_generator(path, device="cpu"), str(path)
    return DCGANAdapter.build(SHAPES64, seed=0), f"untrained DCGANAdapter.build({SHAPES64})"


def time_case(generator: GeneratorAdapter, method: str, overrides: dict, repeats: int) -> float:
    """Best wall time of ``repeats`` fits (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fit(method, generator, overrides, FitContext(seed=0, progress=False))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", type=Path, default=Path("results/models/shapes-dcgan64.pt"))
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ganspace-n", type=int, default=100_000)
    parser.add_argument("--ganspace-batch", type=int, default=make_config("ganspace").batch_size)
    parser.add_argument("--voynov-steps", type=int, default=200)
    parser.add_argument("--methods", default=",".join(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator, source = load_model(args.generator)
    for method, _ in CASES.values():
        get_method(method)  # import numpy/scipy/sklearn now: threadpool_limits only caps libraries loaded
    print(json.dumps({"generator": source, "threads": args.threads}))
    for case in args.methods.split(","):
        method, overrides = CASES[case]
        overrides = {"k": args.k, **overrides}
        if method == "ganspace":
            overrides["n_samples"] = args.ganspace_n
            overrides["batch_size"] = args.ganspace_batch
        if method == "voynov":
            overrides["steps"] = args.voynov_steps
        repeats = 5 if method in ("sefa", "random", "coordinate") else 1
        with threadpool_limits(args.threads):
            seconds = time_case(generator, method, overrides, repeats)
        row = {"method": case, "seconds": round(seconds, 4), "options": overrides}
        if method == "voynov":
            default_steps = make_config("voynov").steps
            row["per_step_s"] = round(seconds / args.voynov_steps, 4)
            row["extrapolated_default_s"] = round(seconds / args.voynov_steps * default_steps, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
