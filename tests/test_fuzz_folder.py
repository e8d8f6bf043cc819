"""Seeded fuzz of folder datasets: broken factors tables and images each give a ValueError naming the file, row
or column; unicode and spaces in file names work.

Each case starts from one valid folder (6 grayscale PNGs and a factors table) and applies one seeded mutation.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dplase.data import load_dataset

N_IMAGES, SIZE = 6, 8
#: cases per mutation kind (every kind gets the same number; the RNG picks rows, columns, bytes)
PER_KIND = 24
#: float columns a NaN/inf can go into (a declared categorical, an inferred continuous, a periodic one)
FLOAT_COLUMNS = ("size", "grade:categorical", "angle:periodic")
KINDS = (
    "missing_file", "duplicate_name", "blank_name", "nan", "inf", "non_numeric", "empty_table", "row_count",
    "image_size", "channels", "truncated_png", "not_an_image", "bitflip_png", "unicode_name", "space_name",
)
#: kinds that must load (the files exist, only their names are unusual)
LOADS = ("unicode_name", "space_name")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _base(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    arrays = {f"img{i}.png": rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8) for i in range(N_IMAGES)}
    table = pd.DataFrame({
        "file": list(arrays),
        "shape": rng.choice(["square", "heart"], N_IMAGES),
        "size": rng.uniform(0.5, 1.5, N_IMAGES),
        "count": rng.integers(0, 3, N_IMAGES),
        "grade:categorical": rng.choice([0.5, 1.5], N_IMAGES),
        "angle:periodic": rng.uniform(0, 2 * math.pi, N_IMAGES),
    })
    return arrays, table


def _mutate(kind: str, rng: np.random.Generator, folder: Path, table_path: Path) -> dict[str, Any]:
    """Write one mutated case into ``folder``; returns what to expect: ``needles`` (substrings the error must
    hold) or ``arrays`` (the images it must load), and ``maybe_ok`` (a byte-level corruption that may leave
    the pixels intact, e.g. a truncated trailer: then the pixels must equal the original)."""
    arrays, table = _base(rng)
    files = {name: _png(array) for name, array in arrays.items()}
    row = int(rng.integers(0, N_IMAGES))
    name = table.loc[row, "file"]
    use_table = True
    expect: dict[str, Any] = {"needles": [], "arrays": None, "maybe_ok": False}
    if kind == "missing_file":
        table.loc[row, "file"] = f"gone{row}.png"
        expect["needles"] = [f"row {row}", f"'gone{row}.png' not found", str(folder)]
    elif kind == "duplicate_name":
        first, second = sorted(rng.choice(N_IMAGES, 2, replace=False).tolist())
        table.loc[second, "file"] = table.loc[first, "file"]
        expect["needles"] = [f"'{table.loc[first, 'file']}' at row {second} repeats row {first}", str(table_path)]
    elif kind == "blank_name":
        table["file"] = table["file"].astype(object)
        table.loc[row, "file"] = None
        expect["needles"] = [f"row {row}", "no file name", str(table_path)]
    elif kind in ("nan", "inf"):
        column = FLOAT_COLUMNS[int(rng.integers(0, len(FLOAT_COLUMNS)))]
        table[column] = table[column].astype(float)
        table.loc[row, column] = math.nan if kind == "nan" else float(rng.choice([math.inf, -math.inf]))
        what = "missing value" if kind == "nan" else "non-finite value"
        expect["needles"] = [f"column {column!r}: {what} at row {row} (file '{name}')"]
    elif kind == "non_numeric":
        table["angle:periodic"] = table["angle:periodic"].astype(str)
        table.loc[row, "angle:periodic"] = "wide"
        expect["needles"] = ["'angle:periodic' is continuous", "'wide'", f"row {row}"]
    elif kind == "empty_table":
        table = table.iloc[:0]
        expect["needles"] = [str(table_path), "has no rows"]
    elif kind == "row_count":  # rows matched by order: one row too few or too many
        table = table.drop(columns="file")
        table = table.iloc[:-1] if rng.random() < 0.5 else pd.concat([table, table.iloc[:1]], ignore_index=True)
        expect["needles"] = [str(table_path), f"has {len(table)} rows but there are {N_IMAGES} images"]
    elif kind in ("image_size", "channels"):
        use_table = bool(rng.random() < 0.5)  # rows by name, or images by sorted file name without a table
        other = (rng.integers(0, 256, (SIZE + 2, SIZE + 2), dtype=np.uint8) if kind == "image_size"
                 else rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
        files[name] = _png(other)
        expect["needles"] = [name, "all images must share one size and channel count"]
    elif kind == "truncated_png":
        files[name] = files[name][: int(rng.integers(0, len(files[name])))]
        expect.update(needles=[f"cannot read image {folder / name}"], maybe_ok=True, arrays=arrays)
    elif kind == "not_an_image":
        files[name] = rng.bytes(int(rng.integers(0, 300))) if rng.random() < 0.5 else b"factor,value\n1,2\n"
        expect["needles"] = [f"cannot read image {folder / name}"]
    elif kind == "bitflip_png":
        data = bytearray(files[name])
        bit = int(rng.integers(0, len(data) * 8))
        data[bit // 8] ^= 1 << (bit % 8)
        files[name] = bytes(data)
        expect.update(needles=[f"cannot read image {folder / name}"], maybe_ok=True, arrays=arrays)
    elif kind in LOADS:
        new = f"ü ñ 猫 {row}.png" if kind == "unicode_name" else f"my image {row} .png"
        files[new] = files.pop(name)
        arrays[new] = arrays.pop(name)
        table.loc[row, "file"] = new
        use_table = bool(rng.random() < 0.5)
        expect["arrays"] = arrays
    folder.mkdir()
    for file, data in files.items():
        (folder / file).write_bytes(data)
    if not use_table:
        return {**expect, "table": None}
    if table_path.suffix == ".csv":
        table.to_csv(table_path, index=False)
    else:
        table.to_parquet(table_path, index=False)
    return {**expect, "table": table_path}


def _loaded_ok(data: Any, arrays: dict[str, np.ndarray]) -> bool:
    images, _ = data.get(torch.arange(len(data)))
    return len(data) == len(arrays) and all(
        torch.allclose(images[i, 0], torch.from_numpy(arrays[name]).float() / 127.5 - 1, atol=1e-6)
        for i, name in enumerate(data.files)
    )


def run_cases(root: Path, seed: int = 0) -> tuple[Counter, list[str]]:
    """Run ``PER_KIND`` seeded cases of every kind; returns (outcome counts, failure descriptions)."""
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    failures: list[str] = []
    for i in range(PER_KIND * len(KINDS)):
        kind = KINDS[i % len(KINDS)]
        folder, table_path = root / f"case{i}", root / f"factors{i}.{'csv' if rng.random() < 0.5 else 'parquet'}"
        expect = _mutate(kind, rng, folder, table_path)
        try:
            data = load_dataset("folder", image_size=SIZE, path=folder, factors=expect["table"])
        except ValueError as err:
            message = str(err)
            if kind not in LOADS and all(needle in message for needle in expect["needles"]):
                counts[(kind, "clear error")] += 1
            else:
                failures.append(f"case {i} ({kind}): unexpected error {message!r}; wanted {expect['needles']}")
            continue
        except Exception as err:  # any other type is a defect: the user gets a traceback, not a message
            failures.append(f"case {i} ({kind}): {type(err).__name__}: {err}")
            continue
        if (kind in LOADS or expect["maybe_ok"]) and _loaded_ok(data, expect["arrays"]):
            counts[(kind, "loaded intact")] += 1
        else:
            failures.append(f"case {i} ({kind}): loaded without an error")
    return counts, failures


def test_fuzzed_folders_fail_with_a_clear_error_or_load_intact(tmp_path: Path) -> None:
    counts, failures = run_cases(tmp_path)
    assert failures == [], "\n".join(failures[:10])
    assert sum(counts.values()) == PER_KIND * len(KINDS) >= 300
    for kind in KINDS:  # every kind ran, and only corruptions that may spare the pixels loaded
        done = counts[(kind, "clear error")] + counts[(kind, "loaded intact")]
        assert done == PER_KIND, kind
        if kind in LOADS:
            assert counts[(kind, "loaded intact")] == PER_KIND
        elif kind not in ("truncated_png", "bitflip_png"):
            assert counts[(kind, "loaded intact")] == 0
    assert counts[("truncated_png", "clear error")] > PER_KIND // 2  # most cuts lose pixel data


@pytest.mark.parametrize("name", ["ü ñ 猫.png", "two  spaces.png", " leading.png", "ÆØÅ-é.PNG"])
def test_unusual_file_names_work_with_and_without_a_table(tmp_path: Path, name: str) -> None:
    array = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    (tmp_path / name).write_bytes(_png(array))
    (tmp_path / "b.png").write_bytes(_png(255 - array))
    table = tmp_path / "factors.csv"
    pd.DataFrame({"file": [name, "b.png"], "size": [1.0, 2.0]}).to_csv(table, index=False)
    for factors in (table, None):
        data = load_dataset("folder", image_size=SIZE, path=tmp_path, factors=factors)
        assert name in data.files
        images, _ = data.get(torch.arange(2))
        expected = torch.from_numpy(array).float() / 127.5 - 1
        assert torch.allclose(images[data.files.index(name), 0], expected, atol=1e-6)


def test_a_name_in_another_unicode_form_is_named_in_the_error(tmp_path: Path) -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "café.png")  # as macOS writes it
    (tmp_path / decomposed).write_bytes(_png(np.zeros((SIZE, SIZE), np.uint8)))
    table = tmp_path / "factors.csv"
    pd.DataFrame({"file": [unicodedata.normalize("NFC", "café.png")], "size": [1.0]}).to_csv(table, index=False)
    with pytest.raises(ValueError, match=r"row 0: file 'café\.png' not found in .*Unicode form NFD"):
        load_dataset("folder", image_size=SIZE, path=tmp_path, factors=table)
