"""Datasets with known generating factors, behind one registry: `load_dataset(name, image_size, seed, **options)`.

- ``shapes``: dSprites-style grayscale sprites (shape, scale, orientation, pos_x, pos_y), rendered on demand.
- ``color_shapes``: the same sprites in RGB, plus object_hue and background_hue.
- ``digits``: scikit-learn's bundled 8x8 digits, upscaled; factor: class.
- ``folder``: external images (folder of PNG/JPEG or .npz) plus a CSV/Parquet factors table
  (options ``path=``, ``factors=``).
- ``planted``: images of a planted generator (`dplase.generators.planted`) at seeded prior latents, with the
  exact factors (options ``z_dim=``, ``level=``, ``gains=``, ``prior=``, ``channels=``, ``generator_seed=``,
  ``size=``).
"""

from __future__ import annotations

import inspect
from typing import Any

from dplase.data.base import FactorSpec, ImageDataset, make_generator
from dplase.registry import Registry

#: dataset name -> the class whose constructor takes (image_size, seed, **options); imported on use
DATASETS = Registry("dataset", {
    "shapes": "dplase.data.shapes:ShapesDataset",
    "color_shapes": "dplase.data.shapes:ColorShapesDataset",
    "digits": "dplase.data.digits:DigitsDataset",
    "folder": "dplase.data.folder:FolderDataset",
    "planted": "dplase.data.planted:PlantedDataset",
})


def load_dataset(name: str, image_size: int = 64, seed: int = 0, **options: Any) -> ImageDataset:
    """Build the dataset called ``name`` at ``image_size`` pixels.

    ``seed`` is the default seed of `ImageDataset.sample`; rendering and loading are deterministic.
    ``options`` go to the dataset (``folder`` needs ``path=`` and takes ``factors=``). Unknown names,
    unsupported image sizes and unknown options raise a ValueError that says what is accepted.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    cls = DATASETS[name].load()
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p not in ("image_size", "seed", "name")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "no options"
        raise ValueError(f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; it takes: {takes}")
    missing = [p for p in accepted if params[p].default is inspect.Parameter.empty and p not in options]
    if missing:
        raise ValueError(f"dataset {name!r} needs option(s): {', '.join(missing)}")
    return cls(image_size=image_size, seed=seed, **options)


def dataset_from_config(config: dict[str, Any]) -> ImageDataset:
    """Rebuild a dataset from `ImageDataset.to_config()` (as stored in artifact metadata)."""
    config = dict(config)
    return load_dataset(config.pop("name"), **config)


__all__ = [
    "DATASETS",
    "FactorSpec",
    "ImageDataset",
    "dataset_from_config",
    "load_dataset",
    "make_generator",
]
