"""Grouped k-fold validation (issue 25): ``zoo.py cv folds|run|report``.

**Folds.** A task's *pool* is every image of its split file (``recipes/splits/<task>.json``,
training and validation parts; the held-back test images are in no split file and never
used). The pool is cut into *groups* of images that are not independent, and whole groups
are dealt to ``k`` folds:

* ``polyp`` (k 5) — each CVC-ClinicDB video sequence is a group (the published sequence
  starts, ``make_splits.CVC_SEQUENCE_STARTS``); Kvasir-SEG (independent images) is cut into
  ``4 k`` groups by a hash of the file name (several per fold, so the folds balance);
* ``vessels`` (k 4) — DRIVE, one group per image (20 images: 5 per fold);
* ``nuclei_native`` (k 5) — the entries of ``recipes/splits/nuclei_native.json``: a DSB
  image, or a MoNuSeg tile with its four quarters; stratified by source and modality
  (``dsb-fluorescence``, ``dsb-brightfield``, ``dsb-stained``, ``monuseg-stained``) as that
  split is.

Groups are dealt stratum by stratum (polyp: ``cvc``, ``kvasir``), largest first, each to
the fold with the fewest images of its stratum (then the fewest images, then the lowest
number), ties broken by a hash of the group's name: no random generator, the same folds on
every machine. ``recipes/splits/<task>_folds.json`` lists each fold's validation groups and
images (file names only); a fold's training part is the rest of the pool.

**Runs.** ``cv run NAME`` trains recipe ``NAME`` (or a recipe file) once per fold in
``runs/cv/<NAME>/fold<i>/`` through :func:`zoolib.runs.drive` (resumable, scored by
``attnseg evaluate`` on the fold's validation images, and on their rescaled copies for the
tasks of :data:`SCALED`), on folders of symbolic links
``runs/cv/data/<task>/fold<i>/{train,val}/``. ``cv report`` (:mod:`zoolib.cv_report`)
prints each fold's Dice, the mean ± sample standard deviation and the range, and compares
recipes: a change *counts* only when its mean gain exceeds the spread (the larger of the two
recipes' standard deviations across folds).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

from . import paths

SCRIPTS = Path(__file__).resolve().parents[1]
#: the shared data folder (``make_splits.py --data``); tests move it
DATA_ROOT = paths.ROOT.parent / "shared" / "data"
DEFAULT_K = {"polyp": 5, "vessels": 4, "nuclei_native": 5}
#: rescaled copies of each fold's validation images, scored too (issue 25: a fundus camera
#: with a larger field of view is simulated by DRIVE ×1.7, field of view matched: ``auto``)
SCALED = {"vessels": (1.7,)}
CV_TASKS = tuple(DEFAULT_K)
#: Kvasir-SEG groups per fold (file-name hash groups: several per fold balance the folds)
KVASIR_PER_FOLD = 4


def _make_splits():
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import make_splits

    return make_splits


def _hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16)


def cv_dir() -> Path:
    """``runs/cv`` (beside the zoo's runs folder)."""
    return paths.RUNS.parent / "cv"


def split_file(task: str) -> Path:
    return paths.RECIPES / "splits" / f"{task}.json"


def folds_file(task: str) -> Path:
    return paths.RECIPES / "splits" / f"{task}_folds.json"


# -- folds ---------------------------------------------------------------------------------------
def pool(task: str, k: int) -> list[tuple[str, str, str]]:
    """``(entry, group, stratum)`` of every image of ``task``'s split file, in file order.

    ``entry`` is how the split file names the image: its image path (polyp, vessels) or
    its key (nuclei_native, ``dsb/<id>`` or ``monuseg/<id>``)."""
    split = paths.read_json(split_file(task))
    if not split:
        raise SystemExit(f"no split file {paths.rel(split_file(task))}: run make_splits first")
    out = []
    if task == "nuclei_native":
        for key in sorted(split["train"] + split["val"]):
            source = key.split("/", 1)[0]
            out.append((key, key.replace("/", "_"), f"{source}-{split['modality'][key]}"))
        return out
    entries = [e[0] for e in split["train"] + split["val"]]
    for image in sorted(entries):
        stem = Path(image).stem
        if task == "polyp" and image.startswith("CVC-ClinicDB/"):
            seq = _make_splits().cvc_sequence(int(stem))
            out.append((image, f"cvc_seq{seq:02d}", "cvc"))
        elif task == "polyp":
            out.append((image, f"kvasir_h{_hash(stem) % (KVASIR_PER_FOLD * k):02d}", "kvasir"))
        elif task == "vessels":
            out.append((image, f"drive_{stem}", "drive"))
        else:
            raise SystemExit(f"no grouping for task {task!r}; choose {', '.join(CV_TASKS)}")
    return out


def make_folds(items: list[tuple[str, str, str]], k: int) -> list[list[str]]:
    """Deal whole groups to ``k`` folds, balanced by image count within each stratum and
    overall; returns each fold's groups (sorted)."""
    sizes = Counter(group for _, group, _ in items)
    stratum = {group: s for _, group, s in items}
    if len(sizes) < k:
        raise SystemExit(f"{len(sizes)} groups cannot fill {k} folds")
    folds: list[list[str]] = [[] for _ in range(k)]
    total = [0] * k
    for s in sorted(set(stratum.values())):
        inside = [0] * k
        groups = sorted((g for g in sizes if stratum[g] == s), key=lambda g: (-sizes[g], _hash(g)))
        for group in groups:
            i = min(range(k), key=lambda f: (inside[f], total[f], f))
            folds[i].append(group)
            inside[i] += sizes[group]
            total[i] += sizes[group]
    return [sorted(f) for f in folds]


def build_folds(task: str, k: int | None = None) -> dict:
    """The content of ``recipes/splits/<task>_folds.json``."""
    k = k or DEFAULT_K.get(task, 5)
    items = pool(task, k)
    groups = make_folds(items, k)
    folds = []
    for i, chosen in enumerate(groups):
        chosen_set = set(chosen)
        val = [e for e, g, _ in items if g in chosen_set]
        strata = Counter(s for _, g, s in items if g in chosen_set)
        folds.append({
            "fold": i,
            "n_images": len(val),
            "strata": dict(sorted(strata.items())),
            "groups": {g: sum(1 for _, h, _ in items if h == g) for g in chosen},
            "val": val,
        })  # fmt: skip
    return {
        "task": task,
        "k": k,
        "pool": f"recipes/splits/{task}.json, training and validation parts ({len(items)} images)",
        "n_groups": len({g for _, g, _ in items}),
        "grouping": GROUPING.get(task, ""),
        "folds": folds,
    }


GROUPING = {
    "polyp": "each CVC-ClinicDB video sequence (make_splits.CVC_SEQUENCE_STARTS) is a group; "
    "Kvasir-SEG into 4k groups by the SHA-1 of the file stem mod 4k; strata cvc, kvasir",
    "vessels": "one group per DRIVE image",
    "nuclei_native": "one group per split entry (a DSB image, or a MoNuSeg tile with its four "
    "quarters); strata: source and modality (recipes/splits/nuclei_native.json)",
}


def write_folds(task: str, k: int | None = None) -> Path:
    data = build_folds(task, k)
    path = folds_file(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{task}: {data['k']} folds of {data['n_groups']} groups, images per fold "
          f"{[f['n_images'] for f in data['folds']]} -> {paths.rel(path)}")  # fmt: skip
    for f in data["folds"]:
        n = f"{f['n_images']} images, {len(f['groups'])} groups"
        print(f"  fold{f['fold']}: {n}, {f['strata']}")
    return path


def read_folds(task: str) -> dict:
    data = paths.read_json(folds_file(task))
    if not data:
        raise SystemExit(f"no {paths.rel(folds_file(task))}: `zoo.py cv folds {task}` writes it")
    return data


# -- fold data folders ---------------------------------------------------------------------------
def _files(task: str, entry: str, data_root: Path, triples: dict[str, list]
           ) -> list[tuple[str | None, dict[str, Path]]]:
    """``(link name, {kind: source file})`` of one pool entry (name None: the link name
    that ``make_splits.py`` gives)."""
    if task == "nuclei_native":
        prepared = paths.DATA / "nuclei_native"
        source, stem = entry.split("/", 1)
        names = ([f"dsb_{stem[:16]}"] if source == "dsb" else
                 [f"monuseg_{stem}_q{i}" for i in range(4)])  # fmt: skip
        out = []
        for name in names:
            found = [s for s in ("val", "train")
                     if (prepared / s / "images" / f"{name}.png").exists()]  # fmt: skip
            side = found[0] if found else "train"
            out.append((f"{name}.png", {kind: prepared / side / kind / f"{name}.png"
                                        for kind in ("images", "masks")}))  # fmt: skip
        return out
    triple = triples[entry]
    kinds = zip(("images", "masks", "fov"), triple, strict=False)
    return [(None, {kind: data_root / f for kind, f in kinds if f})]


def _triples(task: str) -> dict[str, list]:
    """``{image: [image, mask, fov]}`` of the task's split file."""
    split = paths.read_json(split_file(task))
    return {e[0]: e for e in split.get("train", []) + split.get("val", [])
            if isinstance(e, list)}  # fmt: skip


def fold_data(task: str, fold: int, data_root: Path | None = None) -> Path:
    """``runs/cv/data/<task>/fold<i>/{train,val}/{images,masks[,fov]}``: links to the pool's
    files, following the folds file (rewritten only where they differ from it)."""
    data_root = data_root or DATA_ROOT
    folds = read_folds(task)
    val = set(folds["folds"][fold]["val"])
    entries = [e for f in folds["folds"] for e in f["val"]]
    out = cv_dir() / "data" / task / f"fold{fold}"
    link, triples = _make_splits().link_name, _triples(task)
    wanted: dict[Path, Path] = {}
    for entry in entries:
        side = "val" if entry in val else "train"
        for name, files in _files(task, entry, data_root, triples):
            for kind, source in files.items():
                target = name or link(str(source.relative_to(data_root)))
                wanted[out / side / kind / target] = source.resolve()
    have = {p: Path(os.readlink(p)) for p in out.glob("*/*/*") if p.is_symlink()}
    if have != wanted:
        for old in out.glob("*/*/*"):
            old.unlink()
        for target, source in wanted.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(source, target)
    return out


# -- runs ----------------------------------------------------------------------------------------
def recipe_file(name: str, variant: str = "compact") -> tuple[str, Path]:
    """``(run name, recipe file)`` of ``name``: a zoo recipe's name (``recipes/<name>.json``)
    or the path of a recipe file, e.g. a try in ``recipes/tries/`` (run name: its stem)."""
    if name.endswith(".json"):
        path = Path(name)
        path = path if path.is_absolute() else paths.ROOT / path
        if not path.is_file():
            raise SystemExit(f"no recipe file {name}")
        return path.stem, path
    path = paths.recipes_dir(variant) / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"no recipe {name} ({paths.rel(path)})")
    return name, path


