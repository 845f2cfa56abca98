"""scripts/zoo.py, paper_tables.py, report_tables.py and gpu_campaign.py: packaging, run
driver, GPU plan, tables.

Packaging and the driver run against a temporary weights folder, runs folder and
data split (the scripts' module paths are monkeypatched), with tiny untrained
networks whose output is fixed by their head's bias (all foreground or none), so
their validation Dice is known. One test trains for real (one epoch on eight
32×32 images) and needs the run folders of ``attnseg train --resume``.
"""

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_attnseg.models import create_model, load_model, save_model
from napari_attnseg.models.card import ModelCard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_campaign  # noqa: E402
import paper_tables  # noqa: E402
import report_tables  # noqa: E402
import zoo as zs  # noqa: E402
from zoolib import packaging, paths, recipes  # noqa: E402
from zoolib import runs as zoo_runs  # noqa: E402

NEW_TRAIN_CLI = importlib.util.find_spec("napari_attnseg.training.recipe") is not None


def _square_pair(folder: Path, stem: str, offset: int) -> None:
    image = np.full((32, 32, 3), 30, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[offset : offset + 16, 8:24] = 255
    image[mask > 0] = 220
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{stem}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Temporary recipes, runs, data, weights folder and docs for the scripts (the folders
    live in ``zoolib.paths``; ``zs.RECIPES`` and the others read them from there)."""
    monkeypatch.setattr(paths, "RECIPES", tmp_path / "recipes")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs" / "zoo")
    monkeypatch.setattr(paths, "DATA", tmp_path / "data")
    monkeypatch.setattr(paths, "WEIGHTS", tmp_path / "package" / "weights")
    monkeypatch.setattr(paths, "DOC", tmp_path / "docs" / "zoo.md")
    monkeypatch.setattr(paper_tables, "RUNS", tmp_path / "runs" / "tables")
    for split, n in (("train", 8), ("val", 4)):
        for i in range(n):
            _square_pair(tmp_path / "data" / "nuclei" / split, f"{split}{i}", 4 + i)
    (tmp_path / "recipes").mkdir()
    for name in ("unet.nuclei", "focal_use_net.nuclei"):
        _write_recipe(name)
    return tmp_path


def _write_recipe(name: str, **train) -> dict:
    arch, task = name.split(".")
    recipe = zs.recipe(arch, task)
    recipe["options"] = {"width": 4, "depth": 2}
    recipe["data"]["scale"] = 1.0
    recipe["train"].update(
        epochs=2, patch_size=32, batch_size=4, samples_per_epoch=4, augment=None, **train
    )
    (zs.RECIPES / f"{name}.json").write_text(json.dumps(recipe))
    return recipe


def _tiny(foreground: bool):
    """A network that answers 'all foreground' or 'nothing' whatever the image."""
    model = create_model("unet", in_channels=3, n_classes=1, width=4, depth=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(8.0 if foreground else -8.0)
    return model


def _trained_card(name: str) -> ModelCard:
    """What attnseg train writes into a card."""
    return ModelCard(
        name=name,
        license="test licence",
        class_names=["background", "nucleus"],
        training={
            "epochs_run": 3,
            "wall_time_s": 12.5,
            "precision": "bf16",
            "environment": {"device": "cpu", "threads": 2},
        },
    )


def _fake_run(name: str, foreground: bool, *, commands=True, status="finished: completed"):
    run_dir = zs.RUNS / name
    save_model(_tiny(foreground), run_dir / f"{name}.safetensors", card=_trained_card(name))
    spec = {"status": status, "recipe": {"train": {"epochs": 3}}, "images": "x", "masks": "y",
            "out": f"{run_dir}/{name}.safetensors"}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(spec))
    if commands:
        train = f"attnseg train --config recipes/{name}.json --images x --masks y"
        (run_dir / "commands.json").write_text(
            json.dumps({"train": train, "threads": 2, "sittings": [{"command": train}]})
        )
    return run_dir


def _shipped():
    return {p.stem for p in zs.WEIGHTS.glob("*.safetensors")}


# -- packaging ----------------------------------------------------------------------------------
def test_packaging_b_keeps_a_and_the_default_follows_the_best_shipped_dice(sandbox):
    _fake_run("focal_use_net.nuclei", foreground=False)  # Dice 0 on every image
    (a,) = zs.package(["focal_use_net.nuclei"])
    assert a["shipped"] and a["dice"] == 0.0
    assert json.loads((zs.WEIGHTS / "index.json").read_text())["defaults"] == {
        "nuclei": "focal_use_net.nuclei"
    }
    shutil.rmtree(zs.RUNS / "focal_use_net.nuclei")  # its run is gone (a fresh machine)
    _fake_run("unet.nuclei", foreground=True)  # Dice 2·256/(256+1024) = 0.4
    (b,) = zs.package(["unet.nuclei"])
    assert b["shipped"] and b["dice"] == pytest.approx(0.4, abs=0.02)
    assert _shipped() == {"focal_use_net.nuclei", "unet.nuclei"}
    index = json.loads((zs.WEIGHTS / "index.json").read_text())
    assert index["defaults"] == {"nuclei": "unet.nuclei"}
    zs.package()  # every finished run: B again; A has no run and stays shipped
    assert _shipped() == {"focal_use_net.nuclei", "unet.nuclei"}
    doc = zs.DOC.read_text()
    for name in ("focal_use_net.nuclei", "unet.nuclei"):
        card = json.loads((zs.WEIGHTS / f"{name}.json").read_text())
        row = next(line for line in doc.splitlines() if f"`{name}`" in line)
        assert f"{card['metrics']['validation']['mean']['dice']:.4f}" in row
        assert "0 min on cpu, bf16, 2 thread(s)" in row
    assert "| `unet.nuclei` | yes |" in doc


def test_packaged_cards_are_complete_and_scored_as_shipped_fp16(sandbox):
    _fake_run("focal_use_net.nuclei", foreground=True)
    zs.package(["focal_use_net.nuclei"])
    card = json.loads((zs.WEIGHTS / "focal_use_net.nuclei.json").read_text())
    assert zs.missing_card_keys(card) == []
    assert card["weights_dtype"] == "float16" and card["metrics"]["weights"] == "fp16 as shipped"
    assert card["metrics"]["validation"]["n_images"] == 4
    assert card["metrics"]["measured_by"].startswith(
        "attnseg evaluate --model focal_use_net.nuclei --images "
    )
    assert card["training"]["command"].startswith("attnseg train --config recipes/")
    assert card["training"]["threads"] == 2 and card["training"]["precision"] == "bf16"
    assert card["license"] == "test licence" and "DSB2018" in card["training"]["dataset"]
    assert card["metadata"]["recipe"].endswith("focal_use_net.nuclei.json")
    assert card["instances"] == {"method": "watershed"} and card["object_diameter"] > 0
    loaded = load_model(zs.WEIGHTS / "focal_use_net.nuclei.safetensors")
    assert loaded.card.metrics == card["metrics"]
    assert "cross_validation" not in card["metrics"]  # no fold report of this recipe


def test_a_shipped_card_records_the_fold_figures_of_the_recipe_it_was_trained_by(sandbox):
    from zoolib import cv, cv_report

    recipe = json.loads((zs.RECIPES / "focal_use_net.nuclei.json").read_text())
    tried = {**recipe, "name": "focal_use_net.nuclei.tried", "notes": "a try"}  # same training
    other = {**recipe, "train": {**recipe["train"], "lr": 0.5}}
    assert cv.fingerprint(tried) == cv.fingerprint(recipe) != cv.fingerprint(other)
    (zs.RECIPES / "cv").mkdir()
    report = {**cv_report.summarise({0: 0.70, 1: 0.74}), "k": 2, "task": "nuclei",
              "recipe_file": "recipes/tries/focal_use_net.nuclei.tried.json",
              "fingerprint": cv.fingerprint(tried), "folds_file": "recipes/splits/x_folds.json"}
    (zs.RECIPES / "cv" / "focal_use_net.nuclei.tried.json").write_text(json.dumps(report))
    (zs.RECIPES / "cv" / "unrelated.json").write_text(json.dumps(
        {**report, "mean": 0.1, "fingerprint": cv.fingerprint(other)}))
    _fake_run("focal_use_net.nuclei", foreground=True)
    zs.package(["focal_use_net.nuclei"])
    card = json.loads((zs.WEIGHTS / "focal_use_net.nuclei.json").read_text())
    folds = card["metrics"]["cross_validation"]
    assert folds["mean"] == pytest.approx(0.72) and folds["k"] == 2 and folds["n"] == 2
    assert folds["report"] == "recipes/cv/focal_use_net.nuclei.tried.json"
    assert "cv run recipes/tries/focal_use_net.nuclei.tried.json" in folds["measured_by"]


def test_a_card_that_stays_incomplete_is_not_shipped(sandbox):
    run_dir = _fake_run("unet.nuclei", foreground=True, commands=False)
    (run_dir / "run.json").unlink()  # nothing says how it was trained
    (result,) = zs.package(["unet.nuclei"])
    assert not result["shipped"] and "training.command" in result["why"]
    assert _shipped() == set()


def test_only_if_better_and_the_size_budget_never_remove_a_shipped_model(sandbox):
    _fake_run("unet.nuclei", foreground=True)
    zs.package(["unet.nuclei"])
    before = (zs.WEIGHTS / "unet.nuclei.safetensors").read_bytes()
    _fake_run("unet.nuclei", foreground=False)
    (worse,) = zs.package(["unet.nuclei"], only_if_better=True)
    assert not worse["shipped"] and "as good" in worse["why"]
    _fake_run("focal_use_net.nuclei", foreground=True)
    (big,) = zs.package(["focal_use_net.nuclei"], max_mb=0.001)
    assert not big["shipped"] and "exceed" in big["why"]
    assert _shipped() == {"unet.nuclei"}
    assert (zs.WEIGHTS / "unet.nuclei.safetensors").read_bytes() == before


def test_a_paused_run_ships_only_when_named(sandbox):
    run_dir = _fake_run("unet.nuclei", True, status="finished: time budget reached after epoch 1")
    (run_dir / "last.ckpt").write_bytes(b"x")
    zs.package()
    assert _shipped() == set()
    zs.package(["unet.nuclei"])
    assert _shipped() == {"unet.nuclei"}


def test_complete_and_annotate_rewrite_shipped_cards_only(sandbox):
    _fake_run("unet.nuclei", foreground=True)
    zs.package(["unet.nuclei"])
    path = zs.WEIGHTS / "unet.nuclei.safetensors"
    model = load_model(path)
    legacy = {**model.card.training, "config": {"amp": True}}
    del legacy["precision"]
    model.card.training = legacy
    model.card.instances = model.card.object_diameter = None  # annotate writes them again
    save_model(model, path, card=model.card, half=True)
    card = json.loads(path.with_suffix(".json").read_text())
    assert zs.missing_card_keys(card) == ["training.precision"]
    assert zs.missing_card_keys(card, legacy=True) == []
    assert zs.check_shipped() == 0  # derivable: reported, not an error
    zs.complete_shipped(["unet.nuclei"], dry_run=True)
    assert "precision" not in json.loads(path.with_suffix(".json").read_text())["training"]
    zs.complete_shipped(["unet.nuclei"])
    completed = json.loads(path.with_suffix(".json").read_text())
    assert completed["training"]["precision"] == "fp32"  # CPU + amp: the old trainer ran fp32
    assert completed["metrics"] == card["metrics"]
    zs.annotate(["unet.nuclei"])
    annotated = json.loads(path.with_suffix(".json").read_text())
    assert annotated["instances"] == {"method": "watershed"}
    assert annotated["object_diameter"] > 0
    assert torch.equal(load_model(path).head.bias, model.head.bias)


def test_complete_gives_a_shipped_card_the_fold_figures_of_the_recipe_that_trained_it(sandbox):
    from zoolib import cv, cv_report

    _fake_run("unet.nuclei", foreground=True)
    zs.package(["unet.nuclei"])
    path = zs.WEIGHTS / "unet.nuclei.safetensors"
    recipe = json.loads((zs.RECIPES / "unet.nuclei.json").read_text())
    (zs.RECIPES / "cv").mkdir()
    report = {**cv_report.summarise({0: 0.80, 1: 0.84}), "k": 2,
              "fingerprint": cv.fingerprint(recipe), "recipe_file": "recipes/unet.nuclei.json"}
    (zs.RECIPES / "cv" / "unet.nuclei.json").write_text(json.dumps(report))
    model = load_model(path)
    other = {**recipe["train"], "lr": 0.123}
    for config, attached in ((other, False), (recipe["train"], True)):
        model.card.training = {**model.card.training, "config": config}
        save_model(model, path, card=model.card, half=True)
        zs.complete_shipped(["unet.nuclei"])
        card = json.loads(path.with_suffix(".json").read_text())
        # figures only for a model trained as the recipe says (not one with another lr)
        assert ("cross_validation" in card["metrics"]) is attached
    assert card["metrics"]["cross_validation"]["mean"] == pytest.approx(0.82)
    assert card["metrics"]["validation"]["n_images"] == 4  # the rest of the metrics kept
    (line,) = cv_report.reports()  # docs/zoo.md names the shipped model the figures describe
    assert "mean 0.8200" in line and "the recipe of the shipped `unet.nuclei`" in line


def test_a_card_started_from_a_saved_file_counts_that_files_whole_schedule(sandbox):
    """complete_card fills ``training.init`` of runs whose card did not record how far
    the starting weights had been trained — only when the file is still the one pinned."""
    from napari_attnseg.models.persistence import file_sha256

    first = sandbox / "init" / "first.safetensors"
    first_card = _trained_card("first")  # 3 epochs, 12.5 s, after a sitting of its own
    first_card.training["init"] = {"epochs_run": 5, "wall_time_s": 20.0}
    save_model(_tiny(True), first, card=first_card)
    recipe_path = zs.RECIPES / "unet.nuclei.json"
    recipe = json.loads(recipe_path.read_text())

    def completed(sha):
        card = _trained_card("unet.nuclei")
        card.training["init"] = {"name": "first", "model": str(first), "sha256": sha}
        return zs.complete_card(card, recipe, recipe_path).training["init"]

    init = completed(file_sha256(first))
    assert init["epochs_run"] == 8 and init["wall_time_s"] == pytest.approx(32.5)
    assert init["name"] == "first" and init["sha256"] == file_sha256(first)
    other = completed("0" * 64)  # the file changed since: its schedule is not this card's
    assert "epochs_run" not in other and "wall_time_s" not in other


def test_check_reports_missing_keys(sandbox):
    _fake_run("unet.nuclei", foreground=True)
    zs.package(["unet.nuclei"])
    card_path = zs.WEIGHTS / "unet.nuclei.json"
    card = json.loads(card_path.read_text())
    del card["training"]["command"]
    card_path.write_text(json.dumps(card))
    assert zs.check_shipped() == 1


# -- the run driver -----------------------------------------------------------------------------
class FakeAttnseg:
    """Stands in for ``attnseg``: writes what train / resume / evaluate would."""

    def __init__(self, epochs=2):
        self.calls, self.epochs, self.sittings = [], epochs, 0

    def __call__(self, cmd, log_path, threads, timeout=None):
        self.calls.append(cmd)
        if cmd[1] == "evaluate":
            out = Path(cmd[cmd.index("--json") + 1])
            out.write_text(json.dumps({"mean": {"dice": 0.5}}))
            return 0
        run_dir = Path(cmd[cmd.index("--resume") + 1] if "--resume" in cmd else
                       cmd[cmd.index("--run-dir") + 1])  # fmt: skip
        self.sittings += 1
        budget = "--time-budget" in cmd and self.sittings < self.epochs
        status = f"time budget reached after epoch {self.sittings}" if budget else "completed"
        (run_dir / "run.json").write_text(
            json.dumps({"status": f"finished: {status}", "recipe": {"train": {"epochs": 2}}})
        )
        (run_dir / "last.ckpt").write_bytes(b"checkpoint")
        model = run_dir / f"{run_dir.name}.safetensors"
        save_model(_tiny(True), model, card=_trained_card(run_dir.name))
        evaluation = run_dir / "evaluation.json"
        if evaluation.exists():  # the new model is newer than the last evaluation
            earlier = model.stat().st_mtime - 10
            os.utime(evaluation, (earlier, earlier))
        return 0


def test_train_starts_resumes_skips_and_packages_when_done(sandbox, monkeypatch):
    fake = FakeAttnseg()
    monkeypatch.setattr(zoo_runs, "run_command", fake)
    packaged = []
    monkeypatch.setattr(packaging, "package", lambda names, **kw: packaged.extend(names))
    run_dir = zs.RUNS / "unet.nuclei"

    (first,) = zs.train_all(["unet.nuclei"], time_budget=5, package_done=True)
    start, evaluate = fake.calls
    assert start[:4] == ["attnseg", "train", "--config", str(zs.RECIPES / "unet.nuclei.json")]
    assert start[start.index("--run-dir") + 1] == str(run_dir)
    assert start[-2:] == ["--time-budget", "5"] and evaluate[1] == "evaluate"
    assert first["state"] == "paused" and first["dice"] == 0.5 and packaged == []

    fake.calls.clear()
    (second,) = zs.train_all(["unet.nuclei"], time_budget=5, package_done=True)
    resume, evaluate = fake.calls
    assert resume[:4] == ["attnseg", "train", "--resume", str(run_dir)]
    assert second["state"] == "done" and packaged == ["unet.nuclei"]
    record = json.loads((run_dir / "commands.json").read_text())
    assert record["train"] == " ".join(start) and len(record["sittings"]) == 2

    fake.calls.clear()
    (third,) = zs.train_all(["unet.nuclei"])
    assert fake.calls == [] and third["before"] == "done"

    (fourth,) = zs.train_all(["unet.nuclei"], epochs=5)  # train on: more epochs
    assert fake.calls[0][:4] == ["attnseg", "train", "--resume", str(run_dir)]
    assert fake.calls[0][-2:] == ["--epochs", "5"] and fourth["state"] == "done"


def test_driver_resumes_interrupted_runs_restarts_prune_runs_and_skips_busy_ones(sandbox):
    run = zs.zoo_run("unet.nuclei")
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "run.json").write_text(json.dumps({"status": "interrupted: KeyboardInterrupt"}))
    assert zs.run_state(run)[0] == "new"  # no checkpoint yet: start again
    (run.run_dir / "last.ckpt").write_bytes(b"x")
    assert zs.run_state(run)[0] == "unfinished"
    run.resumable = False  # the pruning workflow
    assert zs.run_state(run)[0] == "new"
    run.resumable = True
    (run.run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    assert zs.run_state(run)[0] == "busy"  # an attnseg train by hand, a minute ago
    assert zs.run_state(run, force=True)[0] == "unfinished"
    for path in (run.run_dir / "run.json", run.run_dir / "last.ckpt"):
        os.utime(path, (0, 0))
    assert zs.run_state(run)[0] == "unfinished"  # marked running, but silent since 1970
    (run.run_dir / zs.LOCK_FILE).write_text(str(os.getppid()))  # another live driver
    assert zs.run_state(run)[0] == "busy"
    assert zs.drive(run, threads=1, log=lambda line: None)["state"] == "busy"
    (run.run_dir / zs.LOCK_FILE).write_text("999999999")  # a dead one
    assert zs.run_state(run)[0] == "unfinished"


@pytest.mark.skipif(not NEW_TRAIN_CLI, reason="needs attnseg train --resume (branch h/train)")
@pytest.mark.slow
def test_real_sitting_pauses_at_its_budget_and_its_model_ships(sandbox):
    """One real sitting (one epoch of two on eight 32² images), scored and shipped; the
    resume command it would run next is one the real command line accepts."""
    from napari_attnseg.cli import build_parser

    (first,) = zs.train_all(["unet.nuclei"], time_budget=0)  # stops after epoch 1 of 2
    assert first["state"] == "paused" and first["dice"] is not None, first
    run = zs.zoo_run("unet.nuclei")
    assert zs.run_state(run)[0] == "paused"
    args = build_parser().parse_args(["train", "--resume", str(run.run_dir), "--quiet",
                                      "--time-budget", "5", "--epochs", "4"])  # fmt: skip
    assert args.resume == str(run.run_dir) and args.epochs == 4
    (result,) = zs.package(["unet.nuclei"])
    assert result["shipped"], result
    card = json.loads((zs.WEIGHTS / "unet.nuclei.json").read_text())
    assert zs.missing_card_keys(card) == []
    assert card["training"]["epochs_run"] == 1
    assert (
        card["training"]["command"]
        == json.loads((run.run_dir / "commands.json").read_text())["train"]
    )


# -- recipes, the GPU campaign ------------------------------------------------------------------
def test_committed_recipes_are_the_generators_and_full_ones_have_paper_widths():
    for variant in zs.VARIANTS:
        names = zs.recipe_names(variant)
        assert len(names) == len(zs.ARCHS) * len(zs.TASKS)
        for name in names:
            arch, task = name.split(".")
            committed = json.loads((zs.recipes_dir(variant) / f"{name}.json").read_text())
            assert committed == zs.recipe(arch, task, variant), f"{variant} {name}: regenerate"
    names = ("unet.nuclei", "focusnet.nuclei", "afnet.nuclei", "denseunet.nuclei")
    full = {
        n: json.loads((zs.RECIPES / "full" / f"{n}.json").read_text())["options"] for n in names
    }
    assert full["unet.nuclei"] == {"width": 32} and full["afnet.nuclei"] == {"width": 64}
    assert full["focusnet.nuclei"] == {"width_multiplier": 1.0}
    assert full["denseunet.nuclei"]["growth_rate"] == 48
    for name, further in zs.TRAIN_FURTHER.items():  # a further sitting's own settings win
        r = zs.recipe(*name.split("."))
        assert r["init"] == further["init"] and len(further["init"]["sha256"]) == 64
        for part in ("data", "card", "train"):
            for key, value in further.get(part, {}).items():
                assert r[part][key] == value, f"{name}: {part}.{key}"
    if NEW_TRAIN_CLI:
        from napari_attnseg.training.recipe import Recipe

        for path in [*zs.RECIPES.glob("*.*.json"), *(zs.RECIPES / "full").glob("*.json")]:
            Recipe.from_json(path)


def test_every_committed_recipe_is_to_the_byte_what_recipes_tasks_gives(capsys):
    """One source: ``recipes/tasks/`` (the tasks, the architectures' paper recipes, the
    models trained further); the committed recipes are its output, byte for byte."""
    for variant in zs.VARIANTS:
        assert zs.stale_recipes(variant) == [], f"{variant}: run `zoo.py recipes`"
    assert zs.main(["recipes", "--check"]) == 0 and zs.main(["recipes", "--full", "--check"]) == 0
    assert "every full recipe is what recipes/tasks/ gives" in capsys.readouterr().out
    splits = {p.stem for p in (ROOT / "recipes" / "splits").glob("*.json")
              if not p.stem.endswith("_folds")}  # the grouped k-fold files (zoolib.cv)
    assert set(zs.TASKS) == splits - {"nuclei_native"}


def test_the_recipes_change_with_their_task_data_alone(monkeypatch, tmp_path):
    nuclei = json.loads((ROOT / "recipes" / "tasks" / "nuclei.json").read_text())
    nuclei["gamma"], nuclei["train"]["epochs"], nuclei["card"]["license"] = 0.25, 7, "x"
    monkeypatch.setitem(recipes.TASKS, "nuclei", nuclei)
    r = zs.recipe("unet", "nuclei")
    assert r["train"]["loss_params"]["gamma"] == 0.25  # {"$task": "gamma"}
    assert r["train"]["epochs"] == 7 and r["card"]["license"] == "x"
    own = "focal_attention_unet.nuclei"  # its own source: not derived
    assert zs.stale_recipes() == sorted(f"{a}.nuclei" for a in zs.ARCHS if f"{a}.nuclei" != own)
    # an architecture's recipe: by_task changes (their notes added), same_as, colour only
    focus, plain = zs.recipe("focusnet", "vessels"), zs.recipe("focusnet", "polyp")
    assert focus["train"]["loss"] == "dice_ce" and plain["train"]["loss"] == "dice"
    assert focus["notes"].startswith(plain["notes"]) and focus["notes"] != plain["notes"]
    assert zs.arch_recipe("focal_use_net", "polyp") == zs.arch_recipe("unet", "polyp")
    assert "channel_shift" not in zs.recipe("focusnet", "membranes")["train"]["augment"]
    assert zs.recipe("afnet", "vessels")["data"]["scale"] == 2.0
    assert zs.recipe("afnet", "polyp")["data"].get("scale", 1.0) == 1.0
    # a task file with a key no recipe reads is refused
    (tmp_path / "bad.json").write_text(json.dumps({**nuclei, "epochs": 3}))
    with pytest.raises(SystemExit, match="unknown keys"):
        recipes.load_tasks(tmp_path)


@pytest.mark.slow
def test_gpu_dry_run_covers_the_zoo_and_every_table_row_within_the_budget(capsys):
    plan = gpu_campaign.campaign(budget_s=600, jobs=12, dry_run=True)
    printed = capsys.readouterr().out
    dirs = {item["run_dir"] for item in plan["runs"]}
    for name in zs.recipe_names("full"):
        assert zs._rel(zs.runs_dir("full") / name) in dirs
    for row in paper_tables.experiments():
        assert zs._rel(paper_tables.row_run(row, "full").run_dir) in dirs, row["id"]
    assert len(dirs) == plan["n_runs"] == len(plan["runs"])
    # every worker's runs, each given its slot, end before the reserve
    for worker in range(plan["jobs"]):
        units = sum(r["units"] for r in plan["runs"] if r["worker"] == worker)
        assert units <= plan["makespan_units"]
    assert plan["makespan_units"] * plan["slot_s"] + plan["reserve_s"] <= plan["budget_s"] + 1
    assert plan["time_budget_s"] + plan["overhead_s"] <= plan["slot_s"]
    assert plan["time_budget_s"] >= zs.MIN_RUN_S
    for item in plan["runs"]:
        assert item["command"] in printed
        assert item["command"].endswith(f"--time-budget {plan['time_budget_s']}")
        assert "--device cuda" in item["command"]
    with pytest.raises(ValueError, match="raise --budget"):
        gpu_campaign.campaign(budget_s=150, jobs=2, dry_run=True)


def test_gpu_campaign_runs_every_run_with_its_budget_packages_and_reports(sandbox, monkeypatch):
    """The campaign's execution on a CPU, ``attnseg`` faked: each run gets the planned
    --time-budget, every zoo model that beats the shipped one ships, one JSON + log."""
    fake = FakeAttnseg(epochs=1)
    monkeypatch.setattr(zoo_runs, "run_command", fake)
    result = zs.gpu_campaign(budget_s=100, jobs=2, zoo_variant="compact", tables=None,
                             device="cpu", overhead_s=5, reserve_s=10,
                             out=sandbox / "gpu")  # fmt: skip
    assert result["n_runs"] == 2 and result["time_budget_s"] == 85
    starts = [c for c in fake.calls if c[1] == "train"]
    assert len(starts) == 2
    for cmd in starts:  # ~85 s each (less the little time the other runs took)
        assert 80 <= float(cmd[cmd.index("--time-budget") + 1]) <= 85
        assert cmd[cmd.index("--device") + 1] == "cpu"
    assert {r["state"] for r in result["records"]} == {"done"}
    assert _shipped() == {"unet.nuclei", "focal_use_net.nuclei"}
    saved = json.loads((sandbox / "gpu" / "campaign.json").read_text())
    assert [p["shipped"] for p in saved["packaged"]] == [True, True]
    assert "done in" in (sandbox / "gpu" / "campaign.log").read_text()


# -- the tables ---------------------------------------------------------------------------------
def test_nuclei_rows_derive_from_the_zoo_recipes_and_fit_the_cpu_budget(capsys):
    rows = paper_tables.select(paper_tables.experiments(), tasks=["nuclei"])
    tables = {t: [r["label"] for r in rows if r["table"] == t] for t in paper_tables.TABLES}
    assert len(tables["loss"]) == 9
    assert {"U-Net", "USE-Net", "Attention U-Net", "pruned Focal USE-Net", "FocusNet",
            "AF-Net", "DenseUNet-SA", "DenseUNet-JA"} <= set(tables["arch"])  # fmt: skip
    assert len(tables["afnet"]) == 7 and len(tables["ja"]) == 12
    for row in rows:
        recipe = paper_tables.effective(row)
        assert recipe["data"]["scale"] == 2.0 and recipe["train"]["augment"]["zoom"] == [0.5, 2.0]
        assert recipe["train"]["epochs"] == paper_tables.TABLE_BUDGET["compact"]["nuclei"]["epochs"]
    plan = paper_tables.run(tasks=["nuclei"], jobs=2, dry_run=True)
    assert len(plan) == len(paper_tables.unique_rows(tasks=["nuclei"])) < len(rows)
    hours = sum(p["seconds"] for p in plan) / 2 / 3600
    assert 4.0 < hours < 5.0  # ~4.5 h on the 2-core CPU with 2 jobs
    assert "h of wall time with 2 job(s)" in capsys.readouterr().out
    only = paper_tables.run(tables=["loss"], tasks=["nuclei"], dry_run=True)
    assert [p["row"] for p in only] == [r["id"] for r in rows if r["table"] == "loss"]


def test_results_page_lists_every_row_with_the_papers_figure(tmp_path):
    row = next(r for r in paper_tables.experiments() if r["label"] == "unified_focal+eps0.1")
    model = _tiny(True)
    model.card = ModelCard(
        name="x",
        training={"epochs_run": 10, "wall_time_s": 600, "precision": "bf16",
                  "environment": {"device": "cpu"}},
    )  # fmt: skip
    path = save_model(model, tmp_path / "row" / "model.safetensors")
    result = {"mean": {"dice": 0.9, "jaccard": 0.8, "precision": 0.85, "sensitivity": 0.95},
              "model_path": path, "variant": "compact"}  # fmt: skip
    rows = paper_tables.experiments()
    doc = report_tables.write_report(
        rows,
        lambda r: result if r["id"] == row["id"] else None,
        tmp_path / "results.md",
        recipe_of=paper_tables.effective,
    )
    text = doc.read_text()
    assert f"**Status: 1 of {len(rows)} rows have been run**" in text
    assert f"nuclei 1 of {sum(r['task'] == 'nuclei' for r in rows)}" in text
    line = next(x for x in text.splitlines() if x.startswith("| unified_focal+eps0.1 | 0.9000"))
    assert "| 0.9165 | -0.0165 |" in line and "cpu bf16, 10 ep, 10 min" in line
    for r in rows:
        assert f"| {r['label']} |" in text
    assert "*Why the figures differ (nuclei).*" in text and "15 epochs" in text
    assert "images enlarged 2× (the working scale)" in text
    # the figures are kept beside the page: without the run folders it is written the same
    kept = json.loads((tmp_path / "results.json").read_text())
    assert list(kept) == [row["id"]] and kept[row["id"]]["mean"]["dice"] == 0.9
    path.unlink()
    again = report_tables.write_report(
        rows, lambda r: None, tmp_path / "results.md", recipe_of=paper_tables.effective
    )
    assert again.read_text() == text


def test_the_committed_results_page_is_what_its_committed_figures_give(tmp_path):
    """docs/results.md is rewritten from docs/results.json alone (no run folders)."""
    (tmp_path / "results.json").write_bytes((ROOT / "docs" / "results.json").read_bytes())
    page = report_tables.write_report(
        paper_tables.experiments(), lambda r: None, tmp_path / "results.md",
        recipe_of=paper_tables.effective,
    )  # fmt: skip
    assert page.read_text() == (ROOT / "docs" / "results.md").read_text()


def test_a_pruned_row_lists_the_probes_weights_and_says_when_nothing_survived(tmp_path):
    rows = paper_tables.experiments()
    pruned = {(r["label"], r["task"]): r for r in rows if r["prune"]}
    probes = {
        ("pruned Focal USE-Net", "nuclei"): {"encoder.0.se": 0.05, "decoder.0.se": 0.31,
                                             "decoder.1.se": 0.2},
        ("pruned Focal Attention U-Net", "nuclei"): {"decoder.0.gate": 0.035,
                                                     "decoder.3.gate": 0.062},
        ("pruned Focal Attention U-Net", "vessels"): {"decoder.0.gate": 0.1},
    }  # fmt: skip
    results = {}
    for (label, task), weights in probes.items():
        model = _tiny(True)
        model.card = ModelCard(
            name=label, training={"epochs_run": 15, "wall_time_s": 60},
            metadata={"pruning": {"threshold": 0.2, "probe_focal_weights": weights}},
        )  # fmt: skip
        path = save_model(model, tmp_path / f"{label}.{task}" / "model.safetensors")
        results[pruned[label, task]["id"]] = {
            "mean": {"dice": 0.88, "jaccard": 0.8, "precision": 0.85, "sensitivity": 0.9},
            "model_path": path, "variant": "compact",
        }  # fmt: skip
    text = report_tables.write_report(
        rows, lambda r: results.get(r["id"]), tmp_path / "results.md",
        recipe_of=paper_tables.effective,
    ).read_text()  # fmt: skip
    se = next(x for x in text.splitlines() if x.startswith("pruned Focal USE-Net: Focal w"))
    assert "`decoder.0.se` 0.310" in se and "Kept 2 of 3 modules; the paper kept 4." in se
    assert "plain backbone" not in se  # w = 0.2 is at the cut-off: kept
    ag = next(x for x in text.splitlines() if x.startswith("pruned Focal Attention U-Net: Focal w"))
    assert "Kept 0 of 2 modules; the paper kept 1." in ag
    assert "the retrained network is the plain backbone: a short probe" in ag
    # on DRIVE the paper kept no gate either: nothing to explain
    ag = [x for x in text.splitlines() if x.startswith("pruned Focal Attention U-Net: Focal w")]
    assert "Kept 0 of 1 modules; the paper kept 0." in ag[1] and ag[1].endswith("as in the paper.")


def test_a_row_uses_the_zoo_run_that_trained_exactly_its_configuration(sandbox):
    from napari_attnseg.training import Recipe, RunSpec

    for arch in zs.ARCHS:  # the real recipes (the zoo's nuclei recipes train 40 epochs)
        for task in paper_tables.TASK_ORDER:
            recipe = zs.recipe(arch, task)
            (zs.RECIPES / f"{recipe['name']}.json").write_text(json.dumps(recipe))
    row = next(r for r in paper_tables.experiments() if r["id"] == "arch.nuclei.U-Net")
    assert paper_tables.row_run(row).kind == "table"  # the tables train 15: not the zoo's
    run_dir = zs.RUNS / "unet.nuclei"
    recipe = Recipe.from_dict(paper_tables.effective(row))
    # trained by the zoo with --epochs 15 --device cpu: how it ran does not matter
    ran = recipe.override(train={"device": "cpu", "precision": "fp32"})
    RunSpec(ran, images="i", masks="m", out="o").save(run_dir)
    assert paper_tables.row_run(row).kind == "zoo"
    assert paper_tables.row_run(row).run_dir == run_dir
    # what it trained does: other epochs, or a pruned row, are not that run
    RunSpec(recipe.override(train={"epochs": 14}), images="i", masks="m", out="o").save(run_dir)
    assert paper_tables.row_run(row).kind == "table"
    RunSpec(ran, images="i", masks="m", out="o").save(run_dir)
    pruned = next(r for r in paper_tables.experiments() if r["label"] == "pruned Focal USE-Net")
    assert paper_tables.row_run(pruned).kind == "table"


def test_task_defaults_compare_dice_on_the_same_images_as_a_model_with_its_own_recipe():
    def card(dice, images, own=None):
        metadata = {"task": "nuclei", **({"own_recipe": own} if own else {})}
        measured = f"attnseg evaluate --model m --images {images} --masks x"
        return {"metadata": metadata,
                "metrics": {"validation": {"mean": {"dice": dice}}, "measured_by": measured}}

    cards = {"a.nuclei": card(0.90, "runs/data/nuclei/val/images"),
             "b.nuclei": card(0.85, "runs/data/native/val/images", own="native")}
    # b's Dice is measured on other images: a's higher Dice does not beat it
    assert zs.task_defaults(cards) == {"nuclei": "b.nuclei"}
    cards["c.nuclei"] = card(0.88, "runs/data/native/val/images")
    assert zs.task_defaults(cards) == {"nuclei": "c.nuclei"}
    del cards["b.nuclei"], cards["c.nuclei"]
    assert zs.task_defaults(cards) == {"nuclei": "a.nuclei"}


def test_a_model_with_its_own_recipe_keeps_it_and_the_paper_tables_keep_the_task_s():
    own = zs.own_recipe("focal_attention_unet.nuclei")
    assert own is not None and own["data"]["scale"] == 1.0 and own["data"]["n_classes"] == 4
    assert zs.recipe("focal_attention_unet", "nuclei") == own
    task_recipe = zs.recipe("focal_attention_unet", "nuclei", own=False)
    assert task_recipe["data"]["scale"] == 2.0 and task_recipe != own
    rows = [r for r in paper_tables.experiments() if r["base"] == "focal_attention_unet.nuclei"]
    assert rows and all(paper_tables.zoo_recipe(r) == task_recipe for r in rows)
    assert not any(paper_tables.is_zoo_twin(r) for r in rows)
