"""Validate the learned density (F, C) on known priors and print one JSON line per prior.

Usage: python scripts/validate_density.py [--dim 8] [--cdf-steps 3000] [--correction-steps 3000] [--seed 0]
Reports max |log p_hat - log p| on [-3, 3] (Gaussian) and the mean |Delta log p0| of the linear, norm-rescaled
and learned walks (plus the share of walked points outside the support) for each prior.
"""

from __future__ import annotations

import argparse
import json

import torch

from dplase.walks.validation import validate_density


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--priors", default="gaussian,uniform,mixture")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--cdf-steps", type=int, default=3000)
    parser.add_argument("--correction-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for prior in args.priors.split(","):
        result = validate_density(prior, dim=args.dim, seed=args.seed, cdf_steps=args.cdf_steps,
                                  correction_steps=args.correction_steps)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
