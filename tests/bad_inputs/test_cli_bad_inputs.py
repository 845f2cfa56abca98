"""Bad inputs through the ``attnseg`` command line: one error line, nothing written or changed.

Each case asserts the message (or the correct result) and, with
:class:`~tests.bad_inputs.snapshot.Unchanged`, that no file was added, removed
or modified except the command's declared outputs.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_attnseg import zoo
from napari_attnseg.cli import main
from napari_attnseg.data.io import read_mask
from napari_attnseg.models import load_model, save_model

from .conftest import disc_image, files, garbage, one_error_line, tiny_model
from .snapshot import Unchanged


def predict_args(work, *inputs, out=None, extra=()):
    out = out if out is not None else work / "out"
    return ("predict", "--model", work / "tiny", *inputs, "--out", out, "--quiet", *extra)


# -- outputs never land on inputs -----------------------------------------------------------------
def test_predict_refuses_to_replace_an_input_with_its_mask(work, cli):
    image = work / "images" / "img0.tif"
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, image, out=work / "images"))
    assert code == 1
    assert "refusing to overwrite" in one_error_line(err, "predict") and "img0.tif" in err


def test_predict_refuses_an_output_that_reaches_an_input_through_other_spellings(
    work, cli, monkeypatch
):
    monkeypatch.chdir(work)
    os.symlink(work / "images", work / "link")
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, "images/img1.tif", out="link/../link"))
    assert code == 1 and "img1.tif" in one_error_line(err, "predict")


def test_same_stem_inputs_are_refused_with_a_list(work, cli):
    for sub in ("a", "b"):
        (work / sub).mkdir()
        Image.fromarray(disc_image()[0]).save(work / sub / "x.png")
    Image.fromarray(disc_image()[0]).save(work / "a" / "y.png")
    tifffile.imwrite(work / "a" / "y.tif", disc_image()[0])
    for inputs in ((work / "a" / "x.png", work / "b" / "x.png"), (work / "a",)):
        with Unchanged(work):
            code, _, err = cli(*predict_args(work, *inputs))
        line = one_error_line(err, "predict")
        assert code == 1 and "share a file name stem" in line
    assert "y.png" in line and "y.tif" in line


def test_evaluate_refuses_to_save_predictions_over_its_masks(work, cli):
    with Unchanged(work):
        code, _, err = cli(
            "evaluate", "--model", work / "tiny", "--images", work / "images",
            "--masks", work / "masks", "--save-predictions", work / "masks", "--quiet",
        )  # fmt: skip
    assert code == 1 and "refusing to overwrite" in one_error_line(err, "evaluate")


@pytest.mark.parametrize("command", ["prune", "finetune"])
@pytest.mark.parametrize("out", ["tiny", "tiny.safetensors", "tiny.json"])
def test_model_commands_refuse_to_overwrite_the_model_they_start_from(work, cli, command, out):
    args = [command, "--model", work / "tiny", "--out", work / out]
    if command == "finetune":
        args += ["--images", work / "images", "--masks", work / "masks", "--epochs", "1"]
    with Unchanged(work):
        code, _, err = cli(*args)
    assert code == 1 and "tiny.safetensors" in one_error_line(err, command)


def test_train_refuses_to_write_its_card_over_the_recipe(work, cli):
    recipe = work / "recipe.json"
    recipe.write_text(json.dumps({"arch": "unet", "options": {"width": 4, "depth": 2}}))
    with Unchanged(work):
        code, _, err = cli(
            "train", "--config", recipe, "--images", work / "images", "--masks", work / "masks",
            "--out", work / "recipe", "--epochs", "1",
        )  # fmt: skip
    assert code == 1 and "recipe.json" in one_error_line(err, "train")


# -- every input is checked before anything is written --------------------------------------------
def test_one_bad_input_writes_nothing_and_is_named(work, cli):
    (work / "notes.txt").write_text("not an image")
    (work / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with Unchanged(work):
        code, _, err = cli(
            *predict_args(work, work / "images", work / "notes.txt", work / "broken.png")
        )
    line = one_error_line(err, "predict")
    assert code == 1 and "nothing written" in line
    assert "notes.txt" in line and "broken.png" in line and "img0" not in line


@pytest.mark.parametrize("model", ["no-such-model", "images", "garbage.safetensors"])
def test_failed_predict_creates_no_output_folder(work, cli, model):
    (work / "garbage.safetensors").write_bytes(garbage(256))
    with Unchanged(work):
        code, _, err = cli(
            "predict", "--model", work / model if model != "no-such-model" else model,
            work / "images", "--out", work / "new" / "out", "--quiet",
        )  # fmt: skip
    assert code == 1
    line = one_error_line(err, "predict")
    expected = {"no-such-model": "unknown model", "images": "is a folder", "garbage.safetensors":
                "not a valid safetensors file"}[model]  # fmt: skip
    assert expected in line


def test_failed_evaluate_writes_no_predictions_and_no_report(work, cli):
    tifffile.imwrite(work / "masks" / "img2.tif", np.zeros((8, 8), np.uint8))  # wrong shape
    with Unchanged(work):
        code, _, err = cli(
            "evaluate", "--model", work / "tiny", "--images", work / "images",
            "--masks", work / "masks", "--save-predictions", work / "pred",
            "--json", work / "report.json", "--quiet",
        )  # fmt: skip
    line = one_error_line(err, "evaluate")
    assert code == 1 and "img2" in line and "8×8" in line


def test_predict_out_that_is_a_file_is_refused(work, cli):
    (work / "taken").write_text("x")
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, work / "images", out=work / "taken"))
    assert code == 1 and "is a file" in one_error_line(err, "predict")


# -- one line for every error ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            FloatingPointError("loss is NaN at epoch 3"),
            "FloatingPointError: loss is NaN at epoch 3",
        ),
        (RuntimeError("Expected more than 1 spatial element"), "RuntimeError: Expected more"),
        (KeyError("dice"), "KeyError 'dice' (an internal error; run with --debug"),
        (TypeError("unsupported operand"), "TypeError: unsupported operand"),
        (ZeroDivisionError(), "ZeroDivisionError (run with --debug for the traceback)"),
        (MemoryError(), "out of memory (MemoryError); try a smaller --tile-size"),
        (OSError(19, "No such device", "m.safetensors"), "No such device: m.safetensors"),
        (ValueError("bad\nvalue"), "error: bad value"),
    ],
    ids=lambda e: type(e).__name__ if isinstance(e, BaseException) else "",
)
def test_any_exception_is_one_line_and_debug_shows_the_traceback(
    work, cli, monkeypatch, exc, expected
):
    from napari_attnseg.cli import models

    def boom(args):
        raise exc

    monkeypatch.setattr(models, "run", boom)
    with Unchanged(work):
        code, _, err = cli("models")
    assert code == 1 and expected in one_error_line(err, "models")
    assert err.count("\n") == 1
    with pytest.raises(type(exc)):
        main(["--debug", "models"])
    with pytest.raises(type(exc)):
        main(["models", "--debug"])


def test_ctrl_c_exits_130(cli, monkeypatch):
    from napari_attnseg.cli import models

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "run", interrupted)
    code, _, err = cli("models")
    assert code == 130 and "interrupted" in err


# -- argument ranges ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "2"], "argument --threshold: must be between 0 and 1, got 2"),
        (["--threshold", "-1"], "argument --threshold: must be between 0 and 1, got -1"),
        (["--threshold", "nan"], "argument --threshold: must be between 0 and 1"),
        (["--tile-size", "0"], "argument --tile-size: must be at least 16, got 0"),
        (["--overlap", "1"], "argument --overlap: must be at least 0 and below 1, got 1"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--channel-axis", "x"], "argument --channel-axis: invalid int value"),
    ],
)
def test_inference_options_name_their_allowed_range(work, cli, args, message):
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, work / "images", extra=args))
    assert code == 2 and message in one_error_line(err, "predict")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0", "0"], "argument --size: must be between 1 and 65536, got 0"),
        (["--size", "-5", "-5"], "argument --size: must be between 1 and 65536, got -5"),
        (["--in-channels", "0"], "argument --in-channels: must be at least 1, got 0"),
        (["--n-classes", "0"], "argument --n-classes: must be at least 1, got 0"),
        (["--option", "width=abc"], '--option width="abc": width takes an integer'),
        (["--option", "se=maybe"], "se takes true/false or a list of (true/false)"),
        (["--option", "width"], "--option expects KEY=VALUE"),
        (["--option", "nope=1"], "valid options"),
        (["--option", "width=0"], "width must be >= 1"),
    ],
)
def test_info_arguments_name_their_allowed_range(cli, args, message):
    code, _, err = cli("info", "unet", *args)
    assert code in (1, 2) and message in one_error_line(err, "info")


def test_info_in_channels_is_used_not_replaced(cli):
    code, out, _ = cli("info", "unet", "--in-channels", "2", "--option", "width=4", "--json")
    assert code == 0 and json.loads(out)["input"][0] == 2


# -- inputs handled as the user means them --------------------------------------------------------
def test_nan_pixels_are_replaced_with_a_note(work, cli):
    image = disc_image()[0].astype(np.float32)
    image[:3, :4] = np.nan
    image[5, 5] = np.inf
    tifffile.imwrite(work / "nan.tif", image)
    with Unchanged(work, allow=("out/", "out/nan.tif")):
        code, _, err = cli(*predict_args(work, work / "nan.tif"))
    assert code == 0 and "note: nan.tif: 13 NaN/Inf pixel value(s) were replaced" in err
    assert read_mask(work / "out" / "nan.tif", binary=False).shape == image.shape


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (2, 40)])
def test_images_smaller_than_the_network_minimum_are_segmented(work, cli, shape):
    tifffile.imwrite(work / "small.tif", np.random.default_rng(0).random(shape, np.float32))
    with Unchanged(work, allow=("out/", "out/small.tif")):
        code, _, err = cli(*predict_args(work, work / "small.tif"))
    assert code == 0, err
    assert read_mask(work / "out" / "small.tif", binary=False).shape == shape


def test_two_channel_image_with_and_without_channel_axis(work, cli):
    save_model(tiny_model(in_channels=2), work / "two")
    image = np.stack([disc_image()[0], disc_image(seed=1)[0]])  # (2, H, W)
    tifffile.imwrite(work / "pair.tif", image)
    args = ("predict", "--model", work / "two", work / "pair.tif", "--out", work / "out", "--quiet")
    with Unchanged(work):
        code, _, err = cli(*args)
    assert code == 1 and "add --channel-axis 0" in one_error_line(err, "predict")
    code, _, err = cli(*args, "--channel-axis", "0")
    assert code == 0, err
    assert read_mask(work / "out" / "pair.tif", binary=False).shape == image.shape[1:]
    # a grey model takes the same file as a stack of two planes, and says how to change that
    code, _, err = cli(*predict_args(work, work / "pair.tif", out=work / "stack"))
    assert code == 0 and "stack of 2 planes" in err and "--channel-axis 0" in err
    assert tifffile.imread(work / "stack" / "pair.tif").shape == image.shape


def test_rgba_16bit_float_and_negative_images_are_segmented(work, cli):
    rng = np.random.default_rng(0)
    grey = disc_image()[0]
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)])).save(work / "rgba.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(work / "deep.png")
    tifffile.imwrite(work / "float.tif", grey.astype(np.float32) / 255)
    tifffile.imwrite(work / "negative.tif", grey.astype(np.float32) - 1000 * rng.random())
    names = ("rgba.png", "deep.png", "float.tif", "negative.tif")
    outputs = tuple(f"out/{n.split('.')[0]}.tif" for n in names)
    with Unchanged(work, allow=("out/", *outputs)):
        code, _, err = cli(*predict_args(work, *(work / n for n in names)))
    assert code == 0, err
    for out in outputs:
        assert tifffile.imread(work / out).shape == grey.shape


# -- models named as save_model named them --------------------------------------------------------
def test_save_model_name_without_suffix_is_accepted_everywhere(work, cli):
    save_model(tiny_model(), work / "x")
    assert load_model(work / "x").in_channels == 1
    code, _, err = cli(
        *predict_args(work, work / "images" / "img0.tif", extra=()), "--model", work / "x"
    )
    assert code == 0, err
    code, out, _ = cli("info", work / "x", "--json")
    assert code == 0 and json.loads(out)["input"][0] == 1


@pytest.mark.slow
def test_finetune_out_then_model_names_the_same_model(work, cli):
    code, _, err = cli(
        "finetune", "--model", work / "tiny", "--images", work / "images", "--masks",
        work / "masks", "--out", work / "m", "--epochs", "1", "--batch-size", "2",
        "--patch-size", "32", "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert {"m.json", "m.safetensors"} <= {p.name for p in work.glob("m.*")}
    code, _, err = cli(*predict_args(work, work / "images"), "--model", work / "m")
    assert code == 0, err
    assert load_model(work / "m").card.base_model == str(work / "tiny")


# -- evaluation of a multi-class model ------------------------------------------------------------
def test_evaluate_scores_a_multiclass_model_per_class(work, cli):
    save_model(tiny_model(n_classes=3), work / "three")
    for i in range(3):
        mask = disc_image(seed=i)[1]
        mask[:, :10] = 2 * (mask[:, :10] == 0)  # a third class at the left edge
        tifffile.imwrite(work / "masks" / f"img{i}.tif", mask)
    report = work / "report.json"
    with Unchanged(work, allow=("report.json",)):
        code, out, err = cli(
            "evaluate", "--model", work / "three", "--images", work / "images",
            "--masks", work / "masks", "--json", report, "--quiet",
        )  # fmt: skip
    assert code == 0, err
    result = json.loads(report.read_text())
    assert len(result["mean"]["dice_per_class"]) == 3
    assert len(result["per_image"][0]["dice_per_class"]) == 3
    assert "Dice per class (mean over images): c0 " in out


def test_evaluate_save_predictions_appear_only_complete(work, cli):
    with Unchanged(work, allow=("pred/", "pred/img0.tif", "pred/img1.tif", "pred/img2.tif")):
        code, _, err = cli(
            "evaluate", "--model", work / "tiny", "--images", work / "images",
            "--masks", work / "masks", "--save-predictions", work / "pred", "--quiet",
        )  # fmt: skip
    assert code == 0, err
    assert files(work / "pred") == ["img0.tif", "img1.tif", "img2.tif"]


# -- files that are not what they claim -----------------------------------------------------------
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda w: w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2]), "truncated"),
        (lambda w: w.write_bytes(garbage(300)), "not a valid safetensors file"),
        (lambda w: w.write_bytes(b"PK\x03\x04" + garbage(100)), "never unpickles"),
    ],
    ids=["truncated", "garbage", "zip-pickle"],
)
def test_broken_model_files_are_named_on_the_command_line(work, cli, damage, message):
    damage(work / "tiny.safetensors")
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, work / "images"))
    assert code == 1 and message in one_error_line(err, "predict")


def test_read_only_output_folder(work, cli, monkeypatch):
    """A folder that refuses writes: one line, and no temporary file left behind."""
    import napari_attnseg._files as files_module

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(files_module.tempfile, "mkstemp", refuse)
    (work / "ro").mkdir()
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, work / "images", out=work / "ro"))
    assert code == 1 and "Permission denied" in one_error_line(err, "predict")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_really_read_only_output_folder(work, cli):  # pragma: no cover - not as root
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)
    try:
        with Unchanged(work):
            code, _, err = cli(*predict_args(work, work / "images", out=work / "ro"))
        assert code == 1 and "Permission denied" in one_error_line(err, "predict")
    finally:
        (work / "ro").chmod(0o755)


def test_model_folder_that_vanishes_between_listing_and_loading(work, cli, user_model_dir):
    save_model(tiny_model(), user_model_dir / "mine")
    listed = [m for m in zoo.available_models() if m.name == "mine"]
    assert listed
    shutil.rmtree(user_model_dir)
    with Unchanged(work):
        code, _, err = cli(*predict_args(work, work / "images"), "--model", "mine")
    assert code == 1 and "unknown model 'mine'" in one_error_line(err, "predict")
    with Unchanged(work):
        code, _, err = cli("predict", "--model", listed[0].path, work / "images", "--out",
                           work / "out", "--quiet")  # fmt: skip
    assert code == 1 and "not found" in one_error_line(err, "predict")
    code, out, err = cli("models")
    assert code == 0 and "mine" not in out


def test_broken_user_models_are_named_by_attnseg_models(cli, user_model_dir):
    save_model(tiny_model(), user_model_dir / "good")
    (user_model_dir / "bad.safetensors").write_bytes(b"\x80\x04garbage pickle")
    with Unchanged(user_model_dir):
        code, out, err = cli("models")
    assert code == 0 and "good" in out and "bad" not in out
    assert "note: skipped bad.safetensors" in err and "pickle" in err


def test_demo_refuses_to_write_over_the_bundled_sample(cli):
    from napari_attnseg._sample_data import SAMPLES

    with Unchanged(SAMPLES):
        code, _, err = cli("demo", "--out", SAMPLES)
    assert code == 1 and "nuclei_mask.tif is an input" in one_error_line(err, "demo")
