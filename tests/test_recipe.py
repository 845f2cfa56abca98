"""Typed recipes, run folders and ``attnseg train --resume`` / defaults on tiny data."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage.draw import disk

from napari_attnseg.cli import build_parser, main
from napari_attnseg.cli._common import parse_options
from napari_attnseg.models import compact_options, load_model
from napari_attnseg.training import (
    DataSpec,
    Recipe,
    RunSpec,
    TrainConfig,
    default_run_dir,
)
from napari_attnseg.training.recipe import RUN_FILE

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture
def folders(tmp_path):
    """Six 48×56 grey images of bright discs with their 0/255 masks."""
    rng = np.random.default_rng(0)
    paths = {k: tmp_path / k for k in ("images", "masks")}
    for p in paths.values():
        p.mkdir()
    for i in range(6):
        mask = np.zeros((48, 56), np.uint8)
        centre = (rng.integers(12, 36), rng.integers(12, 44))
        mask[disk(centre, rng.integers(5, 10), shape=mask.shape)] = 255
        image = (mask * 0.6 + rng.normal(40, 10, mask.shape)).clip(0, 255).astype(np.uint8)
        tifffile.imwrite(paths["images"] / f"img{i}.tif", image)
        tifffile.imwrite(paths["masks"] / f"img{i}.tif", mask)
    return paths


def tiny_args(folders, out, *extra):
    return [
        "train",
        "--arch",
        "unet",
        "--option",
        "width=4",
        "--option",
        "depth=2",
        "--in-channels",
        "1",
        "--loss",
        "dice",
        "--images",
        str(folders["images"]),
        "--masks",
        str(folders["masks"]),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--quiet",
        *extra,
    ]


# -- Recipe -------------------------------------------------------------------
def test_every_zoo_recipe_reads_and_round_trips():
    paths = sorted(RECIPES.glob("*.*.json"))
    assert len(paths) >= 20
    for path in paths:
        recipe = Recipe.from_json(path)
        raw = json.loads(path.read_text())
        assert recipe.arch == raw["arch"] and recipe.options == raw["options"]
        for key, value in raw["train"].items():
            assert getattr(recipe.train, key) == value, (path.name, key)
        assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_recipe_errors_name_the_bad_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown recipe key\(s\) \['trian'\]"):
        Recipe.from_dict({"trian": {}})
    with pytest.raises(ValueError, match=r"unknown data option\(s\) \['channels'\]"):
        Recipe.from_dict({"data": {"channels": 3}})
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['epoch'\]"):
        Recipe.from_dict({"train": {"epoch": 3}})
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": 0}}')
    with pytest.raises(ValueError, match=r"bad\.json: epochs must be an integer >= 1"):
        Recipe.from_json(bad)


def test_override_replaces_fields_and_merges_options_and_loss_params():
    recipe = Recipe.from_json(RECIPES / "unet.nuclei.json")
    changed = recipe.override(
        options={"depth": 3},
        data={"in_channels": 1},
        train={"epochs": 2},
        loss_params={"epsilon": 0.5},
    )
    assert changed.options == {"width": 16, "depth": 3}
    assert changed.data.in_channels == 1 and changed.data.normalization == {"mode": "zscore"}
    assert changed.train.epochs == 2 and changed.train.patch_size == recipe.train.patch_size == 128
    assert changed.train.loss_params == {"delta": 0.6, "gamma": 0.2, "lam": 0.5, "epsilon": 0.5}
    assert recipe.train.epochs == 40  # the original is unchanged
    # a new loss keeps only the parameters it accepts
    assert recipe.override(train={"loss": "dice"}).train.loss_params == {"epsilon": 0.1}
    with pytest.raises(ValueError, match="unknown training option"):
        recipe.override(train={"epohcs": 1})


def test_compact_options_fill_in_on_cpu_only():
    recipe = Recipe(arch="unet").override(options={"depth": 3})
    on_cpu = recipe.for_device(torch.device("cpu"))
    assert on_cpu.options == {**compact_options("unet"), "depth": 3}
    assert recipe.for_device(torch.device("meta")).options == {"depth": 3}
    explicit = Recipe(arch="unet", options={"width": 8}).for_device(torch.device("cpu"))
    assert explicit.options["width"] == 8
    with pytest.raises(ValueError, match="unknown architecture"):
        Recipe(arch="nope").for_device(torch.device("cpu"))


def test_cli_data_flags_are_derived_from_dataspec():
    args = build_parser().parse_args(
        ["train", "--in-channels", "1", "--n-classes", "3", "--normalization", "minmax",
         "--scale", "0.5", "--val-fraction", "0.3", "--seed", "4"]
    )  # fmt: skip
    from napari_attnseg.cli.train import _data_changes

    assert _data_changes(args) == {
        "in_channels": 1,
        "n_classes": 3,
        "normalization": {"mode": "minmax"},
        "scale": 0.5,
        "val_fraction": 0.3,
        "seed": 4,
    }
    assert set(_data_changes(args)) <= {f for f in DataSpec.__dataclass_fields__}


def test_parse_options_reads_json_values():
    assert parse_options(["width=16", 'pruned=["a"]', "mode=x"]) == {
        "width": 16,
        "pruned": ["a"],
        "mode": "x",
    }
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        parse_options(["novalue"], "--set")


def test_finetune_help_describes_finetuning(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = capsys.readouterr().out
    assert "Continue training a saved or zoo MODEL" in text
    assert "--config" not in text and "--prune-workflow" not in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--resume RUN" in text and "run.json" in text


# -- runs ---------------------------------------------------------------------
@pytest.mark.slow
def test_train_defaults_compact_width_and_auto_patch_on_cpu(folders, tmp_path):
    out = tmp_path / "m.safetensors"
    args = tiny_args(folders, out, "--epochs", "1")
    args[args.index("width=4") - 1 : args.index("width=4") + 1] = []  # no width given
    assert main(args) == 0
    model = load_model(out)
    assert model.config["width"] == compact_options("unet")["width"]
    assert model.card.training["patch_size"] == 32  # 48×56 images
    assert model.card.training["precision"] == "fp32"
    run = RunSpec.load(default_run_dir(out))
    assert run.status == "finished: completed"
    assert run.recipe.options["width"] == compact_options("unet")["width"]


@pytest.mark.slow
def test_resume_from_the_run_folder_alone_matches_an_uninterrupted_run(folders, tmp_path):
    straight = tmp_path / "straight.safetensors"
    assert main(tiny_args(folders, straight, "--epochs", "3")) == 0

    sittings = tmp_path / "sittings.safetensors"
    run_dir = tmp_path / "my-run"
    # a budget of 0 s ends each sitting after one epoch
    first = tiny_args(folders, sittings, "--epochs", "3", "--time-budget", "0")
    assert main([*first, "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "last.ckpt").exists() and (run_dir / RUN_FILE).exists()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    history = load_model(sittings).card.training["history"]
    assert [e["epoch"] for e in history] == [1, 2, 3]
    a, b = load_model(straight).state_dict(), load_model(sittings).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_resume_takes_no_other_settings(folders, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(tiny_args(folders, out, "--epochs", "1")) == 0
    run_dir = default_run_dir(out)
    assert main(["train", "--resume", str(run_dir), "--lr", "0.1", "--quiet"]) == 1
    assert "--lr cannot change them" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 1
    assert "not a run folder" in capsys.readouterr().err
    # more epochs are allowed: the run continues where it ended
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet", "--debug"]) == 0
    assert load_model(out).card.training["epochs_run"] == 2


@pytest.mark.slow
def test_a_new_run_never_replaces_an_unfinished_one(folders, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    run_dir = default_run_dir(out)
    assert main(tiny_args(folders, out, "--epochs", "1")) == 0
    spec = RunSpec.load(run_dir)
    spec.status = "interrupted: KeyboardInterrupt"
    spec.save(run_dir)
    assert main(tiny_args(folders, out, "--epochs", "1")) == 1
    assert "holds an unfinished run" in capsys.readouterr().err
    spec.status = "finished: completed"
    spec.save(run_dir)
    assert main(tiny_args(folders, out, "--epochs", "1")) == 0


def test_run_spec_round_trips_and_resolves_paths(tmp_path):
    spec = RunSpec(
        Recipe(arch="unet", train=TrainConfig(epochs=2)),
        images="data/images",
        masks="data/masks",
        out="m.safetensors",
        cwd=str(tmp_path),
    )
    spec.save(tmp_path / "run")
    again = RunSpec.load(tmp_path / "run")
    assert again == spec
    assert again.path("images") == tmp_path / "data/images"
    assert default_run_dir("x/m.safetensors") == Path("x/m.run")


# -- init: train on from a saved model's weights ---------------------------------------
@pytest.mark.slow
def test_init_starts_from_the_saved_weights_and_pins_them(folders, tmp_path, capsys):
    first = tmp_path / "first.safetensors"
    assert main(tiny_args(folders, first, "--epochs", "2")) == 0
    base = load_model(first).state_dict()

    # zero epochs are not allowed, so compare the weights the run started from via lr ~ 0
    again = tmp_path / "again.safetensors"
    args = tiny_args(folders, again, "--epochs", "1", "--lr", "1e-12", "--init", str(first))
    assert main(args) == 0
    tuned = load_model(again)
    for key, value in base.items():
        torch.testing.assert_close(tuned.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    init = tuned.card.training["init"]
    assert tuned.card.base_model == load_model(first).card.name
    assert init["epochs_run"] == 2 and init["model"] == str(first)  # the whole schedule
    run = RunSpec.load(default_run_dir(again))
    assert run.recipe.init["sha256"] == init["sha256"] and len(init["sha256"]) == 64
    # a random start differs from the saved weights
    fresh = tmp_path / "fresh.safetensors"
    assert main(tiny_args(folders, fresh, "--epochs", "1", "--lr", "1e-12")) == 0
    weights = load_model(fresh).state_dict()
    assert any(not torch.allclose(weights[k], base[k]) for k in base if base[k].is_floating_point())
    # a third sitting from the second's file: its card counts both earlier sittings
    third = tmp_path / "third.safetensors"
    assert main(tiny_args(folders, third, "--epochs", "1", "--init", str(again))) == 0
    chain = load_model(third).card.training["init"]
    assert chain["epochs_run"] == 3 and chain["model"] == str(again)
    # the times add up (each sitting's own figure is rounded; a tiny one may be 0.0)
    second_own = tuned.card.training["wall_time_s"]
    assert chain["wall_time_s"] == pytest.approx(init["wall_time_s"] + second_own)

    # the pinned file changed: the recipe refuses to start from other weights
    recipe = run.recipe.to_dict()
    config = tmp_path / "pinned.json"
    config.write_text(json.dumps(recipe))
    assert main(tiny_args(folders, first, "--epochs", "1")) == 0  # retrained: new weights
    pinned = tiny_args(folders, tmp_path / "p", "--epochs", "1", "--config", str(config))
    assert main(pinned) == 1
    assert "not the weights the recipe starts from" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_run_needs_no_longer_the_file_it_started_from(folders, tmp_path, capsys):
    first = tmp_path / "first.safetensors"
    assert main(tiny_args(folders, first, "--epochs", "2")) == 0
    again = tmp_path / "again.safetensors"
    assert main(tiny_args(folders, again, "--epochs", "1", "--init", str(first))) == 0
    record = load_model(again).card.training["init"]
    run_dir = default_run_dir(again)
    assert json.loads((run_dir / "init.json").read_text()) == record
    first.rename(tmp_path / "gone.safetensors")  # the starting file moved away
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"]) == 0
    resumed = load_model(again).card
    assert resumed.training["epochs_run"] == 2 and resumed.training["init"] == record
    # a record that names other weights than the pinned ones is not trusted: the file is read
    (run_dir / "init.json").write_text(json.dumps({**record, "sha256": "0" * 64}))
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"]) == 1
    assert "init model not found" in capsys.readouterr().err


@pytest.mark.slow
def test_init_refuses_another_architecture(folders, tmp_path, capsys):
    first = tmp_path / "first.safetensors"
    assert main(tiny_args(folders, first, "--epochs", "1")) == 0
    other = tiny_args(folders, tmp_path / "o.safetensors", "--epochs", "1", "--init", str(first))
    other[other.index("width=4")] = "width=8"
    assert main(other) == 1
    err = capsys.readouterr().err
    assert "another network than the recipe builds" in err and "width: 4 vs 8" in err
    with pytest.raises(ValueError, match="'init' needs a 'model' path"):
        Recipe.from_dict({"init": {"sha256": "0" * 64}})
    with pytest.raises(ValueError, match="64 lower-case hex"):
        Recipe.from_dict({"init": {"model": "m.safetensors", "sha256": "abc"}})
    assert Recipe.from_dict(Recipe(init={"model": "m.safetensors"}).to_dict()).init == {
        "model": "m.safetensors"
    }
