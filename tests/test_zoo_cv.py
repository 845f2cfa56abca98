"""scripts/zoolib/cv.py (``zoo.py cv``): grouped folds, one run per fold, the report.

No training: the split files are small made-up ones, the data files empty, and
``attnseg`` is a fake that writes what train / resume / evaluate would.
"""

import json
import math
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import zoo as zs  # noqa: E402
from zoolib import cv, cv_report, paths  # noqa: E402
from zoolib import runs as zoo_runs  # noqa: E402

CVC_FRAMES = range(1, 479)  # the 23 sequences of make_splits.CVC_SEQUENCE_STARTS


def _triple(folder: str, stem: str, ext: str = "png", fov: bool = False) -> list:
    return [f"{folder}/images/{stem}.{ext}", f"{folder}/masks/{stem}.png",
            f"{folder}/fov/{stem}.png" if fov else None]  # fmt: skip


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RECIPES", tmp_path / "recipes")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs" / "zoo")
    monkeypatch.setattr(paths, "DATA", tmp_path / "runs" / "data")
    monkeypatch.setattr(paths, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(cv, "DATA_ROOT", tmp_path / "shared")
    splits = tmp_path / "recipes" / "splits"
    splits.mkdir(parents=True)
    cvc = [_triple("CVC-ClinicDB", str(f)) for f in CVC_FRAMES]
    kvasir = [_triple("Kvasir-SEG", f"k{i:04d}x", "jpg") for i in range(300)]
    polyp = {"train": cvc[:380] + kvasir[:260], "val": cvc[380:] + kvasir[260:]}
    vessels = [_triple("DRIVE/train", str(i), fov=True) for i in range(21, 41)]
    keys = [f"dsb/{i:064x}" for i in range(60)] + [f"monuseg/TCGA-{i}" for i in range(6)]
    modality = {k: ("stained" if k.startswith("monuseg") or i % 6 == 0 else
                    "brightfield" if i % 7 == 0 else "fluorescence")
                for i, k in enumerate(keys)}  # fmt: skip
    native = {"seed": 0, "modality": modality, "train": keys[10:], "val": keys[:10]}
    for task, data in (("polyp", polyp), ("vessels", {"train": vessels[:16], "val": vessels[16:]}),
                       ("nuclei_native", native)):  # fmt: skip
        (splits / f"{task}.json").write_text(json.dumps(data))
    for part in (polyp, {"train": vessels}):
        for triple in (f for side in part.values() for t in side for f in t if f):
            (tmp_path / "shared" / triple).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "shared" / triple).write_bytes(b"")
    for name, task, fov in (("unet.vessels", "vessels", True), ("focal_use_net.vessels", "vessels",
                            True), ("unet.polyp", "polyp", False)):  # fmt: skip
        recipe = {"name": name, "task": task, "evaluate": {"fov": fov, "tta": False}}
        (tmp_path / "recipes" / f"{name}.json").write_text(json.dumps(recipe))
    # the data files are empty: the rescaled copies are folders of nothing
    monkeypatch.setattr(cv, "scaled_data", lambda data, scale: data / f"val_x{scale:g}")
    return tmp_path


def _folds(task):
    cv.write_folds(task)
    return json.loads(cv.folds_file(task).read_text())


# -- folds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["polyp", "vessels", "nuclei_native"])
def test_folds_are_deterministic_disjoint_cover_the_pool_and_keep_groups_whole(sandbox, task):
    first = cv.folds_file(task)
    data = _folds(task)
    text = first.read_text()
    assert _folds(task) == data and first.read_text() == text  # deterministic, to the byte
    assert data["k"] == cv.DEFAULT_K[task] == len(data["folds"])
    split = json.loads(cv.split_file(task).read_text())
    pool = [e if isinstance(e, str) else e[0] for e in split["train"] + split["val"]]
    val = [e for f in data["folds"] for e in f["val"]]
    assert sorted(val) == sorted(pool) and len(set(val)) == len(val)  # disjoint, cover
    group_of = {e: g for e, g, _ in cv.pool(task, data["k"])}
    fold_of = {}
    for f in data["folds"]:
        assert f["n_images"] == len(f["val"]) == sum(f["groups"].values())
        for e in f["val"]:
            assert group_of[e] in f["groups"]
            assert fold_of.setdefault(group_of[e], f["fold"]) == f["fold"]  # one fold per group
    sizes = [f["n_images"] for f in data["folds"]]
    biggest = max(Counter(group_of.values()).values())
    assert max(sizes) - min(sizes) <= biggest  # balanced to within one group