#: the parts of a recipe that decide what is trained (not its name, notes or card)
TRAINED_BY = ("arch", "options", "data", "train", "init")


def fingerprint(recipe: dict) -> str:
    """SHA-256 of what a recipe trains (:data:`TRAINED_BY`): a try and the zoo recipe that
    adopts it have the same one, so the try's fold figures are the shipped model's."""
    trained = {k: recipe[k] for k in TRAINED_BY if k in recipe}
    return hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()


def cv_task(name: str, variant: str = "compact") -> str:
    """The task whose folds a recipe is validated on: a CV task whose split file the recipe
    names (e.g. ``recipes/splits/nuclei_native.json``), else the recipe's own task."""
    r = paths.read_json(recipe_file(name, variant)[1])
    if not r:
        raise SystemExit(f"no recipe {name}")
    text = json.dumps(r)
    named = [t for t in CV_TASKS if f"recipes/splits/{t}.json" in text]
    return named[0] if named else r["task"]


def evaluate_command(model: Path, folder: Path, result: Path, *, fov: bool, extra: list[str],
                     device: str) -> list[str]:  # fmt: skip
    """``attnseg evaluate`` of ``model`` on ``folder/{images,masks[,fov]}`` into ``result``."""
    rel = paths.rel
    cmd = ["attnseg", "evaluate", "--model", rel(model)]
    cmd += ["--images", rel(folder / "images"), "--masks", rel(folder / "masks")]
    cmd += ["--fov", rel(folder / "fov")] if fov else []
    return [*cmd, *extra, "--json", rel(result), "--device", device, "--quiet"]


