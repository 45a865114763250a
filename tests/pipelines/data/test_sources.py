from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.images import read_image_files
from pipelines.data.sources import load_dataset
from pipelines.errors import GanpipeError
from tests.conftest import write_png


def test_digits_source_shape_range_and_classes():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8)
    assert ds.x.dtype == np.float32 and ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.class_names == tuple("0123456789")
    assert ds.y.dtype == np.int64 and set(ds.y) == set(range(10))
    assert ds.item_ids[5] == "digits#5"


def test_mnist5k_source_shape_and_balance():
    ds = load_dataset("mnist5k")
    assert ds.x.shape == (5000, 1, 28, 28)
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert set(ds.class_counts.values()) == {500}


def test_folder_source_reads_classes_from_subfolders(image_folder):
    ds = load_dataset(f"folder:{image_folder}")
    assert ds.class_names == ("bolt", "nut", "washer")
    assert ds.class_counts == {"bolt": 6, "nut": 5, "washer": 4}
    assert ds.x.shape == (15, 1, 12, 12)
    assert ds.item_ids[0].endswith("bolt/00.png")
    # pixel values survive the round trip through PNG
    from PIL import Image

    first = np.asarray(Image.open(ds.item_ids[0]), dtype=np.float32) / 255
    np.testing.assert_allclose(ds.x[0, 0], first, atol=1e-6)


def test_folder_with_rgb_image_loads_as_rgb(tmp_path):
    write_png(tmp_path / "a" / "0.png", np.zeros((10, 10), np.uint8))
    write_png(tmp_path / "b" / "0.png", np.full((10, 10, 3), [255, 0, 0], np.uint8))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.x.shape == (2, 3, 10, 10)
    np.testing.assert_allclose(ds.x[1, :, 0, 0], [1.0, 0.0, 0.0])


def test_folder_resizes_to_declared_size_and_channels(tmp_path):
    write_png(tmp_path / "a" / "0.png", np.zeros((10, 10), np.uint8))
    write_png(tmp_path / "a" / "1.png", np.full((20, 19), 255, np.uint8))
    ds = load_dataset(f"folder:{tmp_path}", image_size=16, channels=3)
    assert ds.x.shape == (2, 3, 16, 16)
    assert ds.x[1].min() == pytest.approx(1.0)
    write_png(tmp_path / "a" / "wide.png", np.zeros((10, 30), np.uint8))
    with pytest.raises(GanpipeError, match=r"wide\.png: size 30x10 cannot be resized to 16x16 without distortion"):
        load_dataset(f"folder:{tmp_path}", image_size=16)


