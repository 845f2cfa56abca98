"""Per-object tables and their CSV."""

import csv
import math

import numpy as np
import pytest

from napari_attnseg.objects import SHAPE_COLUMNS, STACK_COLUMNS, object_table, write_table_csv

LABELS = np.zeros((20, 30), np.uint32)
LABELS[2:6, 3:11] = 5  # a 4 × 8 rectangle
LABELS[10:17, 20:27] = 2  # a 7 × 7 square


def test_shape_columns():
    table = object_table(LABELS)
    assert tuple(table) == SHAPE_COLUMNS
    assert table["label"].tolist() == [2, 5]  # increasing label order
    assert table["area"].tolist() == [49, 32]
    assert table["centroid_y"].tolist() == [13.0, 3.5]
    assert table["centroid_x"].tolist() == [23.0, 6.5]
    diameters = np.sqrt(4 * np.array([49, 32]) / np.pi)
    np.testing.assert_allclose(table["equivalent_diameter"], diameters)
    assert table["bbox_min_y"].tolist() == [10, 2] and table["bbox_max_x"].tolist() == [27, 11]
    assert table["eccentricity"][0] == pytest.approx(0.0, abs=1e-9)  # a square
    assert table["eccentricity"][1] > 0.8  # a 1:2 rectangle
    assert table["solidity"].tolist() == [1.0, 1.0]
    assert all(table[k].dtype == np.int64 for k in ("label", "area", "bbox_min_y"))


def test_grey_and_rgb_intensities():
    grey = np.zeros(LABELS.shape, np.float32)
    grey[LABELS == 5] = 2.0
    grey[12, 22] = 9.0
    table = object_table(LABELS, grey)
    assert table["mean_intensity"].tolist() == pytest.approx([9 / 49, 2.0])
    assert table["max_intensity"].tolist() == [9.0, 2.0]
    assert table["min_intensity"].tolist() == [0.0, 2.0]
    rgba = np.zeros((*LABELS.shape, 4), np.uint8)
    rgba[..., 1] = 100  # green everywhere
    rgba[LABELS == 2, 0] = 50
    rgba[..., 3] = 255  # alpha is ignored
    table = object_table(LABELS, rgba)
    assert [c for c in table if "intensity" in c] == [
        f"{s}_intensity_{c}" for s in ("mean", "min", "max") for c in "rgb"
    ]
    assert table["mean_intensity_r"].tolist() == [50, 0]
    assert table["mean_intensity_g"].tolist() == [100, 100]
    with pytest.raises(ValueError, match="does not match"):
        object_table(LABELS, grey[:5])


def test_a_stack_gets_a_z_column():
    stack = np.stack([LABELS, np.zeros_like(LABELS), np.where(LABELS == 2, 7, 0)])
    table = object_table(stack, np.ones(stack.shape))
    assert list(table)[:3] == ["label", "z", "area"]
    assert table["label"].tolist() == [2, 5, 7] and table["z"].tolist() == [0, 0, 2]
    assert table["mean_intensity"].tolist() == [1.0, 1.0, 1.0]


def test_no_objects_gives_columns_without_rows(tmp_path):
    table = object_table(np.zeros((8, 8), np.uint8), np.zeros((8, 8)))
    assert "mean_intensity" in table and all(len(v) == 0 for v in table.values())
    path = write_table_csv(tmp_path / "empty.csv", table)
    rows = list(csv.reader(path.open()))
    assert rows == [list(table)]


def test_masks_are_refused():
    with pytest.raises(ValueError, match="instance labels"):
        object_table(LABELS > 0)


def test_csv_round_trip(tmp_path):
    table = object_table(LABELS, np.random.default_rng(0).random(LABELS.shape))
    table["note"] = np.array([math.nan, 1.5])
    path = write_table_csv(tmp_path / "objects.csv", table)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and list(rows[0]) == list(table)
    assert rows[0]["label"] == "2" and rows[1]["area"] == "32"
    assert float(rows[1]["mean_intensity"]) == table["mean_intensity"][1]  # exact
    assert rows[0]["note"] == ""
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]  # no temporary left