def fold_run(name: str, fold: int, data: Path, variant: str = "compact", device: str = "auto"):
    from .runs import Run

    rel = paths.rel
    name, recipe_path = recipe_file(name, variant)
    r = paths.read_json(recipe_path)
    fov = bool(r.get("evaluate", {}).get("fov"))
    run_dir = cv_dir() / name / f"fold{fold}"
    model = run_dir / f"{name}.safetensors"
    train = ["attnseg", "train", "--config", rel(recipe_path)]
    train += ["--images", rel(data / "train/images"), "--masks", rel(data / "train/masks")]
    train += ["--fov", rel(data / "train/fov")] if fov else []
    train += ["--val-images", rel(data / "val/images"), "--val-masks", rel(data / "val/masks")]
    train += ["--val-fov", rel(data / "val/fov")] if fov else []
    train += ["--out", rel(model), "--run-dir", rel(run_dir), "--device", device, "--quiet"]
    tta = ["--tta"] if r.get("evaluate", {}).get("tta") else []
    evaluate = evaluate_command(model, data / "val", run_dir / "evaluation.json", fov=fov,
                                extra=tta, device=device)  # fmt: skip
    return Run(f"{name}/fold{fold}", run_dir, model, train, evaluate, kind="cv")


def run_cv(
    name: str,
    *,
    k: int | None = None,
    only: list[int] | None = None,
    task: str | None = None,
    variant: str = "compact",
    time_budget: float | None = None,
    epochs: int | None = None,
    precision: str | None = None,
    device: str = "auto",
    force: bool = False,
    threads: int | None = None,
    data_root: Path | None = None,
    log=print,
) -> list[dict]:
    """``cv run``: one run per fold (started, resumed or skipped as ``zoo.py train`` does),
    then ``runs/cv/<name>/cv.json``."""
    from . import runs

    task = task or cv_task(name, variant)
    folds = read_folds(task)
    if k is not None and k != folds["k"]:
        raise SystemExit(f"{paths.rel(folds_file(task))} has {folds['k']} folds, not {k}: "
                         f"`zoo.py cv folds {task} --k {k}` rewrites it")  # fmt: skip
    run_name, recipe_path = recipe_file(name, variant)
    if paths.read_json(recipe_path).get("init"):
        log(f"warning: {name} starts from saved weights (its `init`), which may have seen "
            "every fold's validation images: its fold scores are optimistic")  # fmt: skip
    records = []
    for i in only if only is not None else range(folds["k"]):
        data = fold_data(task, i, data_root)
        run = fold_run(name, i, data, variant, device)
        record = runs.drive(run, threads=threads or runs._threads(1), time_budget=time_budget,
                            epochs=epochs, precision=precision, force=force, log=log)  # fmt: skip
        for scale in SCALED.get(task, ()):
            if record.get("state") == "done":
                record[f"dice_x{scale:g}"] = score_scaled(run, data, scale, threads or
                                                          runs._threads(1), log)  # fmt: skip
        records.append({**record, "fold": i})
    summary = {"recipe": run_name, "recipe_file": paths.rel(recipe_path),
               "fingerprint": fingerprint(paths.read_json(recipe_path)), "task": task,
               "k": folds["k"], "folds_file": paths.rel(folds_file(task)),
               "folds_sha256": _sha(folds_file(task))}  # fmt: skip
    paths.write_json(cv_dir() / run_name / "cv.json", summary)
    return records


