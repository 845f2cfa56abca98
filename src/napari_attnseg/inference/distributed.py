"""Prediction on a Dask cluster: one task per file, each worker loading the model once.

A model travels to workers as a :class:`ModelRef` — the name the user gave
(zoo name, task, path), the weights file it resolved to, and that file's
SHA-256 — never as a pickled network. Each worker process loads it on first
use and keeps it (:func:`cached_model`, keyed by file, modification time and
device), so a run of thousands of files loads it once per process; a file
that differs from the one the run started with is refused by hash.

:func:`predict_files` runs ``Predictor.predict`` on each file exactly as the
single-process ``attnseg predict`` does and writes ``<stem>.tif`` (and
``probabilities/<stem>.tif``) atomically. It **resumes**: after each file a
small marker ``.attnseg/<stem>.json`` records the input (size, mtime), the
model hash and the settings; a file whose outputs and matching marker exist
is skipped, so a stopped run continues where it was and a run with another
model or other settings redoes everything.
Naming, the refusals (shared stems, outputs on inputs), the markers and the
work of one file are the engine's (:mod:`napari_attnseg.inference.files`), shared
with ``attnseg predict`` and the widget's batch; this module only decides where
each file runs.

Without a client everything runs in this process, one file after another
(the napari path); with a ``dask.distributed.Client`` — from
:func:`local_client` (a LocalCluster of worker processes) or
:func:`connect` (a running cluster: ``tcp://host:8786`` or a scheduler file)
— files are Dask tasks. Progress is a ``progress(done, total, message)``
callback, or :data:`DASK_PROGRESS` for Dask's own progress bar.

Workers need the model file at the same path (a shared file system) or must
have napari-attnseg installed for zoo names, and must read the inputs and write
the outputs at the paths the client gives.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

try:
    import dask
    from dask.distributed import Client, LocalCluster
    from dask.distributed import progress as dask_progress
    from dask.distributed import wait as dask_wait
except ImportError as exc:  # pragma: no cover - the extra is part of the test environment
    raise ImportError(
        "distributed prediction needs Dask's distributed scheduler: "
        "pip install 'napari-attnseg[distributed]'"
    ) from exc

from ..models.base import SegmentationModel
from ..models.card import ModelCard
from ..models.persistence import card_path, file_sha256, load_model, read_card
from ..progress import Cancelled, CancelToken, ProgressCallback, check, report
from .files import (
    Item,
    Outputs,
    Resume,
    fingerprint,
    outputs_for,
    predict_item,
    refuse_overwrite,
    refuse_shared_stems,
    run_items,
    settings_fingerprint,
)
from .predictor import InferenceSettings, Predictor

#: ``progress=DASK_PROGRESS``: show Dask's own progress bar (``dask.distributed.progress``)
DASK_PROGRESS = "dask"

Progress = ProgressCallback | str | None


# -- naming a model ------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A saved model as workers receive it: its name, its weights file and that file's hash."""

    name: str
    path: str
    sha256: str

    @classmethod
    def resolve(cls, spec: str | os.PathLike | ModelRef) -> ModelRef:
        """The model a MODEL argument names (zoo name, task, user model, path or URL)."""
        if isinstance(spec, ModelRef):
            return spec
        from ..zoo import resolve  # the zoo imports the model registry; only needed here

        path = resolve(spec).resolve()
        return cls(str(spec), str(path), file_sha256(path))

    def card(self) -> dict[str, Any]:
        """The saved card document (read on the client; no weights are loaded)."""
        return read_card(self.path)


#: how a model may be given: zoo name, task or path, a reference, or (in-process only) a network
ModelSpec = str | os.PathLike | ModelRef | SegmentationModel


def model_sha256(model: SegmentationModel) -> str:
    """A hash of a network in memory: config, card and every tensor (for resume markers)."""
    card = model.card.to_dict() if model.card is not None else None
    text = json.dumps([model.config, card], sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: ModelSpec) -> tuple[ModelRef | None, SegmentationModel | None, str]:
    """``(reference, network, sha256)``: a file-backed reference, or a network in memory."""
    if isinstance(model, SegmentationModel):
        return None, model, model_sha256(model)
    ref = ModelRef.resolve(model)
    return ref, None, ref.sha256


def require_reference(ref: ModelRef | None, client: Client | None) -> None:
    if client is not None and ref is None:
        raise ValueError(
            "a Dask cluster needs the model as a file or zoo name (workers load it "
            "themselves); a network in memory is never sent to workers"
        )


# -- the model in each worker -----------------------------------------------------
_CACHE: OrderedDict[tuple, SegmentationModel] = OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()
_LOADS = 0


