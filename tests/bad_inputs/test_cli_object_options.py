"""Bad values of the object options (``--diameter``, ``--roi``, ``--instances``, ``--table``,
``--overlay``): one error line, nothing written or changed."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_attnseg.models import save_model

from .conftest import one_error_line, tiny_model
from .snapshot import Unchanged


def predict_args(work, *extra, inputs=None):
    inputs = inputs if inputs is not None else (work / "images",)
    return ("predict", "--model", work / "tiny", *inputs, "--out", work / "out", "--quiet", *extra)


EXPECTED = "expected auto, none or a number of pixels above 0,"


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", f"argument --diameter: {EXPECTED} got '0'"),
        ("-4", f"argument --diameter: {EXPECTED} got '-4'"),
        ("nan", f"argument --diameter: {EXPECTED} got 'nan'"),
        ("inf", f"argument --diameter: {EXPECTED} got 'inf'"),
        ("abc", f"argument --diameter: {EXPECTED} got 'abc'"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_bad_diameters_are_refused(work, cli, command, value, message):
    if command == "predict":
        args = predict_args(work, "--diameter", value)
    else:
        args = ("evaluate", "--model", work / "tiny", "--images", work / "images", "--masks",
                work / "masks", "--diameter", value)  # fmt: skip
    with Unchanged(work):
        code, _, err = cli(*args)
    assert code == 2 and message in one_error_line(err, command)


def test_a_missing_roi_is_named(work, cli):
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "--roi", work / "missing.tif"))
    line = one_error_line(err, "predict")
    assert code == 1 and f"--roi {work / 'missing.tif'}: no such file or folder" in line


def test_an_roi_of_the_wrong_size_writes_nothing(work, cli):
    tifffile.imwrite(work / "roi.tif", np.ones((10, 12), np.uint8))
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "--roi", work / "roi.tif"))
    line = one_error_line(err, "predict")
    assert code == 1 and "nothing written: 3 of 3 inputs cannot be segmented" in line
    assert f"the region of interest {work / 'roi.tif'} is 10×12 but the image is 40×48" in line
    assert not (work / "out").exists()


def test_an_roi_folder_must_hold_one_mask_per_input(work, cli):
    (work / "rois").mkdir()
    tifffile.imwrite(work / "rois" / "img1.tif", np.ones((40, 48), np.uint8))
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "--roi", work / "rois"))
    line = one_error_line(err, "predict")
    assert code == 1 and "2 of 3 input(s) have no region-of-interest mask" in line
    assert "img0.tif, img2.tif" in line


def test_an_unreadable_roi_is_named(work, cli):
    (work / "roi.tif").write_bytes(b"not a tiff")
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "--roi", work / "roi.tif"))
    assert code == 1 and "roi.tif" in one_error_line(err, "predict")


def test_evaluate_roi_takes_auto_or_none_only(work, cli):
    with Unchanged(work):
        code, _, err = cli(
            "evaluate", "--model", work / "tiny", "--images", work / "images", "--masks",
            work / "masks", "--roi", work / "masks",
        )  # fmt: skip
    assert code == 2 and "argument --roi: invalid choice" in one_error_line(err, "evaluate")


@pytest.mark.parametrize("flag", ["--instances", "--table"])
def test_instances_need_a_binary_model(work, cli, flag):
    save_model(tiny_model(n_classes=3), work / "three")
    with Unchanged(work):
        code, _, err = cli(
            "predict", "--model", work / "three", work / "images", "--out", work / "out", flag
        )
    line = one_error_line(err, "predict")
    assert code == 1 and "needs a binary (foreground/background) model" in line
    assert "has 3 classes" in line and flag in line
    with Unchanged(work):
        code, _, err = cli(
            "evaluate", "--model", work / "three", "--images", work / "images", "--masks",
            work / "masks", "--instances", "--json", work / "report.json",
        )  # fmt: skip
    assert code == 1 and "--instances needs a binary" in one_error_line(err, "evaluate")


def test_new_outputs_never_land_on_an_input(work, cli):
    """An ROI mask is an input; so is an image named like another input's overlay."""
    (work / "out").mkdir()
    tifffile.imwrite(work / "out" / "img0.tif", np.ones((40, 48), np.uint8))
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "--roi", work / "out" / "img0.tif"))
    line = one_error_line(err, "predict")
    assert code == 1 and "refusing to overwrite" in line and "img0.tif is an input" in line
    tifffile.imwrite(work / "out" / "img1_overlay.png", np.zeros((40, 48), np.uint8))
    with Unchanged(work):
        code, _, err = cli(
            "predict", "--model", work / "tiny", work / "images" / "img1.tif",
            work / "out" / "img1_overlay.png", "--out", work / "out", "--overlay",
        )  # fmt: skip
    assert code == 1 and "img1_overlay.png is an input" in one_error_line(err, "predict")


def test_overlay_and_table_are_written_beside_the_masks(work, cli):
    with Unchanged(work, allow=("out/", "out/img0.tif", "out/img0.csv", "out/img0_overlay.png")):
        code, _, err = cli(
            *predict_args(work, "--table", "--overlay", inputs=(work / "images" / "img0.tif",))
        )
    assert code == 0, err
