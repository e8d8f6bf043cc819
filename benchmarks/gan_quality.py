"""Quality bar of a trained built-in GAN (issue 2): how recognisable its samples are to a factor predictor
trained on real data, and its domain FID against the untrained generator's.

    python benchmarks/gan_quality.py --generator results/models/shapes-dcgan64.pt \
        --predictor results/predictors/shapes.pt [--n 1000]

Prints the shape head's mean max-probability and class histogram for fakes and reals, and the domain FID
(predictor penultimate features, via clean-fid) of the trained and of the untrained generator (same
architecture and seed), with their ratio (the bar: at most 0.2).
"""

from __future__ import annotations

import argparse
import json

import torch

from dplase.data import dataset_from_config, load_dataset
from dplase.generators.registry import FAMILIES, generator_meta, load_generator
from dplase.metrics.predictor import FactorPredictor, sample_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--predictor", required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()

    meta = generator_meta(args.generator)
    trained = load_generator(args.generator)
    family = FAMILIES[meta.get("family", "dcgan")].load()  # the same family's build, untrained
    untrained = family.build(meta["arch"], meta["prior"], seed=int(meta.get("seed", 0)))
    dataset_config = meta.get("dataset_config")
    data = (dataset_from_config(dataset_config) if isinstance(dataset_config, dict)
            else load_dataset(meta.get("dataset", "shapes"), image_size=trained.image_size))
    predictor = FactorPredictor.load(args.predictor)
    z = trained.sample_latents(args.n, args.seed)
    real, _ = data.sample(args.n, args.seed + 1)
    with torch.no_grad():
        good = sample_quality(predictor, trained.generate(z), real)
        bad = sample_quality(predictor, untrained.generate(z), real)
    report = {**good, "untrained_domain_fid": bad["domain_fid"],
              "fid_ratio": good["domain_fid"] / bad["domain_fid"]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
