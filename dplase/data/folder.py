"""External datasets: a folder of PNG/JPEG images or an .npz array, plus an optional CSV/Parquet factors table.

Factors table
-------------
- Keyed by file name when it has a ``file`` column (its rows define the dataset, in table order; images in
  the folder without a row are left out), else by row order (row i <-> the i-th image: file names sorted, or
  the i-th entry of the .npz array).
- A column's kind is declared by its name, ``NAME:categorical`` / ``NAME:cat`` or ``NAME:continuous`` /
  ``NAME:cont`` (the factor is called NAME), or else follows its dtype: integers, booleans and strings are
  categorical, floats are continuous. Categorical values become codes 0..n-1 in sorted order (labels keep
  the original values); continuous ones keep their floats, with range [min, max].
- ``NAME:periodic`` declares a cyclic continuous factor (an angle) with period 2π (radians);
  ``NAME:periodic=P`` sets the period to the positive number P (e.g. ``angle:periodic=360`` for degrees).
  Predictors regress it through (cos, sin) of 2π·value/P, and attribute change measures it on the circle.
  A malformed or non-positive period raises a ValueError naming the column.
- Any mismatch (missing file, unreadable image, row count, unknown column type, missing value, mixed image
  sizes or channel counts) raises a ValueError naming the file, row or column.

Images are square, all of one size and channel count (1 = grayscale, 3 = RGB; PNG alpha is dropped), and are
resized (bilinear, anti-aliased) to ``image_size``. An .npz holds key ``images``: (N, H, W), (N, H, W, C) or
(N, C, H, W), uint8 in [0, 255] or float in [0, 1] (or in [-1, 1] when it has negative values).
"""

from __future__ import annotations

import math
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dplase.data.base import FactorSpec, ImageDataset, check_image_size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FILE_COLUMN = "file"
KIND_SUFFIXES = {
    "categorical": "categorical",
    "cat": "categorical",
    "continuous": "continuous",
    "cont": "continuous",
}
#: the kind suffix of a cyclic continuous factor: ``NAME:periodic`` (period 2π) or ``NAME:periodic=P``
PERIODIC_SUFFIX = "periodic"
#: folder images may be resized to any size in this range (the built-in GANs use 32 or 64)
FOLDER_MIN_SIZE, FOLDER_MAX_SIZE = 8, 1024
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_RESIZE_CHUNK = 256


def read_factor_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet factors table, with a ValueError naming the file when that fails."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"factors table {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types; all mean "unreadable table"
        raise ValueError(f"cannot read factors table {path}: {err}") from err
    raise ValueError(f"factors table {path}: unsupported format {suffix!r} (use .csv or .parquet)")


def _declared_kind(column: str) -> tuple[str, str | None, float | None]:
    """Split 'NAME:kind' into (NAME, kind, period); columns without a suffix give (column, None, None).

    'NAME:periodic' gives (NAME, 'continuous', 2π), 'NAME:periodic=P' (NAME, 'continuous', P) for P > 0."""
    if ":" in column:
        base, suffix = column.rsplit(":", 1)
        if suffix.lower() in KIND_SUFFIXES:
            return base, KIND_SUFFIXES[suffix.lower()], None
        key, eq, value = suffix.partition("=")
        if key.strip().lower() == PERIODIC_SUFFIX:
            if not eq:
                return base, "continuous", 2 * math.pi
            try:
                period = float(value)
            except ValueError:
                period = math.nan
            if not (math.isfinite(period) and period > 0):
                raise ValueError(
                    f"factors column {column!r}: period {value!r} is not a positive number "
                    f"(use '{base}:periodic' for period 2π or '{base}:periodic=P' with P > 0, e.g. =360)"
                )
            return base, "continuous", period
        raise ValueError(
            f"factors column {column!r}: unknown kind suffix {suffix!r} "
            f"(use one of {', '.join(':' + s for s in KIND_SUFFIXES)}, :periodic or :periodic=P)"
        )
    return column, None, None


def _row_name(table: pd.DataFrame, row: int) -> str:
    if FILE_COLUMN in table.columns:
        return f"row {row} (file {table[FILE_COLUMN].iloc[row]!r})"
    return f"row {row}"


def _kind_from_dtype(column: str, series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return "categorical"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        values = series.dropna()
        if isinstance(dtype, pd.CategoricalDtype) or all(isinstance(v, str) for v in values):
            return "categorical"
    elif pd.api.types.is_float_dtype(dtype):
        return "continuous"
    raise ValueError(
        f"factors column {column!r} has unsupported type {dtype} "
        f"(use integers or strings for categorical factors, floats for continuous ones, "
        f"or declare the kind as '{column}:categorical' / '{column}:continuous')"
    )


def parse_factor_table(table: pd.DataFrame) -> tuple[list[FactorSpec], pd.DataFrame]:
    """Factor specs and the coded factors frame (codes for categorical columns, floats for continuous ones)
    from a raw table; the ``file`` column, if any, is not a factor."""
    specs: list[FactorSpec] = []
    columns: dict[str, np.ndarray] = {}
    for column in table.columns:
        if column == FILE_COLUMN:
            continue
        if not isinstance(column, str):
            raise ValueError(f"factors column names must be strings, got {column!r}")
        name, kind, period = _declared_kind(column)
        if name in columns:
            raise ValueError(f"factors column {column!r}: factor {name!r} appears twice")
        series = table[column]
        missing = np.flatnonzero(series.isna().to_numpy())
        if missing.size:
            raise ValueError(f"factors column {column!r}: missing value at {_row_name(table, int(missing[0]))}")
        kind = kind or _kind_from_dtype(column, series)
        if kind == "categorical":
            spec, coded = _categorical(name, column, series, table)
        else:
            spec, coded = _continuous(name, column, series, table, period)
        specs.append(spec)
        columns[name] = coded
    return specs, pd.DataFrame(columns, index=pd.RangeIndex(len(table)))


def _categorical(name: str, column: str, series: pd.Series, table: pd.DataFrame) -> tuple[FactorSpec, np.ndarray]:
    if pd.api.types.is_float_dtype(series.dtype):  # an infinite label is a broken value, not a category
        bad = np.flatnonzero(~np.isfinite(series.to_numpy(dtype=np.float64)))
        if bad.size:
            raise ValueError(f"factors column {column!r}: non-finite value at {_row_name(table, int(bad[0]))}")
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = list(series.cat.categories)
        codes = series.cat.codes.to_numpy().astype(np.int64)
    else:
        try:
            categories = sorted(pd.unique(series).tolist())
        except TypeError as err:
            raise ValueError(f"factors column {column!r} mixes value types that cannot be ordered: {err}") from err
        lookup = {value: code for code, value in enumerate(categories)}
        codes = np.asarray([lookup[v] for v in series.tolist()], dtype=np.int64)
    labels = tuple(str(c) for c in categories)
    n = len(categories)
    return FactorSpec(name, "categorical", 0, max(n - 1, 0), max(n, 1), labels if n else None), codes


def _continuous(name: str, column: str, series: pd.Series, table: pd.DataFrame,
                period: float | None = None) -> tuple[FactorSpec, np.ndarray]:
    if not (pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)):
        numeric = pd.to_numeric(series, errors="coerce")
        bad = np.flatnonzero(numeric.isna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"factors column {column!r} is continuous but holds the non-numeric value "
                f"{series.iloc[row]!r} at {_row_name(table, row)}"
            )
        series = numeric
    values = series.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"factors column {column!r}: non-finite value at {_row_name(table, int(bad[0]))}")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    return FactorSpec(name, "continuous", low, high, period=period), values


