"""scikit-learn's bundled 8x8 handwritten digits (real data, shipped with sklearn: no download), upscaled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dplase.data.base import FactorSpec, ImageDataset, check_image_size

DIGITS_IMAGE_SIZES = (32, 64)
#: sklearn's digit pixels are counts of set bits in 4x4 blocks of the original 32x32 bitmaps: 0..16
DIGITS_MAX_VALUE = 16.0


class DigitsDataset(ImageDataset):
    """The 1797 digits of `sklearn.datasets.load_digits`, bilinearly upscaled to ``image_size``, 1 channel.

    Ink is white (+1) on black (-1). One factor: the class (categorical, 10). All images are built once at
    construction (1797 x 32 x 32 floats, ~7 MB).
    """

    def __init__(self, image_size: int = 32, seed: int = 0, name: str = "digits") -> None:
        from sklearn.datasets import load_digits

        self.name = name
        self.image_size = check_image_size(name, image_size, DIGITS_IMAGE_SIZES)
        self.seed = int(seed)
        self.channels = 1
        self.factor_specs = [
            FactorSpec("class", "categorical", 0, 9, 10, tuple(str(d) for d in range(10))),
        ]
        bunch = load_digits()
        small = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1) / DIGITS_MAX_VALUE
        big = F.interpolate(small, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        self._images = big.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0).contiguous()
        self._labels = np.asarray(bunch.target, dtype=np.int64)

    def _length(self) -> int:
        return int(self._images.shape[0])

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        images = self._images.index_select(0, indices)
        return images, pd.DataFrame({"class": self._labels[indices.numpy()]})