def test_csv_refuses_ragged_columns_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "objects.csv"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="same length"):
        write_table_csv(path, {"a": np.arange(2), "b": np.arange(3)})
    assert path.read_text() == "old\n"


def test_equals_regionprops_table_on_random_objects():
    from skimage.measure import regionprops_table

    rng = np.random.default_rng(1)
    labels = np.zeros((48, 64), np.int64)
    for _ in range(25):  # overlapping rectangles with sparse, repeated ids: odd shapes
        y, x = rng.integers(0, 44), rng.integers(0, 60)
        h, w = rng.integers(1, 12, size=2)
        labels[y : y + h, x : x + w] = rng.integers(1, 10**6)
    image = rng.random((48, 64, 3))
    table = object_table(labels, image)
    names = {
        "label": "label",
        "area": "area",
        "centroid_y": "centroid-0",
        "centroid_x": "centroid-1",
        "equivalent_diameter": "equivalent_diameter_area",
        "perimeter": "perimeter",
        "eccentricity": "eccentricity",
        "solidity": "solidity",
        "bbox_min_y": "bbox-0",
        "bbox_max_x": "bbox-3",
        "mean_intensity_g": "intensity_mean-1",
        "min_intensity_b": "intensity_min-2",
        "max_intensity_r": "intensity_max-0",
    }
    properties = (
        "label",
        "area",
        "centroid",
        "equivalent_diameter_area",
        "perimeter",
        "eccentricity",
        "solidity",
        "bbox",
        "intensity_mean",
        "intensity_min",
        "intensity_max",
    )
    expected = regionprops_table(labels, intensity_image=image, properties=properties)
    for ours, theirs in names.items():
        np.testing.assert_allclose(table[ours], expected[theirs], atol=1e-9, err_msg=ours)


def test_a_stack_gets_one_row_per_object_with_its_z_extent_and_volume(tmp_path):
    """An id that spans planes (objects linked across planes) is one row: the in-plane
    columns measure its largest section (plane ``z``), z_min/z_max/volume its extent."""
    stack = np.zeros((4, 20, 30), np.uint32)
    stack[0, 2:4, 3:7] = 1  # 8 px
    stack[1, 2:6, 3:11] = 1  # 32 px: the largest section
    stack[2, 2:5, 3:9] = 1  # 18 px
    stack[2, 10:17, 20:27] = 2  # one plane only, 49 px
    stack[3, 10:13, 20:23] = 3  # 9 px
    stack[1, 15:18, 1:3] = 3  # id 3 again in plane 1, not next to plane 3: still one object
    image = np.arange(stack.size, dtype=np.float64).reshape(stack.shape)
    table = object_table(stack, image)
    assert list(table) == [
        "label", "z", *SHAPE_COLUMNS[1:], *STACK_COLUMNS,
        "mean_intensity", "min_intensity", "max_intensity",
    ]
    assert table["label"].tolist() == [1, 2, 3]  # rows = 3-D objects
    assert table["z"].tolist() == [1, 2, 3]
    assert table["area"].tolist() == [32, 49, 9]
    assert table["bbox_max_x"].tolist() == [11, 27, 23]  # of the largest section
    assert table["z_min"].tolist() == [0, 2, 1] and table["z_max"].tolist() == [2, 2, 3]
    assert table["volume"].tolist() == [8 + 32 + 18, 49, 9 + 6]
    for row, label in enumerate([1, 2, 3]):  # intensities over every voxel of the object
        voxels = image[stack == label]
        assert table["mean_intensity"][row] == pytest.approx(voxels.mean())
        assert table["min_intensity"][row] == voxels.min()
        assert table["max_intensity"][row] == voxels.max()
    assert all(table[k].dtype == np.int64 for k in STACK_COLUMNS)
    path = write_table_csv(tmp_path / "stack.csv", table)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 3 and rows[0]["z_min"] == "0" and rows[0]["volume"] == "58"


def test_a_stack_without_objects_has_the_stack_columns():
    table = object_table(np.zeros((3, 8, 8), np.uint8))
    assert list(table) == ["label", "z", *SHAPE_COLUMNS[1:], *STACK_COLUMNS]
    assert all(len(v) == 0 for v in table.values())