def scaled_data(data: Path, scale: float) -> Path:
    """``<fold>/val_x<scale>/{images,masks,fov}``: the fold's validation photographs, masks
    and field-of-view masks rescaled by ``scale`` (``scripts/fov_study.py``'s copies),
    written once (``done`` marks a complete copy)."""
    out = data / f"val_x{scale:g}"
    if not (out / "done").exists():
        _make_splits()  # puts scripts/ on the path
        from fov_study import rescaled_copy

        rescaled_copy(data / "val/images", data / "val/masks", data / "val/fov", scale, out)
        (out / "done").write_text("")
    return out


def ensure_fov_card(model: Path, train_images: Path, threads: int, log_path: Path) -> None:
    """Give a fundus fold model's card its training field of view when it lacks one (models
    trained before ``training.workflows.record_fov`` existed): ``scripts/card_fov.py``."""
    card_path = model.with_suffix(".json")
    card = paths.read_json(card_path)
    if (card.get("roi") or {}).get("method") != "fundus" or card.get("fov_diameter"):
        return
    import subprocess

    cmd = [sys.executable, str(SCRIPTS / "card_fov.py"), "--images", str(train_images),
           str(card_path)]  # fmt: skip
    with open(log_path, "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=paths.ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})  # fmt: skip


def score_scaled(run, data: Path, scale: float, threads: int, log=print) -> float | None:
    """Score a fold's model on its validation images rescaled by ``scale``, the field of view
    matched (``--fov-diameter auto``): ``<run>/evaluation_x<scale>.json``; its Dice."""
    from . import runs

    result = run.run_dir / f"evaluation_x{scale:g}.json"
    if not runs._fresh(result, run.model):
        ensure_fov_card(run.model, data / "train/images", threads, run.run_dir / "log.txt")
        copy = scaled_data(data, scale)
        cmd = evaluate_command(run.model, copy, result, fov=True,
                               extra=["--fov-diameter", "auto"], device="cpu")  # fmt: skip
        if runs.run_command(cmd, run.run_dir / "log.txt", threads) != 0:
            log(f"{run.label}: scoring ×{scale:g} FAILED, see {paths.rel(run.run_dir)}/log.txt")
            return None
    dice = paths.read_json(result).get("mean", {}).get("dice")
    log(f"{run.label}: ×{scale:g} copies (field of view matched) dice {dice:.4f}")
    return dice


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- docs ----------------------------------------------------------------------------------------
def fold_table() -> list[str]:
    """One line per committed folds file: groups and images per fold."""
    lines = []
    for task in CV_TASKS:
        data = paths.read_json(folds_file(task))
        if not data:
            continue
        per = ", ".join(f"{f['n_images']} ({len(f['groups'])})" for f in data["folds"])
        lines.append(f"* `{task}` — {data['k']} folds of {data['n_groups']} groups "
                     f"({data['grouping']}); images (groups) per fold: {per}; "
                     f"`recipes/splits/{task}_folds.json`")  # fmt: skip
    return lines