def test_polyp_groups_are_cvc_sequences_and_kvasir_hash_groups(sandbox):
    data = _folds("polyp")
    groups = {g for f in data["folds"] for g in f["groups"]}
    assert {g for g in groups if g.startswith("cvc_seq")} == {f"cvc_seq{i:02d}" for i in range(23)}
    assert len([g for g in groups if g.startswith("kvasir_h")]) == cv.KVASIR_PER_FOLD * 5
    for f in data["folds"]:  # every fold holds both sources
        assert f["strata"]["cvc"] > 0 and f["strata"]["kvasir"] > 0
    group_of = {e: g for e, g, _ in cv.pool("polyp", 5)}
    sequence = cv._make_splits().cvc_sequence
    assert group_of["CVC-ClinicDB/images/26.png"] == "cvc_seq01" == f"cvc_seq{sequence(50):02d}"


def test_vessels_four_folds_of_five_images_and_nuclei_strata_spread(sandbox):
    assert [f["n_images"] for f in _folds("vessels")["folds"]] == [5, 5, 5, 5]
    native = _folds("nuclei_native")
    totals = Counter()
    for f in native["folds"]:
        totals.update(f["strata"])
    for stratum in totals:  # each stratum spread evenly over the folds
        counts = [f["strata"].get(stratum, 0) for f in native["folds"]]
        assert max(counts) - min(counts) <= 1, (stratum, counts)


def test_make_folds_balances_unequal_groups():
    items = [(f"{g}/{i}", g, "s") for g, n in (("a", 9), ("b", 5), ("c", 4), ("d", 3), ("e", 3))
             for i in range(n)]  # fmt: skip
    folds = cv.make_folds(items, 2)
    assert sorted(sum(dict(a=9, b=5, c=4, d=3, e=3)[g] for g in f) for f in folds) == [12, 12]
    with pytest.raises(SystemExit):
        cv.make_folds(items, 6)


# -- runs ----------------------------------------------------------------------------------------
class FakeAttnseg:
    """Writes what ``attnseg train`` (a time budget pauses the first sitting) and
    ``attnseg evaluate`` would; the Dice of fold i is ``dice[i]``."""

    def __init__(self, dice):
        self.calls, self.dice = [], dice

    def __call__(self, cmd, log_path, threads, timeout=None):
        self.calls.append(cmd)
        if cmd[1] == "evaluate":
            fold = int(Path(cmd[cmd.index("--json") + 1]).parent.name[4:])
            # the rescaled copies (field of view matched) score 0.1 lower
            dice = self.dice[fold] - (0.1 if "--fov-diameter" in cmd else 0.0)
            Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"mean": {"dice": dice}}))
            return 0
        resume = "--resume" in cmd
        run_dir = Path(cmd[cmd.index("--resume" if resume else "--run-dir") + 1])
        paused = "--time-budget" in cmd and not resume
        status = "time budget reached after epoch 1" if paused else "completed"
        (run_dir / "run.json").write_text(
            json.dumps({"status": f"finished: {status}", "recipe": {"train": {"epochs": 2}}})
        )
        (run_dir / "last.ckpt").write_bytes(b"checkpoint")
        model = run_dir / f"{run_dir.parent.name}.safetensors"  # runs/cv/<name>/fold<i>
        model.write_bytes(b"model")
        evaluation = run_dir / "evaluation.json"
        if evaluation.exists():
            os.utime(evaluation, (0, 0))
        return 0


