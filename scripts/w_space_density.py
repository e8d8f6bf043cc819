"""How well each walk preserves density in a StyleGAN2's w space, where the density is not known.

    python scripts/w_space_density.py --generator results/generators/shapes32/stylegan2/seed0.pt [--dirs 8]

The w space (`dplase.generators.spaces.WhitenedPrior`) samples exactly but its density is approximated by a
Gaussian (in whitened coordinates u: N(0, I)). The learned walk's F is fitted on exact samples of u, as in a
DP-LaSE run. Each walk (linear, norm, learned) is then judged over held-out starts, random orthonormal
directions and the evaluation's step grid by two densities:

- ``gauss``: the Gaussian approximation the density metrics use (the norm rescale preserves it exactly);
- ``marg``: an independent estimate of the product of u's true marginals, per-dimension histograms of
  ``--n-hist`` exact samples (200 bins on [-6, 6], add-one smoothed), which neither walk was fitted on.

Also prints how far u's marginals are from N(0, 1) (mean |log hist - log N|, excess kurtosis). One JSON object.
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from dplase.generators.registry import load_generator
from dplase.walks import make_walk
from dplase.walks.learned import DensityConfig
from dplase.walks.steps import max_step
from dplase.walks.validation import evaluation_steps, fit_density_model

BINS, LO, HI = 200, -6.0, 6.0


def marginal_log_density(samples: torch.Tensor) -> torch.Tensor:
    """Per-dimension log-density tables (dim x BINS) from histograms of ``samples`` (add-one smoothing)."""
    width = (HI - LO) / BINS
    idx = ((samples.clamp(LO, HI - 1e-6) - LO) / width).long()
    counts = torch.stack([torch.bincount(idx[:, d], minlength=BINS) for d in range(samples.shape[1])]).double()
    return torch.log((counts + 1) / ((counts + 1).sum(1, keepdim=True) * width))


def judge(tables: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log of the marginal-product estimate at rows of ``z`` (outside [LO, HI]: the edge bin's value)."""
    idx = ((z.double().clamp(LO, HI - 1e-6) - LO) / ((HI - LO) / BINS)).long()
    return torch.gather(tables, 1, idx.T).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--dirs", type=int, default=8)
    parser.add_argument("--n-eval", type=int, default=512)
    parser.add_argument("--n-hist", type=int, default=200_000)
    parser.add_argument("--cdf-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    adapter = load_generator(args.generator).in_space("w")
    prior, dim = adapter.prior, adapter.z_dim
    t = max_step(prior)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(args.seed + 11)))
    directions = q.T[: args.dirs].contiguous()
    model = fit_density_model(prior, DensityConfig(), directions, t, args.cdf_steps, 0, args.seed).eval()
    tables = marginal_log_density(prior.sample(args.n_hist, args.seed + 7))
    z0 = prior.sample(args.n_eval, args.seed + 1_000_003)
    grid = evaluation_steps(prior)
    half = (HI - LO) / BINS / 2
    gauss_1d = -0.5 * torch.linspace(LO + half, HI - half, BINS).double().pow(2) - 0.5 * math.log(2 * math.pi)
    out = {"generator": args.generator, "dim": dim, "max_step": t,
           "marginal_vs_gaussian_mean_abs_log": float((tables[:, 50:150] - gauss_1d[50:150]).abs().mean()),
           "excess_kurtosis_mean": float(((z0 - z0.mean(0)) / z0.std(0)).pow(4).mean(0).sub(3).mean())}
    with torch.no_grad():
        for name in ("linear", "norm", "learned"):
            walk = make_walk(name, model.walk_correction() if name == "learned" else None)
            g, m = [], []
            for gamma in directions:
                for eps in grid.tolist():
                    z = walk(z0, gamma, torch.full((z0.shape[0],), float(eps)))
                    g.append((prior.log_prob(z) - prior.log_prob(z0)).abs())
                    m.append((judge(tables, z) - judge(tables, z0)).abs())
            out[f"drift_gauss_{name}"] = float(torch.cat(g).mean())
            out[f"drift_marg_{name}"] = float(torch.cat(m).mean())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
