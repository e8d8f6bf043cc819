"""Datasets: renderer factor correctness, determinism, factor tables, digits, external folders and errors."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dplase.data import DATASETS, FactorSpec, dataset_from_config, load_dataset
from dplase.data.render import ELLIPSE_AXES, HEART_H, SPRITE_HALF_SIZE, hsv_to_rgb
from dplase.data.shapes import N_ORIENTATIONS, ColorShapesDataset

SHAPE_CODES = {"square": 0, "ellipse": 1, "heart": 2}


def shapes_index(shape: int, scale: int, orientation: int, pos_x: int, pos_y: int) -> int:
    """Independent mixed-radix encoding of dSprites factor codes (pos_y fastest)."""
    return (((shape * 6 + scale) * 40 + orientation) * 32 + pos_x) * 32 + pos_y


def coverage(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel object coverage in [0, 1] of grayscale sprites (N, H, W)."""
    return (images[:, 0].double() + 1) / 2


@pytest.fixture(scope="module")
def shapes64():
    return load_dataset("shapes", image_size=64)


# --- shapes: factor correctness ----------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("shape", ["square", "ellipse", "heart"])
def test_pos_x_moves_centroid_monotonically(image_size, shape):
    data = load_dataset("shapes", image_size=image_size)
    idx = [shapes_index(SHAPE_CODES[shape], 2, 7, x, 16) for x in range(32)]
    images, factors = data.get(torch.tensor(idx))
    cov = coverage(images)
    cols = torch.arange(image_size, dtype=torch.float64)
    centroid_x = (cov.sum(1) * cols).sum(1) / cov.sum((1, 2))
    centroid_y = (cov.sum(2) * cols).sum(1) / cov.sum((1, 2))
    assert (centroid_x.diff() > 0).all(), centroid_x
    # it spans most of the frame, like dSprites, and the vertical centroid does not move
    assert centroid_x[-1] - centroid_x[0] > 0.5 * image_size
    assert centroid_y.max() - centroid_y.min() < 0.05
    assert np.all(np.diff(factors["pos_x"].to_numpy()) > 0)


def test_pos_y_moves_centroid_down(shapes64):
    idx = [shapes_index(0, 3, 0, 10, y) for y in range(32)]
    cov = coverage(shapes64.get(torch.tensor(idx))[0])
    rows = torch.arange(64, dtype=torch.float64)
    centroid_y = (cov.sum(2) * rows).sum(1) / cov.sum((1, 2))
    assert (centroid_y.diff() > 0).all()


@pytest.mark.parametrize("shape", ["square", "ellipse", "heart"])
def test_scale_changes_area_quadratically(shapes64, shape):
    scales = np.linspace(0.5, 1.0, 6)
    idx = [shapes_index(SHAPE_CODES[shape], s, 11, 16, 16) for s in range(6)]
    area = coverage(shapes64.get(torch.tensor(idx))[0]).sum((1, 2)).numpy()
    np.testing.assert_allclose(area / area[-1], scales**2 / scales[-1] ** 2, rtol=0.03)
    # the anti-aliased coverage integrates to the analytic area of the outline (pixels at 64 px)
    unit = SPRITE_HALF_SIZE * 32  # pixels per sprite unit at scale 1
    a, b = ELLIPSE_AXES
    side = math.sqrt(2) * HEART_H
    exact = {"square": 4.0, "ellipse": math.pi * a * b, "heart": side**2 * (1 + math.pi / 4)}[shape] * unit**2
    assert area[-1] == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize("image_size", [32, 64])
def test_square_has_fourfold_symmetry(image_size):
    data = load_dataset("shapes", image_size=image_size)
    quarter = N_ORIENTATIONS // 4
    for pos_x, pos_y, scale, base in [(16, 16, 5, 0), (3, 29, 2, 3), (31, 0, 0, 7)]:
        turns = [shapes_index(0, scale, base + k * quarter, pos_x, pos_y) for k in range(4)]
        images = data.get(torch.tensor(turns))[0]
        for k in range(1, 4):
            assert (images[k] - images[0]).abs().max() < 1e-4
    # control: the ellipse is not 4-fold symmetric, so the same comparison must see a change
    ellipse = data.get(torch.tensor([shapes_index(1, 5, 0, 16, 16), shapes_index(1, 5, quarter, 16, 16)]))[0]
    assert (ellipse[1] - ellipse[0]).abs().max() > 0.5