def cached_model(ref: ModelRef, device: torch.device) -> SegmentationModel:
    """``ref``'s network on ``device``, loaded once per process and kept (never unpickled)."""
    global _LOADS
    path = Path(ref.path)
    if not path.is_file():  # another machine: zoo names resolve to its own installed weights
        from ..zoo import resolve

        try:
            path = resolve(ref.name)
        except (ValueError, FileNotFoundError) as exc:
            raise FileNotFoundError(
                f"model {ref.name!r} ({ref.path}) is not readable on this worker; give workers "
                "the model on a shared file system or use a zoo name"
            ) from exc
    card = card_path(path)
    stamps = [(p.stat().st_mtime_ns, p.stat().st_size) for p in (path, card) if p.is_file()]
    key = (str(path), *stamps, str(device))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        if file_sha256(path) != ref.sha256:
            raise ValueError(
                f"the model file {path} on this worker differs from the one the run started "
                "with (SHA-256 mismatch); restart the run"
            )
        model = load_model(path, device=device)
        _LOADS += 1
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return model


def model_loads() -> int:
    """How many times this process has loaded a model from disk (``client.run(model_loads)``)."""
    return _LOADS


def with_card(model: SegmentationModel, **changes) -> SegmentationModel:
    """The same network (shared weights, no copy of tensors) with a changed card."""
    card = model.card if model.card is not None else ModelCard(name=model.name)
    clone = copy.copy(model)
    clone.card = replace(card, **changes)
    return clone


def limit_threads(threads: int | None) -> None:
    """Set PyTorch's intra-op threads of this (worker) process, when asked."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# -- clusters ---------------------------------------------------------------------
@contextmanager
def local_client(
    workers: int,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    dashboard_address: str | None = ":8787",
) -> Iterator[Client]:
    """A client of a new LocalCluster of ``workers`` processes, closed (with it) on exit."""
    if workers < 1 or threads_per_worker < 1:
        raise ValueError(
            f"need at least one worker and one thread per worker, got {workers} and "
            f"{threads_per_worker}"
        )
    # Dask's nannies export MALLOC_TRIM_THRESHOLD_ to their workers, which turns off glibc's
    # dynamic mmap threshold: every large PyTorch tensor is then mapped and zero-filled afresh,
    # a large slowdown for convolutions on CPU (see mallopt(3), M_TRIM_THRESHOLD). Not here.
    no_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with (
        dask.config.set(no_trim),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextmanager
def connect(
    address: str | None = None, *, scheduler_file: str | None = None, timeout: float = 10.0
) -> Iterator[Client]:
    """A client of a running Dask cluster (scheduler address or scheduler file), closed on exit."""
    if (address is None) == (scheduler_file is None):
        raise ValueError("give either a scheduler address or a scheduler file")
    if scheduler_file is not None:
        if not Path(scheduler_file).is_file():
            raise FileNotFoundError(f"scheduler file not found: {scheduler_file}")
        target = f"the Dask scheduler in {scheduler_file}"
    else:
        if ":" not in address:
            raise ValueError(f"not a scheduler address: {address!r} (expected tcp://HOST:PORT)")
        target = f"the Dask scheduler at {address}"
    try:
        client = Client(address, scheduler_file=scheduler_file, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise OSError(f"cannot reach {target} within {timeout:g} s: {reason}") from None
    with client:
        yield client


# -- running tasks -----------------------------------------------------------------
def run_futures(
    client: Client,
    futures: Sequence[Any],
    names: Sequence[str],
    *,
    progress: Progress = None,
    cancel: CancelToken | None = None,
    unit: str = "task",
) -> tuple[list[Any], list[tuple[str, BaseException]]]:
    """Wait for ``futures``: ``(results in order (None where failed), [(name, error)])``.

    A failure does not stop the others. ``cancel`` cancels what is still
    queued or running and raises :class:`~napari_attnseg.progress.Cancelled`.
    """
    futures = list(futures)
    try:
        if progress == DASK_PROGRESS:
            if futures:
                dask_progress(futures)
        else:
            total = len(futures)
            done = 0
            report(progress, 0, total, f"0/{total} {unit}s")
            pending = set(futures)
            while pending:
                check(cancel)
                try:
                    finished = dask_wait(pending, timeout=0.25, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                pending = set(finished.not_done)
                done = total - len(pending)
                report(progress, done, total, f"{done}/{total} {unit}s")
    except (Cancelled, KeyboardInterrupt):
        client.cancel(futures)
        raise
    results: list[Any] = []
    errors: list[tuple[str, BaseException]] = []
    for name, future in zip(names, futures, strict=True):
        if future.status == "finished":
            results.append(future.result())
            continue
        results.append(None)
        try:
            future.result()
        except BaseException as exc:  # reported below with the file it belongs to
            errors.append((name, exc))
    return results, errors


def raise_failures(errors: list[tuple[str, BaseException]], total: int, what: str) -> None:
    """One error line that names how many failed and the first few reasons."""
    if not errors:
        return
    reasons = "; ".join(
        f"{name}: {' '.join(str(e).split()) or type(e).__name__}" for name, e in errors[:3]
    )
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    raise ValueError(
        f"{len(errors)} of {total} {what} failed (finished ones are kept; rerun to resume): "
        f"{reasons}{more}"
    )


# -- one task per file -------------------------------------------------------------
@dataclass
class FilesResult:
    """What :func:`predict_files` did: masks written, inputs skipped as already done, notes."""

    outputs: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileJob:
    """Everything a worker needs for one file besides the file (small; pickled per task)."""

    model: ModelRef | None
    settings: InferenceSettings
    #: the output folder and the resume fingerprint (:class:`~.files.Resume`)
    resume: Resume
    probabilities: bool
    torch_threads: int | None = None
    #: the image axis that holds channels (``Predictor.predict``'s ``channel_axis``)
    channel_axis: int | None = None

    def outputs(self, path: Path) -> Outputs:
        return outputs_for(self.resume.out_dir, Path(path).stem, probabilities=self.probabilities)

    def finished(self, path: Path) -> bool:
        """Whether a previous run already wrote this file's outputs with the same model/settings."""
        return self.resume.finished(path, self.outputs(path))