def test_cv_run_trains_one_run_per_fold_on_its_folds_and_resumes(sandbox, monkeypatch):
    fake = FakeAttnseg([0.70, 0.72, 0.74, 0.76])
    monkeypatch.setattr(zoo_runs, "run_command", fake)
    assert zs.main(["cv", "folds", "vessels"]) == 0
    assert zs.main(["cv", "run", "unet.vessels", "--folds", "4", "--time-budget", "5"]) == 0
    trains = [c for c in fake.calls if c[1] == "train"]
    assert len(trains) == 4 and all("--config" in c for c in trains)
    folds = json.loads(cv.folds_file("vessels").read_text())
    for i, cmd in enumerate(trains):
        run_dir = Path(cmd[cmd.index("--run-dir") + 1])
        assert run_dir == cv.cv_dir() / "unet.vessels" / f"fold{i}"
        val = Path(cmd[cmd.index("--val-images") + 1])
        train = Path(cmd[cmd.index("--images") + 1])
        names = sorted(p.name for p in val.iterdir())
        assert names == sorted(Path(e).name for e in folds["folds"][i]["val"])
        assert len(list(train.iterdir())) == 15 and not set(names) & {p.name for p in
                                                                     train.iterdir()}
        assert all((val / n).resolve().parent == (sandbox / "shared/DRIVE/train/images")
                   for n in names)  # fmt: skip
        assert "--fov" in cmd and "--val-fov" in cmd
    assert not [c for c in fake.calls if "--fov-diameter" in c]  # paused: nothing scored
    meta = json.loads((cv.cv_dir() / "unet.vessels" / "cv.json").read_text())
    assert meta["task"] == "vessels" and meta["k"] == 4

    fake.calls.clear()  # the second sitting resumes every paused fold
    zs.main(["cv", "run", "unet.vessels", "--time-budget", "5"])
    trains = [c for c in fake.calls if c[1] == "train"]
    assert len(trains) == 4 and all(c[2] == "--resume" for c in trains)
    # done: each fold is scored on its ×1.7 copies with the field of view matched, once
    scaled = [c for c in fake.calls if "--fov-diameter" in c]
    assert len(scaled) == 4 and all(c[c.index("--fov-diameter") + 1] == "auto" for c in scaled)
    for i, cmd in enumerate(scaled):
        assert Path(cmd[cmd.index("--images") + 1]).parent.name == "val_x1.7"
        assert cmd[cmd.index("--json") + 1].endswith(f"fold{i}/evaluation_x1.7.json")
    fake.calls.clear()  # done: nothing runs
    zs.main(["cv", "run", "unet.vessels"])
    assert fake.calls == []
    with pytest.raises(SystemExit):  # K must match the folds file
        zs.main(["cv", "run", "unet.vessels", "--folds", "5"])


def test_cv_run_can_run_single_folds(sandbox, monkeypatch):
    fake = FakeAttnseg([0.5] * 4)
    monkeypatch.setattr(zoo_runs, "run_command", fake)
    cv.write_folds("vessels")
    zs.main(["cv", "run", "unet.vessels", "--fold", "2"])
    assert [p.name for p in (cv.cv_dir() / "unet.vessels").glob("fold*")] == ["fold2"]


# -- report --------------------------------------------------------------------------------------
def test_summary_is_mean_sample_std_and_range():
    s = cv_report.summarise({0: 0.70, 1: 0.72, 2: 0.74, 3: 0.76})
    assert s["mean"] == pytest.approx(0.73) and s["n"] == 4
    assert s["std"] == pytest.approx(math.sqrt(0.002 / 3))  # n - 1
    assert (s["min"], s["max"]) == (0.70, 0.76)
    assert math.isnan(cv_report.summarise({0: 0.5})["std"])


def test_a_change_counts_only_when_the_mean_gain_exceeds_the_spread():
    base = {0: 0.70, 1: 0.72, 2: 0.74, 3: 0.76}  # std 0.0258
    small = cv_report.compare(base, {i: v + 0.02 for i, v in base.items()})
    assert small["gain"] == pytest.approx(0.02) and small["spread"] == pytest.approx(0.02582, 1e-3)
    assert not small["counts"]
    big = cv_report.compare(base, {i: v + 0.03 for i, v in base.items()})
    assert big["counts"]
    assert not cv_report.compare(base, {i: v - 0.05 for i, v in base.items()})["counts"]
    noisy = cv_report.compare(base, {0: 0.60, 1: 0.90, 2: 0.80, 3: 0.90})  # gain 0.07, std 0.14
    assert noisy["spread"] > noisy["gain"] > 0 and not noisy["counts"]
    assert cv_report.compare(base, {0: 0.99})["folds"] == [0]  # one common fold: never counts
    assert not cv_report.compare(base, {0: 0.99})["counts"]


