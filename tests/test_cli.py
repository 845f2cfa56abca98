"""Every ``attnseg`` subcommand end to end on tiny data."""

import json

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from napari_attnseg.cli import main
from napari_attnseg.data.io import read_mask
from napari_attnseg.models import ModelCard, create_model, load_model, save_model


@pytest.fixture
def folders(tmp_path):
    """Six 48×56 grey images of bright discs with their 0/255 masks (and a FOV folder)."""
    rng = np.random.default_rng(0)
    paths = {k: tmp_path / k for k in ("images", "masks", "fov")}
    for p in paths.values():
        p.mkdir()
    for i in range(6):
        mask = np.zeros((48, 56), np.uint8)
        mask[
            disk(
                (rng.integers(12, 36), rng.integers(12, 44)), rng.integers(5, 10), shape=mask.shape
            )
        ] = 255
        image = (mask * 0.6 + rng.normal(40, 10, mask.shape)).clip(0, 255).astype(np.uint8)
        tifffile.imwrite(paths["images"] / f"img{i}.tif", image)
        tifffile.imwrite(paths["masks"] / f"img{i}.tif", mask)
        fov = np.zeros_like(mask)
        fov[4:-4, 4:-4] = 1
        tifffile.imwrite(paths["fov"] / f"img{i}.tif", fov)
    return paths


@pytest.fixture
def model_path(tmp_path):
    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=4, depth=2)
    model.card = ModelCard(name="tiny", normalization={"mode": "zscore"})
    return save_model(model, tmp_path / "tiny.safetensors")


def test_help_for_every_subcommand(capsys):
    for command in (
        "models",
        "info",
        "predict",
        "evaluate",
        "train",
        "finetune",
        "prune",
        "bench",
        "demo",
    ):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: attnseg " + command in capsys.readouterr().out


def test_models_lists_user_models(model_path, user_model_dir, capsys):
    save_model(load_model(model_path), user_model_dir / "mine.safetensors")
    assert main(["models", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)["models"]]
    assert "mine" in names


def test_info_architecture_and_model(model_path, capsys):
    assert main(["info", "afnet", "--size", "224", "224", "--option", "width=8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [3, 224, 224] and report["flops"] > 0
    assert any(k.endswith("da.channel") for k in report["attention_modules"])
    assert main(["info", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "decoder.0.gate" in out and "focal w = 1.0000" in out


def test_predict_writes_one_mask_per_input(folders, model_path, tmp_path):
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_path),
                str(folders["images"]),
                "--out",
                str(out),
                "--tta",
                "--probabilities",
                "--quiet",
            ]
        )
        == 0
    )
    masks = sorted(out.glob("*.tif"))
    assert [m.stem for m in masks] == [f"img{i}" for i in range(6)]
    assert read_mask(masks[0], binary=False).shape == (48, 56)
    assert tifffile.imread(out / "probabilities" / "img0.tif").dtype == np.float32


def test_evaluate_writes_documented_json(folders, model_path, tmp_path, capsys):
    target = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_path),
                "--images",
                str(folders["images"]),
                "--masks",
                str(folders["masks"]),
                "--fov",
                str(folders["fov"]),
                "--json",
                str(target),
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads(target.read_text())
    assert list(result) == ["model", "n_images", "mean", "pooled", "per_image"]
    assert result["n_images"] == 6
    keys = {"dice", "jaccard", "accuracy", "sensitivity", "specificity", "precision", "auc"}
    assert keys <= set(result["mean"]) and keys <= set(result["pooled"])
    assert result["per_image"][0]["name"] == "img0" and keys <= set(result["per_image"][0])
    assert "dice" in capsys.readouterr().out