def test_sprites_stay_inside_the_frame(shapes64):
    # scale 1 at the four corners, every orientation: the outermost pixel ring stays background
    idx = [
        shapes_index(s, 5, o, x, y) for s in range(3) for o in range(N_ORIENTATIONS) for x in (0, 31) for y in (0, 31)
    ]
    images = shapes64.get(torch.tensor(idx))[0][:, 0]
    ring = torch.cat([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], dim=1)
    assert (ring == -1).all()
    assert (images.amax((1, 2)) == 1).all()  # and every sprite has fully covered pixels


# --- shapes: factor tables and determinism ------------------------------------------------------------


def test_shapes_factor_specs_and_index_mapping(shapes64):
    specs = {s.name: s for s in shapes64.factor_specs}
    assert list(specs) == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert len(shapes64) == 3 * 6 * 40 * 32 * 32
    assert specs["shape"].kind == "categorical" and specs["shape"].labels == ("square", "ellipse", "heart")
    assert specs["orientation"].period == pytest.approx(2 * math.pi)
    assert [specs[n].n_values for n in specs] == [3, 6, 40, 32, 32]

    images, factors = shapes64.get(torch.tensor([0, len(shapes64) - 1]))
    assert factors.iloc[0].tolist() == pytest.approx([0, 0.5, 0.0, 0.0, 0.0])
    assert factors.iloc[1].tolist() == pytest.approx([2, 1.0, 2 * math.pi * 39 / 40, 1.0, 1.0])

    # every value lies on its factor's grid, and the codes rebuild the index
    idx = shapes64.sample_indices(500, seed=4)
    images, factors = shapes64.get(idx)
    assert images.shape == (500, 1, 64, 64) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert list(factors.columns) == shapes64.factor_names
    assert factors["shape"].dtype == np.int64 and factors["scale"].dtype == np.float64
    codes = []
    for spec in shapes64.factor_specs:
        column = factors[spec.name].to_numpy()
        assert column.min() >= spec.low - 1e-9 and column.max() <= spec.high + 1e-9
        code = spec.codes(column)
        np.testing.assert_allclose(spec.grid()[code], column, atol=1e-9)
        codes.append(code)
    rebuilt = [shapes_index(*map(int, row)) for row in zip(*codes, strict=True)]
    assert rebuilt == idx.tolist()


@pytest.mark.parametrize("name", ["shapes", "color_shapes", "digits"])
def test_same_seed_same_bytes(name):
    data = load_dataset(name, image_size=32, seed=5)
    a_img, a_fac = data.sample(64, seed=11)
    b_img, b_fac = load_dataset(name, image_size=32, seed=5).sample(64, seed=11)
    assert a_img.numpy().tobytes() == b_img.numpy().tobytes()
    pd.testing.assert_frame_equal(a_fac, b_fac)
    # the dataset seed is the default; a generator works too; another seed gives other items
    default_img, _ = data.sample(64)
    assert torch.equal(default_img, data.sample(64, seed=5)[0])
    gen = torch.Generator().manual_seed(11)
    assert torch.equal(data.sample(64, seed=gen)[0], a_img)
    assert not torch.equal(data.sample(64, seed=12)[0], a_img)
    idx = data.sample_indices(64, seed=11)
    assert data.get(idx)[0].numpy().tobytes() == a_img.numpy().tobytes()


def test_get_does_not_depend_on_batch_composition(shapes64):
    idx = shapes64.sample_indices(300, seed=2)
    together = shapes64.get(idx)[0]
    alone = torch.cat([shapes64.get(idx[i : i + 1])[0] for i in (0, 150, 299)])
    assert torch.equal(together[[0, 150, 299]], alone)


def test_bad_indices_are_clear_errors(shapes64):
    with pytest.raises(IndexError, match=r"index 737280 out of range \[0, 737280\)"):
        shapes64.get(torch.tensor([0, len(shapes64)]))
    with pytest.raises(IndexError, match="index -1 out of range"):
        shapes64.get([-1])
    with pytest.raises(ValueError, match="indices must be integers"):
        shapes64.get(torch.tensor([0.5]))
    assert shapes64.get([])[0].shape == (0, 1, 64, 64)


# --- color_shapes -------------------------------------------------------------------------------------


