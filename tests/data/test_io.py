"""Reading and writing images and masks: round trips through TIFF and PNG."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_attnseg.data import layout_of, read_image, read_mask, write_image, write_mask

rng = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("suffix", "array"),
    [
        (".png", rng.integers(0, 256, (20, 30), dtype=np.uint8)),
        (".png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
        (".png", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)),
        (".png", rng.integers(0, 65536, (20, 30), dtype=np.uint16)),
        (".tif", rng.integers(0, 65536, (20, 30), dtype=np.uint16)),
        (".tif", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
        (".tif", rng.random((20, 30)).astype(np.float32)),
        (".tiff", rng.random((20, 30, 3)).astype(np.float32)),
    ],
)
def test_image_round_trip(tmp_path, suffix, array):
    path = write_image(tmp_path / f"image{suffix}", array)
    back = read_image(path)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_read_image_jpeg_and_bmp(tmp_path):
    array = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "photo.jpg")
    Image.fromarray(array).save(tmp_path / "photo.bmp")
    assert read_image(tmp_path / "photo.jpg").shape == (16, 24, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "photo.bmp"), array)


def test_planar_rgb_tiff_becomes_channels_last(tmp_path):
    planar = rng.integers(0, 256, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), np.moveaxis(planar, 0, -1))


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*unsupported"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    tifffile.imwrite(tmp_path / "5d.tif", np.zeros((2, 3, 5, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"5d.tif.*\(2, 3, 5, 8, 8\)"):
        read_image(tmp_path / "5d.tif")


def test_stacks_are_read_and_label_stacks_written(tmp_path):
    grey = rng.integers(0, 256, (5, 8, 10), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    assert layout_of(read_image(tmp_path / "grey.tif").shape).stack_shape == (5,)
    np.testing.assert_array_equal(read_image(tmp_path / "grey.tif"), grey)
    rgb = rng.integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "rgb.tif", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), rgb)
    labels = rng.integers(0, 3, (3, 8, 3))  # a last axis of 3 must not turn into colour
    write_mask(tmp_path / "labels.tif", labels)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"), labels)
    with pytest.raises(ValueError, match="only be written as TIFF"):
        write_mask(tmp_path / "labels.png", labels)


def test_binary_mask_any_nonzero_is_foreground(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 255
    mask[8, 8] = 7
    Image.fromarray(mask).save(tmp_path / "mask.png")
    binary = read_mask(tmp_path / "mask.png")
    assert binary.dtype == np.uint8
    np.testing.assert_array_equal(binary, (mask > 0).astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png", binary=False), mask)


def test_label_mask_round_trip_and_palette_png(tmp_path):
    labels = rng.integers(0, 5, (10, 12)).astype(np.int64)
    write_mask(tmp_path / "labels.tif", labels)
    back = read_mask(tmp_path / "labels.tif", binary=False)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)

    palette = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * 753)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "palette.png", binary=False), labels)


def test_large_labels_keep_their_values(tmp_path):
    labels = np.array([[0, 300], [70000, 2]], dtype=np.int64)
    write_mask(tmp_path / "big.tif", labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "big.tif", binary=False), labels)


def test_rgb_mask_with_equal_channels_is_accepted_else_rejected(tmp_path):
    grey = np.zeros((6, 6), np.uint8)
    grey[1:3, 1:3] = 255
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png"), grey > 0)
    colour = rgba.copy()
    colour[0, 0, 0] = 200
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="colour.png.*channels differ"):
        read_mask(tmp_path / "colour.png")


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    write_mask(tmp_path / "mask.tif", np.ones((4, 4), np.uint8))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", fail)
    with pytest.raises(OSError, match="disk full"):
        write_mask(tmp_path / "mask.tif", np.zeros((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.tif"), np.ones((4, 4)))


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        write_mask(tmp_path / "m.tif", np.zeros((2, 2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="whole numbers"):
        write_mask(tmp_path / "m.tif", np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="PNG"):
        write_image(tmp_path / "p.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="can only write"):
        write_image(tmp_path / "p.jpg", np.zeros((4, 4), np.uint8))
