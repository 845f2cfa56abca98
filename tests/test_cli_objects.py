"""Objects on the command line: instances, tables, overlays, object size and regions of interest.

A network with no weights that calls every pixel brighter than half the image's range
foreground (``Bright``) stands in for a trained model, so that where objects are — and so
what every file must hold — is known exactly.
"""

from __future__ import annotations

import csv
import json
import re

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from napari_attnseg import zoo
from napari_attnseg.cli import main
from napari_attnseg.cli._common import OUTLINE_COLOURS, ROI_COLOUR, overlay
from napari_attnseg.models import ModelCard, SegmentationModel
from napari_attnseg.objects import SHAPE_COLUMNS

#: disc centres (row, column) of the test image, radius 15: 30 px across
CENTRES = ((40, 40), (40, 100), (40, 160), (150, 60), (140, 140), (100, 100))
RADIUS = 15


class Bright(SegmentationModel):
    """Foreground = brighter than half the image's range (min-max input > 0.5), at any scale."""

    size_multiple = 1

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(in_channels, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x.mean(dim=1, keepdim=True) - 0.5)


def discs(size=200, centres=CENTRES, radius=RADIUS) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 20, np.uint8)
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 200
    return image


@pytest.fixture
def bright(monkeypatch):
    """``bright(**card)``: make ``--model bright`` load a ``Bright`` network with that card."""

    def use(in_channels: int = 1, **card) -> Bright:
        net = Bright(in_channels).eval()
        net.card = ModelCard(name="bright", normalization={"mode": "minmax"}, **card)
        monkeypatch.setattr(zoo, "load", lambda spec, device="cpu": net)
        return net

    return use


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "img.tif", discs())
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def predict(capsys, images, out, *extra):
    return run(
        capsys, "predict", "--model", "bright", images, "--out", out, "--device", "cpu", *extra
    )


def centre_ids(labels: np.ndarray) -> list[int]:
    return [int(labels[cy, cx]) for cy, cx in CENTRES]