def test_hsv_matches_colorsys():
    hues = torch.linspace(0, 0.99, 37, dtype=torch.float64)
    ours = hsv_to_rgb(hues, 0.7, 0.8).double().numpy()
    ref = np.array([colorsys.hsv_to_rgb(float(h), 0.7, 0.8) for h in hues])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_color_shapes_colours_and_contrast():
    data = load_dataset("color_shapes", image_size=64)
    assert data.channels == 3
    assert data.factor_names[-2:] == ["object_hue", "background_hue"]
    assert len(data) == 3 * 6 * 40 * 32 * 32 * 8 * 4
    images, factors = data.sample(200, seed=0)
    assert images.shape == (200, 3, 64, 64)
    obj_palette, bg_palette = ColorShapesDataset.palettes()
    for img, (_, row) in zip(images, factors.iterrows(), strict=True):
        # the corner is background, the brightest pixel is object (scale >= 0.5 sprites have full pixels)
        np.testing.assert_allclose(img[:, 0, 0], bg_palette[int(row["background_hue"])] * 2 - 1, atol=1e-6)
        brightest = img.sum(0).argmax()
        np.testing.assert_allclose(img.flatten(1)[:, brightest], obj_palette[int(row["object_hue"])] * 2 - 1, atol=1e-6)
    # every object colour stands out from every background: luma gap of at least 0.2 (on [0, 1])
    luma = torch.tensor([0.299, 0.587, 0.114])
    gap = (obj_palette @ luma)[:, None] - (bg_palette @ luma)[None, :]
    assert gap.min() > 0.2
    # the blend weight of object over background is exactly the grayscale sprite's coverage
    gray = load_dataset("shapes", image_size=64)
    sprite = shapes_index(2, 4, 9, 5, 20)
    obj_hue, bg_hue = 3, 1
    colour_img = data.get(torch.tensor([sprite * 32 + obj_hue * 4 + bg_hue]))[0][0].double()
    obj, bg = obj_palette[obj_hue].double() * 2 - 1, bg_palette[bg_hue].double() * 2 - 1
    channel = int((obj - bg).abs().argmax())
    blend = (colour_img[channel] - bg[channel]) / (obj[channel] - bg[channel])
    torch.testing.assert_close(blend, coverage(gray.get(torch.tensor([sprite]))[0])[0], atol=1e-5, rtol=0)


# --- digits ---------------------------------------------------------------------------------------------