def _list_images(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise ValueError(f"no PNG/JPEG images in {folder}")
    return names


def _normalisation_hint(folder: Path, name: str) -> str:
    """A hint when the folder holds ``name`` in another Unicode normalisation (macOS writes NFD names)."""
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, name)
        if other != name and (folder / other).is_file():
            return f" (but {other!r}, the same name in Unicode form {form}, is: spell it that way in the table)"
    return ""


def _read_image(path: Path) -> np.ndarray:
    """One image as an (H, W, C) uint8 array, C = 1 (grayscale) or 3 (RGB)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ValueError(f"image file {path} not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = "L" if img.mode in _GRAY_MODES else "RGB"
            array = np.asarray(img.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    except Exception as err:  # PIL's decoders raise many other types for a corrupted or oversized file
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
    return array[:, :, None] if array.ndim == 2 else array


def _load_folder_images(folder: Path, names: list[str]) -> np.ndarray:
    """Stack the named images (N, H, W, C) uint8, checking that all are square and share size and channels."""
    first: tuple[str, tuple[int, ...]] | None = None
    arrays = []
    for name in names:
        array = _read_image(folder / name)
        if array.shape[0] != array.shape[1]:
            raise ValueError(f"image {folder / name} is not square ({array.shape[1]}x{array.shape[0]} pixels)")
        if first is None:
            first = (name, array.shape)
        elif array.shape != first[1]:
            raise ValueError(
                f"image {folder / name} has size {array.shape[1]}x{array.shape[0]} with {array.shape[2]} "
                f"channel(s), but {first[0]} has {first[1][1]}x{first[1][0]} with {first[1][2]}: "
                "all images must share one size and channel count"
            )
        arrays.append(array)
    return np.stack(arrays)


def _npz_images(path: Path) -> np.ndarray:
    """The ``images`` array of an .npz as float32 (N, C, H, W) in [-1, 1]."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            images = data["images"] if "images" in keys else None
    except Exception as err:  # zipfile/OSError/pickle refusal: the file is not a readable .npz of arrays
        raise ValueError(f"cannot read {path}: {err}") from err
    if images is None:
        raise ValueError(f"{path} has no array 'images' (keys: {', '.join(keys) or 'none'})")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[-1] in (1, 3):
            images = images.transpose(0, 3, 1, 2)
        elif images.shape[1] not in (1, 3):
            raise ValueError(f"{path}: 'images' {images.shape} has no channel axis of size 1 or 3 (NHWC or NCHW)")
    else:
        raise ValueError(f"{path}: 'images' must be (N, H, W), NHWC or NCHW, got shape {images.shape}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"{path}: images are not square ({images.shape[3]}x{images.shape[2]} pixels)")
    if images.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{path}: 'images' must be uint8 or float, got dtype {images.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{path}: 'images' holds NaN or infinite values")
    lo, hi = float(tensor.min()), float(tensor.max())
    if lo >= 0.0 and hi <= 1.0:
        return tensor.mul_(2.0).sub_(1.0)
    if lo >= -1.0 and hi <= 1.0:
        return tensor
    raise ValueError(f"{path}: float images must lie in [0, 1] or [-1, 1], got [{lo:.3g}, {hi:.3g}]")


def _resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear, anti-aliased resize of (N, C, H, W) in [-1, 1], chunked to bound memory."""
    if images.shape[-1] == image_size:
        return images.contiguous()
    chunks = [
        F.interpolate(chunk, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        for chunk in images.split(_RESIZE_CHUNK)
    ]
    return torch.cat(chunks).clamp_(-1.0, 1.0)


class FolderDataset(ImageDataset):
    """Images from a folder of PNG/JPEG files or an .npz, with factors from a CSV/Parquet table (optional).

    All images are loaded and resized once at construction.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        factors: str | os.PathLike | None = None,
        image_size: int = 64,
        seed: int = 0,
        name: str = "folder",
    ) -> None:
        self.name = name
        sizes = range(FOLDER_MIN_SIZE, FOLDER_MAX_SIZE + 1)
        self.image_size = check_image_size(name, image_size, sizes)
        self.seed = int(seed)
        self.path = Path(path)
        self.factors_path = Path(factors) if factors is not None else None
        table = read_factor_table(self.factors_path) if self.factors_path is not None else None
        if table is not None and table.empty:
            raise ValueError(f"factors table {self.factors_path} has no rows (or no columns)")
        images, self.files = self._load_images(table)
        self.factor_specs, self._factors = parse_factor_table(table) if table is not None else ([], None)
        self.channels = int(images.shape[1])
        self._images = _resize(images, self.image_size)

    def _load_images(self, table: pd.DataFrame | None) -> tuple[torch.Tensor, list[str] | None]:
        """Images (N, C, H, W) float in [-1, 1], aligned with the table's rows, and their file names."""
        if self.path.is_dir():
            names = self._align_files(table)
            array = _load_folder_images(self.path, names)
            images = torch.from_numpy(array).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            return images, names
        if self.path.suffix.lower() == ".npz" and self.path.is_file():
            images = _npz_images(self.path)
            if table is not None:
                if FILE_COLUMN in table.columns:
                    raise ValueError(
                        f"factors table {self.factors_path} has a {FILE_COLUMN!r} column, but {self.path} is an "
                        "array without file names: drop the column to match rows by order"
                    )
                self._check_row_count(table, images.shape[0], "images in")
            return images, None
        raise ValueError(f"dataset path {self.path} is neither a folder of images nor an existing .npz file")

    def _align_files(self, table: pd.DataFrame | None) -> list[str]:
        if table is not None and FILE_COLUMN in table.columns:
            blank = np.flatnonzero(table[FILE_COLUMN].isna().to_numpy())
            if blank.size:
                raise ValueError(f"factors table {self.factors_path} row {int(blank[0])}: "
                                 f"column {FILE_COLUMN!r} has no file name")
            names = [str(v) for v in table[FILE_COLUMN].tolist()]
            seen: dict[str, int] = {}
            for row, name in enumerate(names):
                if name in seen:
                    raise ValueError(
                        f"factors table {self.factors_path}: file {name!r} at row {row} repeats row {seen[name]}"
                    )
                seen[name] = row
                if not (self.path / name).is_file():
                    raise ValueError(f"factors table {self.factors_path} row {row}: file {name!r} not found in "
                                     f"{self.path}{_normalisation_hint(self.path, name)}")
            return names
        names = _list_images(self.path)
        if table is not None:
            self._check_row_count(table, len(names), "images in", names)
        return names

    def _check_row_count(self, table: pd.DataFrame, n_images: int, what: str, names: list[str] | None = None) -> None:
        if len(table) == n_images:
            return
        if len(table) > n_images:
            detail = f"row {n_images} has no image"
        elif names is not None:
            detail = f"image {names[len(table)]!r} has no row"
        else:
            detail = f"image {len(table)} has no row"
        raise ValueError(
            f"factors table {self.factors_path} has {len(table)} rows but there are {n_images} {what} "
            f"{self.path} ({detail}); add a {FILE_COLUMN!r} column to match rows to files by name"
        )

    def _length(self) -> int:
        return int(self._images.shape[0])

    def _get(self, indices: torch.Tensor) -> tuple[torch.Tensor, pd.DataFrame]:
        images = self._images.index_select(0, indices)
        if self._factors is None:
            return images, pd.DataFrame(index=pd.RangeIndex(indices.numel()))
        return images, self._factors.iloc[indices.numpy()].reset_index(drop=True)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["path"] = str(self.path)
        config["factors"] = str(self.factors_path) if self.factors_path is not None else None
        return config