# -- instances and tables ------------------------------------------------------------------------
def test_instances_table_and_overlay(bright, images, tmp_path, capsys):
    bright()
    out = tmp_path / "out"
    code, stdout, _ = predict(capsys, images, out, "--instances", "--table", "--overlay")
    assert code == 0 and "(6 objects)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["img.csv", "img.tif", "img_overlay.png"]

    labels = tifffile.imread(out / "img.tif")
    assert labels.shape == (200, 200)
    assert sorted(centre_ids(labels)) == [1, 2, 3, 4, 5, 6]  # one id per disc, 1..N
    assert np.array_equal(labels > 0, discs() > 100)

    with open(out / "img.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [*SHAPE_COLUMNS, "mean_intensity", "min_intensity", "max_intensity"]
    assert list(rows[0]) == columns and len(rows) == 6
    for row in rows:
        object_ = labels == int(row["label"])
        assert int(row["area"]) == object_.sum()
        cy, cx = float(row["centroid_y"]), float(row["centroid_x"])
        assert labels[round(cy), round(cx)] == int(row["label"])
        assert float(row["equivalent_diameter"]) == pytest.approx(2 * RADIUS, abs=1)
        assert float(row["mean_intensity"]) == 200.0

    picture = iio.imread(out / "img_overlay.png")
    assert picture.shape == (200, 200, 3) and picture.dtype == np.uint8
    yellow = np.all(picture == OUTLINE_COLOURS[0], axis=-1)
    assert yellow[40, 40 + RADIUS] and not yellow[40, 40] and not yellow[0, 0]
    assert not yellow[labels == 0].any()  # instance outlines run along each object's own rim
    assert tuple(picture[40, 40]) == (255, 255, 255) and tuple(picture[0, 0]) == (0, 0, 0)


def test_a_card_that_makes_instances_still_writes_masks_unless_asked(
    bright, images, tmp_path, capsys
):
    bright(instances={"method": "watershed"})
    code, stdout, _ = predict(capsys, images, tmp_path / "masks")
    assert code == 0 and "objects" not in stdout
    mask = tifffile.imread(tmp_path / "masks" / "img.tif")
    assert set(np.unique(mask)) == {0, 1}
    assert predict(capsys, images, tmp_path / "objects", "--instances")[0] == 0
    assert tifffile.imread(tmp_path / "objects" / "img.tif").max() == 6


def test_table_implies_instances(bright, images, tmp_path, capsys):
    bright()
    assert predict(capsys, images, tmp_path / "out", "--table", "--quiet")[0] == 0
    assert tifffile.imread(tmp_path / "out" / "img.tif").max() == 6
    with open(tmp_path / "out" / "img.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6


def test_table_of_a_colour_image_measures_each_channel(bright, tmp_path, capsys):
    bright(in_channels=3)
    folder = tmp_path / "rgb"
    folder.mkdir()
    grey = discs()
    iio.imwrite(folder / "img.png", np.stack([grey, grey // 2, grey // 4], axis=-1))
    assert predict(capsys, folder, tmp_path / "out", "--table", "--overlay")[0] == 0
    with open(tmp_path / "out" / "img.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert [float(rows[0][f"mean_intensity_{c}"]) for c in "rgb"] == [200.0, 100.0, 50.0]
    assert iio.imread(tmp_path / "out" / "img_overlay.png").shape == (200, 200, 3)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def stack(tmp_path):
    """A (3, H, W) stack: six discs in plane 0, two of them going on through planes 1 and 2."""
    folder = tmp_path / "stack"
    folder.mkdir()
    planes = [discs(), discs(centres=CENTRES[:2]), discs(centres=CENTRES[:2])]
    tifffile.imwrite(folder / "zs.tif", np.stack(planes), photometric="minisblack")
    return folder


def test_a_stack_s_objects_are_linked_across_planes_by_default(bright, stack, tmp_path, capsys):
    bright()
    code, stdout, _ = predict(capsys, stack, tmp_path / "out", "--table", "--overlay")
    assert code == 0 and "(6 objects)" in stdout  # not 6 + 2 + 2 plane by plane
    labels = tifffile.imread(tmp_path / "out" / "zs.tif")
    assert labels.shape == (3, 200, 200) and labels.max() == 6
    for cy, cx in CENTRES[:2]:
        assert labels[0, cy, cx] == labels[1, cy, cx] == labels[2, cy, cx] > 0
    rows = read_rows(tmp_path / "out" / "zs.csv")
    assert len(rows) == 6 and list(rows[0])[:2] == ["label", "z"]
    extent = {(int(r["z_min"]), int(r["z_max"]), int(r["volume"]) // int(r["area"])) for r in rows}
    assert extent == {(0, 2, 3), (0, 0, 1)}  # two discs through 3 planes, four in one
    assert sum(int(r["z_max"]) == 2 for r in rows) == 2
    assert iio.imread(tmp_path / "out" / "zs_overlay.png").shape == (200, 200, 3)


@pytest.mark.parametrize("off", [["--stitch", "0"], ["--no-stitch"]])
def test_stitch_0_counts_a_stack_s_objects_plane_by_plane(bright, stack, tmp_path, capsys, off):
    bright()
    code, stdout, _ = predict(capsys, stack, tmp_path / "out", "--table", *off)
    assert code == 0 and "(10 objects)" in stdout
    assert tifffile.imread(tmp_path / "out" / "zs.tif").max() == 10
    rows = read_rows(tmp_path / "out" / "zs.csv")
    assert [int(r["z"]) for r in rows] == [0] * 6 + [1] * 2 + [2] * 2
    assert all(r["z_min"] == r["z_max"] == r["z"] and r["volume"] == r["area"] for r in rows)


def test_stitch_threshold_reaches_the_settings_and_is_checked(bright, stack, tmp_path, capsys):
    from napari_attnseg.cli import build_parser
    from napari_attnseg.cli._common import inference_settings

    def settings(*extra):
        argv = ["predict", "--model", "m", "x.tif", "--out", "o", *extra]
        return inference_settings(build_parser().parse_args(argv)).stitch

    assert settings() == 0.25 and settings("--stitch", "0.6") == 0.6
    assert settings("--stitch", "0") is None and settings("--no-stitch") is None
    bright()
    with pytest.raises(SystemExit):
        predict(capsys, stack, tmp_path / "out", "--instances", "--stitch", "1")
    assert "--stitch: must be at least 0 and below 1" in capsys.readouterr().err
    # without instances there is nothing to link: said, not silently dropped
    code, _, stderr = predict(capsys, stack, tmp_path / "masks", "--stitch", "0.5", "--quiet")
    assert code == 0 and "note: --stitch is ignored" in stderr
    assert tifffile.imread(tmp_path / "masks" / "zs.tif").max() == 1


def test_a_mask_overlay_outlines_the_mask_outside_it(bright, images, tmp_path, capsys):
    bright()
    assert predict(capsys, images, tmp_path / "out", "--overlay", "--quiet")[0] == 0
    mask = tifffile.imread(tmp_path / "out" / "img.tif")
    picture = iio.imread(tmp_path / "out" / "img_overlay.png")
    yellow = np.all(picture == OUTLINE_COLOURS[0], axis=-1)
    assert yellow.any() and not yellow[mask > 0].any()  # drawn around the mask, not on it


# -- object size ----------------------------------------------------------------------------------
def test_auto_diameter_note(bright, images, tmp_path, capsys):
    bright(object_diameter=10.0)
    code, _, err = predict(capsys, images, tmp_path / "out", "--quiet")
    assert code == 0
    notes = [
        line for line in err.splitlines() if line.startswith("note: img.tif: objects ~")
    ]
    assert len(notes) == 1 and "resampled ×0.3" in notes[0], err
    found, truth = tifffile.imread(tmp_path / "out" / "img.tif") > 0, discs() > 100
    assert (found & truth).sum() / (found | truth).sum() > 0.9  # mapped back onto the image


def test_given_diameter_note_and_none(bright, images, tmp_path, capsys):
    bright(object_diameter=10.0)
    code, _, err = predict(capsys, images, tmp_path / "a", "--quiet", "--diameter", "20")
    assert code == 0
    assert "note: img.tif: objects taken as 20 px across: image resampled ×0.50" in err
    code, _, err = predict(capsys, images, tmp_path / "b", "--quiet", "--diameter", "none")
    assert code == 0 and "resampled" not in err


def test_diameter_for_a_model_without_an_object_size_is_ignored_with_a_note(
    bright, images, tmp_path, capsys
):
    bright()
    code, _, err = predict(capsys, images, tmp_path / "out", "--quiet", "--diameter", "20")
    assert code == 0 and "note: --diameter is ignored: bright records no object size" in err


# -- regions of interest --------------------------------------------------------------------------
def test_roi_file_limits_every_input(bright, images, tmp_path, capsys):
    bright()
    tifffile.imwrite(images / "two.tif", discs())
    roi = np.zeros((200, 200), np.uint8)
    roi[:, :120] = 255
    tifffile.imwrite(tmp_path / "roi.tif", roi)
    code, _, _ = predict(
        capsys, images, tmp_path / "out", "--roi", tmp_path / "roi.tif", "--overlay", "--quiet"
    )
    assert code == 0
    for stem in ("img", "two"):
        mask = tifffile.imread(tmp_path / "out" / f"{stem}.tif")
        assert not mask[:, 120:].any()  # nothing outside
        assert np.array_equal(mask[:, :120] > 0, discs()[:, :120] > 100)  # everything inside
    picture = iio.imread(tmp_path / "out" / "img_overlay.png")
    assert np.all(picture[:, 119] == ROI_COLOUR)  # the region's edge is drawn


def test_roi_folder_pairs_masks_by_stem(bright, images, tmp_path, capsys):
    bright()
    tifffile.imwrite(images / "two.tif", discs())
    rois = tmp_path / "rois"
    rois.mkdir()
    left, top = np.zeros((200, 200), np.uint8), np.zeros((200, 200), np.uint8)
    left[:, :70], top[:70] = 1, 1
    tifffile.imwrite(rois / "img_roi.tif", left)
    iio.imwrite(rois / "two.png", top * 255)
    assert predict(capsys, images, tmp_path / "out", "--roi", rois, "--quiet")[0] == 0
    img = tifffile.imread(tmp_path / "out" / "img.tif")
    two = tifffile.imread(tmp_path / "out" / "two.tif")
    assert np.array_equal(img > 0, (discs() > 100) & (left > 0))
    assert np.array_equal(two > 0, (discs() > 100) & (top > 0))


def fundus_like() -> np.ndarray:
    """A grey disc (the field of view) holding two bright blobs, and bright blobs in two corners."""
    yy, xx = np.mgrid[:160, :160]
    image = np.zeros((160, 160), np.uint8)
    image[(yy - 80) ** 2 + (xx - 80) ** 2 <= 70**2] = 90
    for cy, cx in ((60, 60), (100, 100), (6, 6), (153, 153)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 5**2] = 255
    return image


def test_roi_auto_uses_the_card_s_field_of_view_and_none_the_whole_image(bright, tmp_path, capsys):
    bright(roi={"method": "fundus"})
    folder = tmp_path / "fundus"
    folder.mkdir()
    tifffile.imwrite(folder / "eye.tif", fundus_like())
    assert predict(capsys, folder, tmp_path / "auto", "--quiet")[0] == 0
    assert predict(capsys, folder, tmp_path / "none", "--quiet", "--roi", "none")[0] == 0
    auto = tifffile.imread(tmp_path / "auto" / "eye.tif")
    whole = tifffile.imread(tmp_path / "none" / "eye.tif")
    assert auto[60, 60] and auto[100, 100] and not auto[6, 6] and not auto[153, 153]
    assert whole[6, 6] and whole[153, 153]


# -- evaluate ------------------------------------------------------------------------------------
@pytest.fixture
def scored(tmp_path):
    """Three disc images with instance masks (one id per disc) and binary masks."""
    folders = {name: tmp_path / name for name in ("images", "instances", "binary")}
    for folder in folders.values():
        folder.mkdir()
    yy, xx = np.mgrid[:200, :200]
    for i in range(3):
        centres = CENTRES[: 4 + i]
        tifffile.imwrite(folders["images"] / f"img{i}.tif", discs(centres=centres))
        labels = np.zeros((200, 200), np.uint16)
        for n, (cy, cx) in enumerate(centres, start=1):
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS**2] = n
        tifffile.imwrite(folders["instances"] / f"img{i}.tif", labels)
        tifffile.imwrite(folders["binary"] / f"img{i}.tif", (labels > 0).astype(np.uint8) * 255)
    return folders


def evaluate(capsys, scored, masks, *extra):
    return run(
        capsys, "evaluate", "--model", "bright", "--images", scored["images"], "--masks",
        scored[masks], "--device", "cpu", "--quiet", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("masks", ["instances", "binary"])
def test_evaluate_instances(bright, scored, tmp_path, capsys, masks):
    bright()
    report, saved = tmp_path / "report.json", tmp_path / "saved"
    code, stdout, _ = evaluate(
        capsys, scored, masks, "--instances", "--json", report, "--save-predictions", saved
    )
    assert code == 0
    result = json.loads(report.read_text())
    assert {"mean", "pooled", "per_image"} <= set(result) and result["mean"]["dice"] == 1.0
    objects = result["instances"]
    keys = {"ap50", "ap75", "mean_ap", "precision", "recall", "f1", "sq", "rq", "pq"}
    assert keys <= set(objects["mean"]) and keys <= set(objects["pooled"])
    assert objects["mean"]["ap50"] == 1.0 and objects["mean"]["pq"] == 1.0
    assert [m["n_true"] for m in objects["per_image"]] == [4, 5, 6]
    assert "mean_ap" in stdout and "ap50" in stdout  # the instance table is printed
    assert [tifffile.imread(saved / f"img{i}.tif").max() for i in range(3)] == [4, 5, 6]


def test_evaluate_without_instances_has_no_instance_metrics(bright, scored, tmp_path, capsys):
    bright(instances={"method": "watershed"})
    report = tmp_path / "report.json"
    assert evaluate(capsys, scored, "binary", "--json", report)[0] == 0
    assert "instances" not in json.loads(report.read_text())


def test_evaluate_diameter_and_roi(bright, scored, tmp_path, capsys):
    bright(object_diameter=10.0)
    code, _, err = evaluate(capsys, scored, "binary")
    assert code == 0 and re.search(
        r"note: img0: object size not measured \(only \d object\(s\) found\): predicted at "
        r"the trained scale, not resampled", err)
    assert "note: img2: objects ~30 px across (trained on 10 px): image resampled ×0.33" in err
    bright(roi={"method": "fundus"})
    images = tmp_path / "eyes"
    images.mkdir()
    tifffile.imwrite(images / "eye.tif", fundus_like())
    truth = tmp_path / "truth"
    truth.mkdir()
    tifffile.imwrite(truth / "eye.tif", (fundus_like() == 255).astype(np.uint8))
    scores = {}
    for roi in ("auto", "none"):
        report = tmp_path / f"{roi}.json"
        code, _, _ = run(
            capsys, "evaluate", "--model", "bright", "--images", images, "--masks", truth,
            "--roi", roi, "--json", report, "--quiet", "--device", "cpu",
        )  # fmt: skip
        assert code == 0
        scores[roi] = json.loads(report.read_text())["mean"]["sensitivity"]
    assert scores == {"auto": 0.5, "none": 1.0}  # the corner blobs lie outside the eye


# -- the overlay picture ---------------------------------------------------------------------------
def test_overlay_stretches_contrast_and_colours_classes():
    image = np.linspace(1000, 2000, 40 * 50, dtype=np.float32).reshape(40, 50)
    labels = np.zeros((40, 50), np.uint8)
    labels[5:15, 5:15], labels[20:30, 20:30] = 1, 2
    picture = overlay(image, labels)
    assert picture.shape == (40, 50, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 0]) == (0, 0, 0) and tuple(picture[-1, -1]) == (255, 255, 255)
    assert (
        tuple(picture[4, 10]) == OUTLINE_COLOURS[0] and tuple(picture[19, 25]) == OUTLINE_COLOURS[1]
    )


def test_overlay_of_a_stack_and_of_channels_first():
    stack = np.zeros((3, 30, 30), np.uint8)
    labels = np.zeros((3, 30, 30), np.uint8)
    labels[1, 10:20, 10:20] = 1  # only the middle plane has an object
    assert np.all(overlay(stack, labels)[9, 15] == OUTLINE_COLOURS[0])
    two_channels = np.zeros((2, 30, 30), np.uint8)
    two_channels[0, :, 15:] = 100  # the first channel is shown
    picture = overlay(two_channels, labels[0], channel_axis=0)
    assert picture.shape == (30, 30, 3) and picture[0, 20, 0] == 255 and picture[0, 5, 0] == 0


def test_demo_writes_the_mask_and_an_overlay_of_the_objects(bright, tmp_path, capsys):
    from napari_attnseg._sample_data import load_sample

    bright(instances={"method": "watershed"})
    code, stdout, _ = run(capsys, "demo", "--model", "bright", "--out", tmp_path, "--device", "cpu")
    assert code == 0 and "nuclei found (outlined in the overlay)" in stdout
    assert "objects: AP@0.5 " in stdout  # the bundled truth has one id per nucleus
    image, truth = load_sample("nuclei")
    assert truth.dtype == np.uint16 and len(np.unique(truth)) > 100
    mask = tifffile.imread(tmp_path / "nuclei_mask.tif")
    picture = iio.imread(tmp_path / "nuclei_overlay.png")
    assert set(np.unique(mask)) == {0, 1} and picture.shape == (*image.shape[:2], 3)
    assert np.all(picture == OUTLINE_COLOURS[0], axis=-1).any()