def test_npz_source_accepts_nhwc_uint8_and_class_names(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 9, 9, 3), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["ok", "scratch", "dent"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.x.shape == (6, 3, 9, 9)
    np.testing.assert_allclose(ds.x[2].transpose(1, 2, 0), x[2] / 255.0, atol=1e-6)
    assert ds.class_names == ("ok", "scratch", "dent")
    assert ds.item_ids[3] == "d.npz#3"


def test_npz_sparse_and_string_labels_are_encoded(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 8, 8), np.float32), y=np.array([7, 3, 7]))
    assert load_dataset(f"npz:{path}").class_names == ("3", "7")
    np.savez(path, x=np.zeros((3, 8, 8), np.float32), y=np.array(["cat", "dog", "cat"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.class_names == ("cat", "dog") and ds.y.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("imagenet", "unknown data source 'imagenet'"),
        ("folder:/no/such/dir", "data folder not found: /no/such/dir"),
        ("npz:/no/such/file.npz", "npz file not found: /no/such/file.npz"),
        ("folder:", "names no path"),
    ],
)
def test_bad_source_specs(spec, message):
    with pytest.raises(GanpipeError, match=message):
        load_dataset(spec)


def test_empty_folder(tmp_path):
    with pytest.raises(GanpipeError, match=f"empty data folder: {tmp_path} has no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


def test_class_folder_without_images(tmp_path):
    write_png(tmp_path / "a" / "0.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("nothing here")
    with pytest.raises(GanpipeError, match=r"class folder .*/b has no images"):
        load_dataset(f"folder:{tmp_path}")


def test_unreadable_image_names_the_file(image_folder):
    bad = image_folder / "nut" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(GanpipeError, match=r"nut/broken\.png: unreadable image"):
        load_dataset(f"folder:{image_folder}")


def test_truncated_image_names_the_file(image_folder):
    good = image_folder / "bolt" / "00.png"
    write_png(image_folder / "bolt" / "big.png", np.random.default_rng(1).integers(0, 256, (12, 12), dtype=np.uint8))
    data = (image_folder / "bolt" / "big.png").read_bytes()
    (image_folder / "bolt" / "big.png").write_bytes(data[: len(data) // 2])
    assert good.exists()
    with pytest.raises(GanpipeError, match=r"bolt/big\.png: unreadable image"):
        load_dataset(f"folder:{image_folder}")


def test_mixed_sizes_without_declared_size_names_the_odd_files(image_folder):
    write_png(image_folder / "washer" / "odd.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(GanpipeError, match=r"washer/odd\.png: size 20x20 differs from 12x12; .*image size"):
        load_dataset(f"folder:{image_folder}")
    assert load_dataset(f"folder:{image_folder}", image_size=12).x.shape == (16, 1, 12, 12)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((3, 8, 8)), "y": np.array([0, 1, 5])}, "labels out of range: label 5 at index 2"),
        ({"x": np.zeros((3, 8, 8)), "y": np.array([0, -1, 1])}, "negative label -1 at index 1"),
        ({"x": np.full((3, 8, 8), np.nan), "y": np.array([0, 1, 1])}, "contain NaN or infinite values, first at index 0"),
        ({"x": np.zeros((3, 8, 8)), "y": np.array([0.0, np.nan, 1.0])}, "labels contain NaN, first at index 1"),
        ({"x": np.zeros((3, 8, 8))}, r"missing array\(s\) y"),
        ({"x": np.zeros((3, 8, 8)), "y": np.array([0, 1])}, "one label per image"),
        ({"x": np.full((3, 8, 8), 7.5), "y": np.array([0, 1, 1])}, r"float pixel values span \[7.5, 7.5\]"),
        ({"x": np.zeros((3, 8, 8, 5)), "y": np.array([0, 1, 1])}, "cannot find a channel axis"),
    ],
)
def test_bad_npz_contents(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    if "y" in arrays and len(arrays["y"]) == 3 and "5" in message:
        arrays["class_names"] = np.array(["a", "b", "c"])
    np.savez(path, **arrays)
    with pytest.raises(GanpipeError, match=message) as info:
        load_dataset(f"npz:{path}")
    assert str(path) in str(info.value)


def test_npz_that_is_not_an_npz(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_text("hello")
    with pytest.raises(GanpipeError, match="not a readable .npz file"):
        load_dataset(f"npz:{path}")


def test_strict_channels_rejects_colour_but_accepts_grey_stored_as_rgb(tmp_path):
    colour = write_png(tmp_path / "colour.png", np.full((8, 8, 3), [200, 10, 10], np.uint8))
    grey_rgb = write_png(tmp_path / "grey_rgb.png", np.full((8, 8, 3), 77, np.uint8))
    result = read_image_files([colour, grey_rgb], image_size=8, channels=1, strict_channels=True)
    assert result.ok_ids == (str(grey_rgb),)
    assert result.rejected == ((str(colour), "wrong channel count: image has 3, expected 1"),)
    np.testing.assert_allclose(result.x[0, 0], 77 / 255, atol=1e-6)


def test_read_image_files_accounts_for_every_item(tmp_path):
    ok = write_png(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    other = write_png(tmp_path / "other.png", np.zeros((9, 9), np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8garbage")
    missing = tmp_path / "missing.png"
    result = read_image_files([ok, broken, missing, other, ok])
    assert len(result.ok_ids) + len(result.rejected) == 5
    assert result.x.shape == (2, 1, 8, 8)
    reasons = dict(result.rejected)
    assert "unreadable image" in reasons[str(broken)]
    assert reasons[str(missing)] == "file not found"
    assert "size 9x9 differs from 8x8" in reasons[str(other)]


def test_class_index_resolves_names_and_rejects_unknown(image_folder):
    ds = load_dataset(f"folder:{image_folder}")
    assert ds.class_index("nut") == 1
    assert ds.class_index(2) == 2
    with pytest.raises(GanpipeError, match="unknown class 'screw'.*known classes: bolt, nut, washer"):
        ds.class_index("screw")