def test_report_prints_folds_and_the_verdict_and_feeds_the_docs(sandbox, monkeypatch, capsys):
    cv.write_folds("vessels")
    for name, dice in (("unet.vessels", [0.70, 0.72, 0.74, 0.76]),
                       ("focal_use_net.vessels", [0.75, 0.78, 0.79, 0.80])):  # fmt: skip
        monkeypatch.setattr(zoo_runs, "run_command", FakeAttnseg(dice))
        cv.run_cv(name, log=lambda line: None)
    capsys.readouterr()
    assert zs.main(["cv", "report", "unet.vessels", "focal_use_net.vessels"]) == 0
    out = capsys.readouterr().out
    assert "unet.vessels (vessels, 4 of 4 folds): fold0 0.7000, fold1 0.7200" in out
    assert "mean 0.7300 ± 0.0258 (sample std), min–max 0.7000–0.7600" in out
    assert "focal_use_net.vessels vs unet.vessels: gain +0.0500 ± spread 0.0258: counts" in out
    assert "unet.vessels ×1.7 (vessels, 4 of 4 folds): fold0 0.6000, fold1 0.6200" in out
    assert "focal_use_net.vessels vs unet.vessels ×1.7: gain +0.0500 ± spread 0.0258" in out
    report = json.loads(cv_report.report_file("focal_use_net.vessels").read_text())  # committed
    assert report["recipe_file"].endswith("recipes/focal_use_net.vessels.json")
    assert report["against"]["unet.vessels"]["counts"] is True
    assert report["scaled"]["x1.7"]["mean"] == pytest.approx(0.68)
    assert report["against_x1.7"]["unet.vessels"]["counts"] is True
    lines = cv_report.reports()
    assert len(lines) == 2 and any("gain +0.0500" in line and "counts" in line for line in lines)
    assert any("×1.7 copies (field of view matched): 0.6500" in line for line in lines)


def test_a_recipe_file_runs_under_its_own_name(sandbox, monkeypatch):
    fake = FakeAttnseg([0.5] * 4)
    monkeypatch.setattr(zoo_runs, "run_command", fake)
    cv.write_folds("vessels")
    tries = sandbox / "recipes" / "tries"
    tries.mkdir()
    (tries / "unet.vessels.bigger.json").write_text(
        json.dumps({"name": "unet.vessels", "task": "vessels", "evaluate": {"fov": True}}))
    zs.main(["cv", "run", str(tries / "unet.vessels.bigger.json"), "--fold", "1",
             "--threads", "1"])  # fmt: skip
    train = next(c for c in fake.calls if c[1] == "train")
    assert train[train.index("--config") + 1].endswith("tries/unet.vessels.bigger.json")
    assert (cv.cv_dir() / "unet.vessels.bigger" / "fold1" / "evaluation.json").exists()
    meta = json.loads((cv.cv_dir() / "unet.vessels.bigger" / "cv.json").read_text())
    assert meta["recipe"] == "unet.vessels.bigger"
    with pytest.raises(SystemExit, match="no recipe file"):
        zs.main(["cv", "run", str(tries / "missing.json")])


def test_scaled_copies_are_the_validation_photographs_rescaled(tmp_path):
    import numpy as np
    import tifffile

    data = tmp_path / "fold0"
    for sub in ("images", "masks", "fov"):
        (data / "val" / sub).mkdir(parents=True)
    tifffile.imwrite(data / "val/images/21.tif", np.full((20, 30, 3), 100, np.uint8))
    for sub in ("masks", "fov"):
        tifffile.imwrite(data / "val" / sub / "21.tif", np.ones((20, 30), np.uint8))
    out = cv.scaled_data(data, 1.7)
    assert out == data / "val_x1.7" and (out / "done").exists()
    assert tifffile.imread(out / "images/21.tif").shape == (34, 51, 3)
    assert tifffile.imread(out / "masks/21.tif").shape == (34, 51)
    assert any("`vessels` — 4 folds of 20 groups" in line for line in cv.fold_table())


def test_the_committed_folds_files_are_what_cv_folds_gives():
    """The committed ``recipes/splits/<task>_folds.json`` follow from the committed split
    files alone (no data needed)."""
    for task in cv.CV_TASKS:
        committed = json.loads((ROOT / "recipes" / "splits" / f"{task}_folds.json").read_text())
        assert cv.build_folds(task) == committed