def test_digits_shape_range_and_labels():
    from sklearn.datasets import load_digits

    data = load_dataset("digits", image_size=32)
    assert len(data) == 1797 and data.channels == 1
    assert data.factor_specs == [FactorSpec("class", "categorical", 0, 9, 10, tuple("0123456789"))]
    images, factors = data.get(torch.arange(len(data)))
    assert images.shape == (1797, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() == -1 and images.max() <= 1 and images.max() > 0.9
    ref = load_digits()
    np.testing.assert_array_equal(factors["class"].to_numpy(), ref.target)
    # averaging 4x4 blocks of the upscale gives back the original 8x8 digits (up to bilinear blur)
    pooled = torch.nn.functional.avg_pool2d((images + 1) / 2, 4)[:, 0].flatten(1).numpy()
    original = ref.images.reshape(1797, 64) / 16
    assert np.corrcoef(pooled.ravel(), original.ravel())[0, 1] > 0.97
    assert load_dataset("digits").image_size == 64


# --- folder ---------------------------------------------------------------------------------------------


def write_pngs(folder, n, size=16, mode="L", seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(n):
        shape = (size, size) if mode == "L" else (size, size, 3)
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(array, mode=mode).save(folder / f"img{i}.png")
        arrays[f"img{i}.png"] = array
    return arrays


def test_folder_png_csv_round_trip(tmp_path):
    arrays = write_pngs(tmp_path, 4)
    table = pd.DataFrame(
        {
            "file": ["img2.png", "img0.png", "img3.png", "img1.png"],
            "digit": [7, 3, 7, 5],
            "colour": ["red", "blue", "red", "green"],
            "size": [0.5, 1.5, 1.0, 2.0],
            "level:continuous": [1, 2, 3, 4],
            "score:categorical": [0.5, 0.25, 0.5, 0.25],
        }
    )
    table.to_csv(tmp_path / "factors.csv", index=False)
    data = load_dataset("folder", image_size=16, path=tmp_path, factors=tmp_path / "factors.csv")
    assert len(data) == 4 and data.channels == 1
    images, factors = data.get(torch.arange(4))
    for i, name in enumerate(table["file"]):
        expected = torch.from_numpy(arrays[name]).float() / 127.5 - 1
        assert torch.allclose(images[i, 0], expected, atol=1e-6)
    specs = {s.name: s for s in data.factor_specs}
    assert list(specs) == ["digit", "colour", "size", "level", "score"]
    assert specs["digit"] == FactorSpec("digit", "categorical", 0, 2, 3, ("3", "5", "7"))
    assert specs["colour"].labels == ("blue", "green", "red")
    assert specs["size"] == FactorSpec("size", "continuous", 0.5, 2.0)
    assert specs["level"].kind == "continuous" and specs["score"].kind == "categorical"
    assert factors["digit"].tolist() == [2, 0, 2, 1]
    assert factors["colour"].tolist() == [2, 0, 2, 1]
    assert factors["size"].tolist() == [0.5, 1.5, 1.0, 2.0]
    assert factors["level"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert factors["score"].tolist() == [1, 0, 1, 0]
    # resized to 32 px: same channels, range kept, and it rebuilds from its config
    big = load_dataset("folder", image_size=32, path=tmp_path, factors=tmp_path / "factors.csv")
    assert big.get([0])[0].shape == (1, 1, 32, 32)
    again = dataset_from_config(big.to_config())
    assert torch.equal(again.sample(3, seed=1)[0], big.sample(3, seed=1)[0])


def test_folder_rgb_by_row_order_without_table(tmp_path):
    arrays = write_pngs(tmp_path, 3, size=20, mode="RGB")
    data = load_dataset("folder", image_size=20, path=tmp_path)
    assert data.channels == 3 and data.factor_specs == []
    images, factors = data.get([1])
    expected = torch.from_numpy(arrays["img1.png"]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(images[0], expected, atol=1e-6)
    assert factors.shape == (1, 0)


@pytest.mark.parametrize("layout", ["nhwc_uint8", "nchw_float01", "nhw_float_signed"])
def test_npz_parquet_round_trip(tmp_path, layout):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    expected = torch.from_numpy(base).permute(0, 3, 1, 2).float() / 127.5 - 1
    if layout == "nhwc_uint8":
        array = base
    elif layout == "nchw_float01":
        array = base.transpose(0, 3, 1, 2).astype(np.float32) / 255
    else:
        array = base[..., 0].astype(np.float64) / 127.5 - 1
        expected = expected[:, :1]
    np.savez(tmp_path / "set.npz", images=array)
    pd.DataFrame({"kind": ["a", "b", "a", "c", "b"], "value": np.arange(5) / 4}).to_parquet(tmp_path / "f.parquet")
    data = load_dataset("folder", image_size=8, path=tmp_path / "set.npz", factors=tmp_path / "f.parquet")
    images, factors = data.get(torch.arange(5))
    assert torch.allclose(images, expected, atol=1e-5)
    assert factors["kind"].tolist() == [0, 1, 0, 2, 1]
    assert factors["value"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert data.factor_specs[1] == FactorSpec("value", "continuous", 0.0, 1.0)


def _png_set(tmp_path, n=3):
    write_pngs(tmp_path, n)
    return tmp_path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_file", r"row 1: file 'nothere.png' not found in"),
        ("unreadable", r"cannot read image .*img1\.png"),
        ("too_many_rows", r"has 4 rows but there are 3 images in .*\(row 3 has no image\)"),
        ("too_few_rows", r"has 2 rows but there are 3 images in .*\(image 'img2.png' has no row\)"),
        ("unknown_type", r"factors column 'when' has unsupported type datetime64"),
        ("mixed_object", r"factors column 'mixed' has unsupported type"),
        ("bad_suffix", r"factors column 'x:ordinal': unknown kind suffix 'ordinal'"),
        ("missing_value", r"factors column 'size': missing value at row 1 \(file 'img1.png'\)"),
        ("non_numeric", r"'size:continuous' is continuous but holds the non-numeric value 'big' at row 2"),
        ("wrong_size", r"image .*img1\.png has size 20x20 with 1 channel\(s\), but img0.png has 16x16"),
        ("not_square", r"image .*img2\.png is not square \(16x12 pixels\)"),
        ("mixed_channels", r"image .*img1\.png has size 16x16 with 3 channel\(s\)"),
        ("duplicate_file", r"file 'img0.png' at row 2 repeats row 0"),
        ("bad_table_format", r"unsupported format '\.txt'"),
        ("no_table", r"factors table .*absent\.csv does not exist"),
    ],
)
def test_folder_mismatches_are_clear_errors(tmp_path, case, message):
    folder = _png_set(tmp_path)
    files = ["img0.png", "img1.png", "img2.png"]
    table = pd.DataFrame({"file": files, "size": [1.0, 2.0, 3.0]})
    factors = tmp_path / "factors.csv"
    if case == "missing_file":
        table["file"] = ["img0.png", "nothere.png", "img2.png"]
    elif case == "unreadable":
        (folder / "img1.png").write_bytes(b"not a png at all")
    elif case == "too_many_rows":
        table = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0]})
    elif case == "too_few_rows":
        table = pd.DataFrame({"size": [1.0, 2.0]})
    elif case == "unknown_type":
        table["when"] = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])
        factors = tmp_path / "factors.parquet"
    elif case == "mixed_object":
        table["mixed"] = pd.Series(["a", 1, 2.5], dtype=object)
    elif case == "bad_suffix":
        table["x:ordinal"] = [1, 2, 3]
    elif case == "missing_value":
        table["size"] = [1.0, None, 3.0]
    elif case == "non_numeric":
        table = table.rename(columns={"size": "size:continuous"})
        table["size:continuous"] = ["1", "2", "big"]
    elif case == "wrong_size":
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(folder / "img1.png")
    elif case == "not_square":
        Image.fromarray(np.zeros((12, 16), np.uint8)).save(folder / "img2.png")
    elif case == "mixed_channels":
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "img1.png")
    elif case == "duplicate_file":
        table["file"] = ["img0.png", "img1.png", "img0.png"]
    elif case == "bad_table_format":
        factors = tmp_path / "factors.txt"
        factors.write_text("x")
    elif case == "no_table":
        factors = tmp_path / "absent.csv"

    if case == "mixed_object":  # no file format keeps a mixed-type column, so parse the frame directly
        from dplase.data.folder import parse_factor_table

        with pytest.raises(ValueError, match=message):
            parse_factor_table(table)
        return
    if factors.suffix == ".csv" and case != "no_table":
        table.to_csv(factors, index=False)
    elif factors.suffix == ".parquet":
        table.to_parquet(factors)
    with pytest.raises(ValueError, match=message):
        load_dataset("folder", image_size=16, path=folder, factors=factors)