def predict_file(
    path: str,
    job: FileJob,
    model: SegmentationModel | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressCallback | None = None,
) -> list[str]:
    """Predict one file and write its outputs, then its marker (the task each worker runs)."""
    limit_threads(job.torch_threads)
    predictor = Predictor(job.settings)
    network = model if model is not None else cached_model(job.model, predictor.device)
    done = predict_item(
        Item.of_file(path), job.outputs(path), predictor, network, channel_axis=job.channel_axis,
        resume=job.resume, progress=progress, cancel=cancel,
    )
    return done.notes


def predict_files(
    model: ModelSpec,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: InferenceSettings | None = None,
    *,
    probabilities: bool = False,
    channel_axis: int | None = None,
    client: Client | None = None,
    torch_threads: int | None = None,
    progress: Progress = None,
    cancel: CancelToken | None = None,
) -> FilesResult:
    """Segment image files into ``out_dir/<stem>.tif``, one Dask task per file; resumable.

    ``model`` is a zoo name, task, path or :class:`ModelRef` (a network in
    memory only without a client). ``channel_axis`` names the axis of every
    image that holds channels, as ``Predictor.predict``'s (a ``(2, H, W)``
    two-channel image is otherwise a stack of two planes). ``torch_threads``
    sets PyTorch's threads in each worker. Files already done by an earlier
    run with the same model and settings are skipped (see the module
    docstring). Failed files do not stop the others; afterwards one
    ``ValueError`` names them.
    """
    settings = settings or InferenceSettings()
    ref, network, digest = model_identity(model)
    require_reference(ref, client)
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"input not found: {path}")
    refuse_shared_stems(paths, where="output folders")
    out = Path(out_dir)
    marks = fingerprint(digest, settings, probabilities=probabilities, channel_axis=channel_axis)
    job = FileJob(ref, settings, Resume(str(out), marks), probabilities, torch_threads,
                  channel_axis)
    refuse_overwrite([p for path in paths for p in job.outputs(path).paths()], paths,
                     what="output folder")
    out.mkdir(parents=True, exist_ok=True)
    result = FilesResult()
    todo = []
    for path in paths:
        (result.skipped if job.finished(path) else todo).append(path)
    if client is None:
        _run_here(job, todo, network, result, progress, cancel)
    else:
        token = uuid.uuid4().hex[:8]  # keys of this call only (Dask reuses known keys)
        futures = [
            client.submit(
                predict_file, str(p), job, key=f"attnseg-file-{p.stem}-{token}", pure=False
            )
            for p in todo
        ]
        messages, errors = run_futures(
            client, futures, [p.name for p in todo], progress=progress, cancel=cancel, unit="file"
        )
        failed = {name for name, _ in errors}
        for path, notes in zip(todo, messages, strict=True):
            if path.name not in failed:
                result.outputs.append(job.outputs(path).mask)
                result.messages += notes or []
        raise_failures(errors, len(todo), "files")
    result.messages = list(dict.fromkeys(result.messages))
    return result


def _run_here(
    job: FileJob,
    todo: list[Path],
    network: SegmentationModel | None,
    result: FilesResult,
    progress: Progress,
    cancel: CancelToken | None,
) -> None:
    callback: Callable | None = None if isinstance(progress, str) else progress

    def work(item: Item, _progress) -> list[str]:
        return predict_file(str(item.source), job, network, cancel)

    def done(item: Item, notes: list[str]) -> None:
        result.messages.extend(notes)
        result.outputs.append(job.outputs(item.source).mask)

    items = [Item.of_file(path) for path in todo]
    run = run_items(items, work, progress=callback, cancel=cancel, skip=(ValueError, OSError),
                    on_done=done)
    report(callback, len(todo), len(todo), "done")
    raise_failures(run.errors, len(todo), "files")


__all__ = [
    "DASK_PROGRESS",
    "FilesResult",
    "ModelRef",
    "cached_model",
    "connect",
    "local_client",
    "model_loads",
    "predict_files",
    "settings_fingerprint",
]