@pytest.mark.slow
def test_train_finetune_prune_chain(folders, tmp_path):
    trained = tmp_path / "trained.safetensors"
    common = [
        "--images",
        str(folders["images"]),
        "--masks",
        str(folders["masks"]),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert (
        main(
            [
                "train",
                "--arch",
                "focal_use_net",
                "--option",
                "width=4",
                "--option",
                "depth=2",
                "--in-channels",
                "1",
                "--loss",
                "dice",
                "--out",
                str(trained),
                *common,
            ]
        )
        == 0
    )
    model = load_model(trained)
    assert model.card.training["epochs_run"] == 2
    assert model.card.normalization == {"mode": "zscore"}
    tuned = tmp_path / "tuned.safetensors"
    assert main(["finetune", "--model", str(trained), "--out", str(tuned), *common]) == 0
    assert load_model(tuned).card.base_model == str(trained)
    pruned = tmp_path / "pruned.safetensors"
    assert main(["prune", "--model", str(tuned), "--out", str(pruned), "--threshold", "5"]) == 0
    assert len(load_model(pruned).config["pruned"]) == 5  # depth 2: 2 + 1 + 2 SE blocks


@pytest.mark.slow
def test_train_prune_workflow_and_recipe(folders, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "arch": "use_net",
                "options": {"width": 4, "depth": 2},
                "data": {
                    "in_channels": 1,
                    "normalization": {"mode": "percentile", "low": 1, "high": 99},
                },
                "train": {
                    "epochs": 1,
                    "batch_size": 2,
                    "patch_size": 32,
                    "loss": "dice",
                    "loss_params": {},
                },
                "card": {"description": "from a recipe", "license": "CC0"},
            }
        )
    )
    out = tmp_path / "pruned.safetensors"
    assert (
        main(
            [
                "train",
                "--config",
                str(recipe),
                "--images",
                str(folders["images"]),
                "--masks",
                str(folders["masks"]),
                "--out",
                str(out),
                "--prune-workflow",
                "--prune-threshold",
                "5",
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    model = load_model(out)
    assert model.card.license == "CC0" and model.card.normalization["mode"] == "percentile"
    assert model.card.metadata["pruning"]["threshold"] == 5


def test_bad_input_is_a_clear_error(folders, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["predict", "--model", "no-such-model", str(folders["images"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("attnseg predict: error: unknown model 'no-such-model'")
    assert err.count("\n") == 1 and not out.exists()


#: options without help text in subcommands whose code lives elsewhere (``cli/train.py``),
#: reported to be filled in there: (subcommand, option) -> why this test lets them pass
#: options allowed to lack help text, with the reason (none today)
KNOWN_HELP_GAPS: dict[tuple[str, str], str] = {}


def subparsers():
    import argparse

    from napari_attnseg.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_option_has_help():
    import argparse

    lacking = {
        (command, action.option_strings[-1] if action.option_strings else action.dest)
        for command, parser in subparsers().items()
        for action in parser._actions
        if not action.help or action.help == argparse.SUPPRESS
    }
    missing = sorted(" ".join(gap) for gap in lacking - set(KNOWN_HELP_GAPS))
    assert not missing, f"options without help: {', '.join(missing)}"
    stale = sorted(" ".join(gap) for gap in set(KNOWN_HELP_GAPS) - lacking)
    assert not stale, f"these have help now; remove them from KNOWN_HELP_GAPS: {stale}"


def test_help_has_no_internal_references(capsys):
    import re

    for command in subparsers():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert not re.search(r"\bissue\b|#\d|\bhelper\b", text, re.IGNORECASE), (command, text)



def test_tta_flag_defaults_to_the_card_and_can_be_forced_either_way():
    from napari_attnseg.cli import build_parser
    from napari_attnseg.cli._common import inference_settings

    parser = build_parser()
    commands = (
        ["predict", "--model", "x", "image.tif", "--out", "o"],
        ["evaluate", "--model", "x", "--images", "i", "--masks", "m"],
    )
    for flags, expected in (([], None), (["--tta"], True), (["--no-tta"], False)):
        for command in commands:
            args = parser.parse_args([*command, *flags])
            assert args.tta is expected and inference_settings(args).tta is expected
