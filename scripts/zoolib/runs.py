"""Run folders (``runs/zoo/<name>/``; the layout: ``scripts/zoo.py``): start, resume,
extend and score the zoo's runs. :func:`run_state` reads a folder, :func:`drive` takes
it one sitting further, :class:`RunLock` keeps a second driver out; :func:`train_all`
is ``zoo.py train``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .cards import _dice, shipped_cards
from .recipes import recipe_names

RUN_FILE = "run.json"  # written by attnseg train (training/recipe.py)
LOCK_FILE = ".zoo.lock"
#: a run marked running that wrote a file this recently may be training now (by hand)
RUNNING_GRACE_S = 1800.0


@dataclass
class Run:
    """One training run: its folder, model file, and the commands that start and score it.

    ``units`` counts its trainings (2 for the Focal pruning workflow, which trains twice
    and cannot be resumed); ``prepare`` writes what the start command reads (a derived
    recipe) just before a new run starts.
    """

    label: str
    run_dir: Path
    model: Path
    train: list[str]
    evaluate: list[str]
    units: int = 1
    kind: str = "zoo"
    prepare: Callable[[], None] | None = None
    resumable: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


def _bare_run(name: str, run_dir: Path) -> Run:
    """A run folder to inspect (no commands): its model is ``<name>.safetensors``."""
    return Run(name, run_dir, run_dir / f"{name}.safetensors", [], [])


def commands(
    name: str, run_dir: Path, variant: str = "compact", device: str = "auto"
) -> tuple[list[str], list[str]]:
    """The ``attnseg train`` command that starts ``name``'s run and the ``attnseg evaluate``
    command that scores its model on the validation split."""
    rel, path = paths.rel, paths.recipes_dir(variant) / f"{name}.json"
    r = json.loads(path.read_text())
    split = paths.split(r["task"])
    model = run_dir / f"{name}.safetensors"
    train = ["attnseg", "train", "--config", rel(path)]
    train += ["--images", rel(split / "train/images"), "--masks", rel(split / "train/masks")]
    if r["evaluate"]["fov"]:
        train += ["--fov", rel(split / "train/fov")]
    train += ["--val-images", rel(split / "val/images"), "--val-masks", rel(split / "val/masks")]
    if r["evaluate"]["fov"]:
        train += ["--val-fov", rel(split / "val/fov")]
    train += ["--out", rel(model), "--run-dir", rel(run_dir), "--device", device, "--quiet"]
    evaluate = ["attnseg", "evaluate", "--model", rel(model)]
    evaluate += ["--images", rel(split / "val/images"), "--masks", rel(split / "val/masks")]
    if r["evaluate"]["fov"]:
        evaluate += ["--fov", rel(split / "val/fov")]
    if r["evaluate"]["tta"]:
        evaluate.append("--tta")
    evaluate += ["--json", rel(run_dir / "evaluation.json"), "--device", device, "--quiet"]
    return train, evaluate


def zoo_run(
    name: str, variant: str = "compact", device: str = "auto", runs: Path | None = None
) -> Run:
    run_dir = (runs or paths.runs_dir(variant)) / name
    train, evaluate = commands(name, run_dir, variant, device)
    return Run(name, run_dir, run_dir / f"{name}.safetensors", train, evaluate)


def _run_spec(run_dir: Path, name: str = "") -> tuple[dict, Path | None]:
    """``run.json`` of a run folder: in it, or in ``<name>.run/`` (attnseg train's default)."""
    for path in (run_dir / RUN_FILE, run_dir / f"{name}.run" / RUN_FILE):
        if path.is_file():
            return paths.read_json(path), path
    return {}, None


def _lock_holder(run_dir: Path) -> int | None:
    """The live process that holds a run folder's lock, if any."""
    try:
        pid = int((run_dir / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


class RunLock:
    """A run folder's lock file (this process's id), so that two drivers never train
    the same run at once; a lock left by a dead process is taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = _lock_holder(self.path.parent)
        if holder is not None and holder != os.getpid():
            raise RuntimeError(f"{paths.rel(self.path.parent)} is in use by process {holder}")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _epochs(status: str) -> int | None:
    match = re.search(r"after epoch (\d+)", status)
    return int(match.group(1)) if match else None


def _fresh(result: Path, source: Path) -> bool:
    return result.exists() and source.exists() and result.stat().st_mtime >= source.stat().st_mtime


def run_state(run: Run, force: bool = False) -> tuple[str, str]:
    """``(state, detail)`` of a run folder. States:

    ``busy`` another driver holds it, or its ``run.json`` says running and the run
    wrote a file less than :data:`RUNNING_GRACE_S` ago (an ``attnseg train`` started
    by hand may be at work; ``force`` resumes it anyway); ``new`` nothing to continue;
    ``unfinished`` interrupted or still marked running, with a checkpoint (resume it);
    ``paused`` stopped by its time budget before its last epoch (resume it);
    ``trained`` finished, not yet evaluated; ``done`` finished and evaluated.
    A folder written before run folders existed (a model and ``evaluation.json``,
    no ``run.json``) counts as finished.
    """
    holder = _lock_holder(run.run_dir)
    if holder is not None and holder != os.getpid():
        return "busy", f"in use by process {holder}"
    spec, spec_path = _run_spec(run.run_dir, run.model.stem)
    status = spec.get("status", "")
    has_ckpt = bool(spec_path) and (spec_path.parent / "last.ckpt").exists()
    evaluated = _fresh(run.run_dir / "evaluation.json", run.model)
    if spec_path is None:
        if run.model.exists():
            return ("done" if evaluated else "trained"), "trained before run folders"
        return "new", "not started"
    if status.startswith("finished"):
        if not run.model.exists():
            return "new", f"{status}, but its model file is missing"
        epoch, total = _epochs(status), spec.get("recipe", {}).get("train", {}).get("epochs")
        if "time budget" in status and has_ckpt and run.resumable and (epoch or 0) < (total or 0):
            return "paused", f"{status} of {total}"
        return ("done" if evaluated else "trained"), status
    if status == "running" and not force:
        files = [spec_path, *(spec_path.parent / n for n in ("last.ckpt", "best.safetensors"))]
        age = time.time() - max(p.stat().st_mtime for p in files if p.exists())
        if age < RUNNING_GRACE_S:
            return "busy", (
                f"marked running, last written {age / 60:.0f} min ago: another attnseg train "
                "may be at work (--force resumes it anyway)"
            )
    if has_ckpt and run.resumable:
        return "unfinished", status or "no status"
    return "new", f"{status or 'no status'}; nothing to resume"


def _can_extend(run: Run, epochs: int | None) -> bool:
    """A completed run (not early-stopped) with a checkpoint trains on to ``epochs``."""
    spec, spec_path = _run_spec(run.run_dir, run.model.stem)
    if not epochs or spec_path is None or not (spec_path.parent / "last.ckpt").exists():
        return False
    done = spec.get("recipe", {}).get("train", {}).get("epochs", 0)
    return spec.get("status", "").startswith("finished: completed") and done < epochs


def run_command(cmd: list[str], log_path: Path, threads: int, timeout: float | None = None) -> int:
    """Run an ``attnseg`` command line from the repository root, appending to ``log_path``.

    ``timeout`` (seconds) interrupts it (SIGINT: the run is saved as interrupted and
    can be resumed), then kills it 30 s later.
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    full = [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(full, cwd=paths.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.write(f"(stopped: over its {timeout:.0f} s)\n")
            return 124


def _record_sitting(run: Run, cmd: list[str], threads: int, seconds: float, rc: int) -> None:
    path = run.run_dir / "commands.json"
    data = paths.read_json(path)
    if "--config" in cmd and "--resume" not in cmd:
        data["train"] = shlex.join(cmd)  # the command a model card shows
        data["threads"] = threads
        data["sittings"] = []
    spec, _ = _run_spec(run.run_dir, run.model.stem)
    data.setdefault("threads", threads)
    data.setdefault("sittings", []).append(
        {
            "command": shlex.join(cmd),
            "threads": threads,
            "seconds": round(seconds, 1),
            "returncode": rc,
            "status": spec.get("status", ""),
        }
    )
    data["total_seconds"] = round(sum(s["seconds"] for s in data["sittings"]), 1)
    paths.write_json(path, data)


def _evaluation(run: Run) -> dict:
    return paths.read_json(run.run_dir / "evaluation.json")


def drive(
    run: Run,
    *,
    threads: int,
    time_budget: float | None = None,
    epochs: int | None = None,
    precision: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Bring one run as far as it goes in one sitting: start, resume or extend its
    training, then score its model. Returns what it did and reached (a JSON-able dict)."""
    state, detail = run_state(run, force)
    where = paths.rel(run.run_dir)
    record: dict[str, Any] = {"run": run.label, "kind": run.kind, "run_dir": where}
    record.update(before=state, units=run.units)
    if state == "busy":
        log(f"{run.label}: skipped, {detail} ({where})")
        return {**record, "state": "busy"}
    flags = []
    if time_budget is not None:
        flags += ["--time-budget", f"{max(time_budget, 0):g}"]
    if epochs is not None:
        flags += ["--epochs", str(epochs)]
    if precision is not None:
        flags += ["--precision", precision]
    resume = ["attnseg", "train", "--resume", where, "--quiet", *flags]
    cmd = None
    if state == "new":
        cmd, what = [*run.train, *flags], "starting"
    elif state in ("unfinished", "paused"):
        cmd, what = resume, f"resuming ({detail})"
    elif _can_extend(run, epochs):
        cmd, what = resume, f"training on to {epochs} epochs ({detail})"
    t0 = time.time()
    try:
        with RunLock(run.run_dir):
            if cmd is not None:
                if state == "new" and run.prepare is not None:
                    run.prepare()
                log(f"{run.label}: {what} in {where}")
                rc = run_command(cmd, run.run_dir / "log.txt", threads, timeout)
                _record_sitting(run, cmd, threads, time.time() - t0, rc)
                if rc != 0:
                    log(f"{run.label}: FAILED (exit {rc}), see {where}/log.txt")
                    return {**record, "state": "failed", "returncode": rc,
                            "seconds": round(time.time() - t0, 1)}  # fmt: skip
            state, detail = run_state(run)
            if state in ("trained", "paused") and run.model.exists():
                if not _fresh(run.run_dir / "evaluation.json", run.model):
                    rc = run_command(run.evaluate, run.run_dir / "log.txt", threads, timeout)
                    data = paths.read_json(run.run_dir / "commands.json")
                    data["evaluate"] = shlex.join(run.evaluate)
                    paths.write_json(run.run_dir / "commands.json", data)
                    if rc != 0:
                        log(f"{run.label}: evaluation FAILED (exit {rc}), see {where}/log.txt")
                        return {**record, "state": "failed", "returncode": rc}
                state = "done" if state == "trained" else state
    except RuntimeError as exc:  # the lock was taken in between
        log(f"{run.label}: skipped, {exc}")
        return {**record, "state": "busy"}
    spec, _ = _run_spec(run.run_dir, run.model.stem)
    evaluation = _evaluation(run)
    dice = evaluation.get("mean", {}).get("dice")
    record.update(
        state=state,
        status=spec.get("status", detail),
        dice=dice,
        seconds=round(time.time() - t0, 1),
        trained_seconds=paths.read_json(run.run_dir / "commands.json").get("total_seconds"),
    )
    score = f"validation dice {dice:.4f}" if dice is not None else "no evaluation"
    verb = "already done" if cmd is None and record["before"] == "done" else state
    log(f"{run.label}: {verb}, {score}; {record['status']} ({where})")
    return record


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 2) // max(1, jobs))


def train_all(
    names: list[str],
    *,
    variant: str = "compact",
    jobs: int = 1,
    time_budget: float | None = None,
    epochs: int | None = None,
    precision: str | None = None,
    device: str = "auto",
    on_done: Callable[[str], None] | None = None,
    force: bool = False,
) -> list[dict]:
    """``train``: drive every named run (all recipes of ``variant`` by default), ``jobs`` at
    a time; ``on_done(name)`` (packaging, in ``zoo.py train --package``) runs as soon as a
    run is done, one at a time."""
    names = names or recipe_names(variant)
    unknown = sorted(set(names) - set(recipe_names(variant)))
    if unknown:
        raise SystemExit(f"no {variant} recipe for {unknown}; run `zoo.py recipes` first?")
    threads = _threads(jobs)
    print(
        f"{len(names)} run(s), {jobs} at a time with {threads} thread(s) each; run folders "
        f"in {paths.rel(paths.runs_dir(variant))}/"
        + (f"; {time_budget:g} s per sitting" if time_budget else ""),
        flush=True,
    )
    lock = threading.Lock()

    def one(name: str) -> dict:
        record = drive(
            zoo_run(name, variant, device),
            threads=threads,
            time_budget=time_budget,
            epochs=epochs,
            precision=precision,
            force=force,
            log=lambda line: print(line, flush=True),
        )
        if on_done is not None and record["state"] == "done":
            with lock:  # one at a time: packagings all rewrite index.json and docs
                on_done(name)
        return record

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, names))


def status(names: list[str], variant: str = "compact", runs: Path | None = None) -> None:
    """``status``: every run's state and validation Dice, and the shipped model's."""
    shipped, folder = shipped_cards(), runs or paths.runs_dir(variant)
    names = names or sorted(set(recipe_names(variant)) | {p.name for p in folder.glob("*.*")})
    for name in names:
        run = _bare_run(name, folder / name)
        state, detail = run_state(run)
        dice = _evaluation(run).get("mean", {}).get("dice")
        ship = _dice(shipped[name]) if name in shipped else None
        print(
            f"{name:32} {state:10} "
            + (f"val {dice:.4f} " if dice is not None else "")
            + (f"(shipped {ship:.4f}) " if ship is not None else "")
            + f"{detail}  [{paths.rel(run.run_dir)}]"
        )