def test_npz_mismatches_are_clear_errors(tmp_path):
    np.savez(tmp_path / "nokey.npz", pixels=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"nokey\.npz has no array 'images' \(keys: pixels\)"):
        load_dataset("folder", image_size=8, path=tmp_path / "nokey.npz")
    np.savez(tmp_path / "range.npz", images=np.full((2, 8, 8), 3.0))
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\] or \[-1, 1\], got \[3, 3\]"):
        load_dataset("folder", image_size=8, path=tmp_path / "range.npz")
    np.savez(tmp_path / "chan.npz", images=np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"no channel axis of size 1 or 3"):
        load_dataset("folder", image_size=8, path=tmp_path / "chan.npz")
    np.savez(tmp_path / "ok.npz", images=np.zeros((2, 8, 8), np.uint8))
    pd.DataFrame({"file": ["a", "b"], "k": [0, 1]}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(ValueError, match=r"has a 'file' column, but .*ok\.npz is an array without file names"):
        load_dataset("folder", image_size=8, path=tmp_path / "ok.npz", factors=tmp_path / "f.csv")
    pd.DataFrame({"k": [0, 1, 1]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match=r"has 3 rows but there are 2 images in .*ok\.npz \(row 2 has no image\)"):
        load_dataset("folder", image_size=8, path=tmp_path / "ok.npz", factors=tmp_path / "g.csv")
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read .*broken\.npz"):
        load_dataset("folder", image_size=8, path=tmp_path / "broken.npz")
    with pytest.raises(ValueError, match=r"neither a folder of images nor an existing \.npz"):
        load_dataset("folder", image_size=8, path=tmp_path / "absent.npz")


# --- registry errors --------------------------------------------------------------------------------------


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(
        ValueError, match="unknown dataset 'mnist'; known datasets: shapes, color_shapes, digits, folder, planted"
    ):
        load_dataset("mnist")
    assert tuple(DATASETS) == ("shapes", "color_shapes", "digits", "folder", "planted")


@pytest.mark.parametrize("name", ["shapes", "color_shapes", "digits"])
def test_wrong_image_size_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"dataset '{name}' supports image_size 32 or 64, got 48"):
        load_dataset(name, image_size=48)


def test_folder_size_and_option_errors(tmp_path):
    write_pngs(tmp_path, 2)
    with pytest.raises(ValueError, match=r"dataset 'folder' supports image_size 8\.\.1024, got 4"):
        load_dataset("folder", image_size=4, path=tmp_path)
    with pytest.raises(ValueError, match="dataset 'folder' needs option\\(s\\): path"):
        load_dataset("folder")
    with pytest.raises(ValueError, match="dataset 'shapes' got unknown option\\(s\\) path; it takes: no options"):
        load_dataset("shapes", path=tmp_path)


def test_factor_spec_round_trip_and_validation():
    spec = FactorSpec("orientation", "continuous", 0.0, 6.1, 40, period=2 * math.pi)
    assert FactorSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="kind must be 'categorical' or 'continuous', got 'ordinal'"):
        FactorSpec("x", "ordinal", 0, 1)
    with pytest.raises(ValueError, match="2 labels for 3 values"):
        FactorSpec("x", "categorical", 0, 2, 3, ("a", "b"))
