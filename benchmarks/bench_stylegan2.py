"""StyleGAN2 throughput: forward and forward+backward images per second of a configuration, and one short
DP-LaSE run on it (issue 17's GPU check; on the CPU it runs at a small configuration).

    python benchmarks/bench_stylegan2.py --config config-f-1024 --device cuda   # the published 1024 px config-f
    python benchmarks/bench_stylegan2.py --config small-32 --threads 2          # what a CPU can run

Weights are random (throughput does not depend on them); the DP-LaSE run is ``--dplase-steps`` steps of the
full estimator, K ``--k``, at the default split layer, in space ``--space``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dplase.generators.stylegan2 import StyleGAN2Adapter

CONFIGS = {
    # rosinality / NVlabs config-f: 512-d z and w, 8 mapping layers, channel multiplier 2
    "config-f-1024": {"z_dim": 512, "w_dim": 512, "image_size": 1024, "channels": 3, "n_mlp": 8,
                      "channel_base": 32768, "max_channels": 512},
    "config-f-256": {"z_dim": 512, "w_dim": 512, "image_size": 256, "channels": 3, "n_mlp": 8,
                     "channel_base": 32768, "max_channels": 512},
    # the CPU recipe of config/families.yaml
    "small-32": {"z_dim": 16, "w_dim": 32, "image_size": 32, "channels": 1, "n_mlp": 4, "channel_base": 1024,
                 "max_channels": 32},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(adapter: StyleGAN2Adapter, batch: int, repeats: int, backward: bool) -> float:
    """Images per second of forward (and, with ``backward``, forward+backward to the latents)."""
    device = adapter.device
    z = torch.randn(batch, adapter.z_dim, device=device)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        if backward:
            zz = z.clone().requires_grad_(True)
            adapter(zz).square().mean().backward()
        else:
            with torch.no_grad():
                adapter(z)
        _sync(device)
        if i:  # the first call warms up (allocations, kernels)
            times.append(time.perf_counter() - start)
    return batch / sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), default="small-32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dplase-steps", type=int, default=20)
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--space", choices=["z", "w"], default="z")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from dplase.methods import FitContext, fit

    adapter = StyleGAN2Adapter.build(CONFIGS[args.config], seed=0, device=args.device)
    report = {"config": args.config, "device": str(adapter.device), "batch": args.batch,
              "params": sum(p.numel() for p in adapter.net.parameters()),
              "forward_img_per_s": throughput(adapter, args.batch, args.repeats, backward=False),
              "forward_backward_img_per_s": throughput(adapter, args.batch, args.repeats, backward=True)}
    start = time.perf_counter()
    fit("dplase", adapter, {"k": args.k, "steps": args.dplase_steps, "walk": "norm", "space": args.space},
        FitContext(seed=0, device=args.device, progress=False))
    _sync(adapter.device)
    report["dplase_s_per_step"] = (time.perf_counter() - start) / max(1, args.dplase_steps)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
