"""One engine for a set of input images → masks (and tables, overlays, probabilities) in a folder.

``attnseg predict`` (one process), :func:`~napari_attnseg.inference.distributed.predict_files`
(Dask: it only decides *where* each item runs) and the Segment widget's batch all use it:

* **naming** — :func:`outputs_for`: input ``<stem>`` gives ``<stem>.tif`` (the mask),
  ``probabilities/<stem>.tif``, ``<stem>.csv`` (the object table) and
  ``<stem>_overlay.png``, in one output folder;
* **refusals** — :func:`refuse_shared_stems`: two inputs with one stem would write
  one output (refused, never renamed: masks pair with images by stem everywhere);
  :func:`refuse_overwrite`: an output never replaces an input (compared resolved and,
  for files that exist, by inode);
* **reading and checking** — :func:`check_items` reads and checks every input before
  anything is written (one error naming every file that cannot be segmented);
  :func:`run_items` instead skips a bad input with a message naming it, where a caller
  asks for that (the widget's batch, a Dask run's failures);
* **resume** — :class:`Resume`: after an input's outputs, a marker
  ``.attnseg/<stem>.json`` records the input (path, size, mtime), the model's hash and
  every setting that changes the result (:func:`fingerprint`); an input whose outputs and
  matching marker exist is done;
* **one item** — :func:`predict_item`: read, predict, write every output atomically,
  then the marker.

No napari or Qt here: the widget passes its progress and cancel token as callbacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write, file_identity
from ..data.io import ImageFileError, read_image, write_image, write_mask
from ..progress import CancelToken, ProgressCallback, check, part
from .predictor import InferenceSettings, Prediction, Predictor

#: where resume markers are kept, inside the output folder
MARKER_DIR = ".attnseg"
#: settings that change what a prediction is (device and batch size only change speed)
RESULT_SETTINGS = ("tile_size", "overlap", "tta", "precision", "threshold", "blend")
#: settings a resume marker does not record by value: speed only (device, batch size),
#: or recorded under ``instances`` (instances, stitch)
MARKED_APART = ("device", "batch_size", "instances", "stitch")
#: what a bad input raises when it is skipped rather than stopping the run
BAD_INPUT = (ImageFileError, ValueError, MemoryError)


# -- inputs ---------------------------------------------------------------------------------
@dataclass
class Item:
    """One input: a name to show, the stem of its outputs, how to read it."""

    name: str
    stem: str
    read: Callable[[], tuple[np.ndarray, bool | None]]  # (image, rgb or None = guess)
    #: the file the input came from (None: an array in memory)
    source: Path | None = None

    @classmethod
    def of_file(cls, path: str | os.PathLike) -> Item:
        path = Path(path)
        return cls(path.name, path.stem, lambda: (read_image(path), None), path)


# -- naming ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outputs:
    """The files one input gives (``None``: not asked for)."""

    mask: Path
    probabilities: Path | None = None
    table: Path | None = None
    overlay: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.mask, self.probabilities, self.table, self.overlay) if p]


def outputs_for(
    out: str | os.PathLike,
    stem: str,
    *,
    probabilities: bool = False,
    table: bool = False,
    overlay: bool = False,
) -> Outputs:
    """Where the outputs of the input ``stem`` go in the folder ``out`` (the one rule)."""
    out = Path(out)
    return Outputs(
        mask=out / f"{stem}.tif",
        probabilities=out / "probabilities" / f"{stem}.tif" if probabilities else None,
        table=out / f"{stem}.csv" if table else None,
        overlay=out / f"{stem}_overlay.png" if overlay else None,
    )


# -- refusals -------------------------------------------------------------------------------
def refuse_shared_stems(
    inputs: Iterable[Path | Item], where: str = "--out folders"
) -> None:
    """``ValueError`` listing the inputs whose outputs would share a name (``<stem>.tif``)."""
    by_stem: dict[str, list[str]] = {}
    for item in inputs:
        stem, name = (item.stem, item.name) if isinstance(item, Item) else (item.stem, str(item))
        by_stem.setdefault(stem, []).append(name)
    shared = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    if shared:
        listed = "; ".join(f"{stem}: {', '.join(names)}" for stem, names in shared.items())
        raise ValueError(
            f"inputs share a file name stem, so their outputs would overwrite each other "
            f"({listed}); rename them or run them with separate {where}"
        )


def refuse_overwrite(
    outputs: Iterable[Path],
    inputs: Iterable[Path] | Mapping[Path, str],
    what: str = "output",
) -> None:
    """``ValueError`` listing every output that would land on one of the ``inputs``.

    Paths are compared resolved (symbolic links, ``..``) and, for files that
    exist, by inode (hard links, case-insensitive file systems). ``inputs`` may
    map each file to the name the message gives it (default: its path).
    """
    names = inputs if isinstance(inputs, Mapping) else {Path(p): str(p) for p in inputs}
    sources = {file_identity(Path(src)): name for src, name in names.items()}
    clashes = [
        (Path(out), sources[key]) for out in outputs if (key := file_identity(Path(out))) in sources
    ]
    if clashes:
        shown = "; ".join(
            f"{out} is an input" if str(out) == src else f"{out} is the input {src}"
            for out, src in clashes[:5]
        )
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise ValueError(f"refusing to overwrite input files: {shown}{more}; choose another {what}")


# -- reading and checking -------------------------------------------------------------------
def check_items(
    items: Sequence[Item], check_one: Callable[[Item], list[str]]
) -> dict[str, list[str]]:
    """Every item's notes from ``check_one`` (which reads and checks it, raising a
    ``ValueError`` naming the file); one ``ValueError`` naming every input that fails."""
    notes: dict[str, list[str]] = {}
    problems: list[str] = []
    for item in items:
        try:
            notes[item.name] = check_one(item)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        count = f"{len(problems)} of {len(items)} inputs" if len(items) > 1 else "the input"
        raise ValueError(f"nothing written: {count} cannot be segmented: " + "; ".join(problems))
    return notes


@dataclass
class Run:
    """What :func:`run_items` did: the result of every item done, and the items skipped."""

    done: list[tuple[Item, Any]] = field(default_factory=list)
    #: ``"<name>: <why>"`` for every input skipped
    skipped: list[str] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)


def run_items(
    items: Sequence[Item],
    work: Callable[[Item, ProgressCallback | None], Any],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    skip: tuple[type[BaseException], ...] = (),
    on_done: Callable[[Item, Any], None] | None = None,
    into: Run | None = None,
) -> Run:
    """``work(item, progress)`` for each item in turn; ``progress`` reports each item as
    its share of the run ("2 of 5: cells.tif"); ``cancel`` is checked between items.

    An item that raises one of ``skip`` is skipped (named in ``Run.skipped``); anything
    else stops the run. ``on_done`` hears of each finished item as it finishes; ``into``
    is the :class:`Run` to fill as it goes (what was done and skipped survives a cancel).
    """
    run = Run() if into is None else into
    n = len(items)
    for i, item in enumerate(items):
        check(cancel)
        step = part(progress, i / n, (i + 1) / n, f"{i + 1} of {n}: {item.name}")
        if step is not None:
            step(0, 1)
        try:
            result = work(item, step)
        except skip as exc:
            run.skipped.append(f"{item.name}: {exc}")
            run.errors.append((item.name, exc))
            continue
        run.done.append((item, result))
        if on_done is not None:
            on_done(item, result)
    return run


# -- resume ---------------------------------------------------------------------------------
def settings_fingerprint(settings: InferenceSettings) -> dict[str, Any]:
    """The settings that change what a prediction is, by name."""
    values = asdict(settings)
    return {k: values[k] for k in RESULT_SETTINGS}


def fingerprint(
    model_sha256: str,
    settings: InferenceSettings,
    *,
    probabilities: bool = False,
    channel_axis: int | None = None,
) -> dict[str, Any]:
    """Everything that changes an input's outputs, as a resume marker records it."""
    values = asdict(settings)
    record: dict[str, Any] = {
        "model": model_sha256,
        "settings": settings_fingerprint(settings),
        "probabilities": probabilities,
    }
    if settings.instances:  # instance labels, their objects linked across planes or not
        record["instances"] = {"stitch": settings.stitch}
    # every other setting that changes an input's outputs (diameter, roi, ...) and how the
    # image is read, recorded where not the default so that markers of default runs stay valid
    defaults = asdict(InferenceSettings())
    for name, value in values.items():
        if name not in (*RESULT_SETTINGS, *MARKED_APART) and value != defaults[name]:
            record[name] = value
    if channel_axis is not None:
        record["channel_axis"] = channel_axis
    return json.loads(json.dumps(record, default=str))  # as the marker reads back


@dataclass(frozen=True)
class Resume:
    """The resume markers of one output folder for one :func:`fingerprint` (picklable)."""

    out_dir: str
    fingerprint: dict[str, Any]

    def marker(self, path: Path) -> Path:
        return Path(self.out_dir) / MARKER_DIR / f"{Path(path).stem}.json"

    def record(self, path: Path) -> dict[str, Any]:
        stat = Path(path).stat()
        source = {"path": str(Path(path).resolve()), "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns}
        return {"input": source, **self.fingerprint}

    def finished(self, path: Path, outputs: Outputs) -> bool:
        """Whether an earlier run wrote ``outputs`` of ``path`` with the same fingerprint."""
        marker = self.marker(path)
        if not marker.is_file() or not all(p.is_file() for p in outputs.paths()):
            return False
        try:
            return json.loads(marker.read_text(encoding="utf-8")) == self.record(path)
        except (OSError, ValueError):
            return False

    def mark(self, path: Path) -> Path:
        """Write ``path``'s marker (atomically), after its outputs."""
        marker = self.marker(path)
        marker.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.record(path), indent=1)
        return atomic_write(marker, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# -- writing --------------------------------------------------------------------------------
def table_image(image, channel_axis: int | None):
    """The image as :func:`~napari_attnseg.objects.object_table` measures it (grey or RGB),
    or None for other channel counts."""
    from ..data.input_spec import canonical

    canon, layout = canonical(np.asarray(image), channel_axis=channel_axis)
    if layout.rgb:
        return canon
    return canon[..., 0] if canon.shape[-1] == 1 else None


Measure = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def write_outputs(
    targets: Outputs,
    image: np.ndarray,
    prediction: Prediction,
    *,
    instances: bool,
    channel_axis: int | None = None,
    diameter: Any = None,
    measure: Measure | None = None,
) -> tuple[list[Path], list[str]]:
    """Write every output of one input, each atomically: ``(paths written, notes)``.

    The mask holds instance labels when ``instances`` is asked for and the model made
    them, else class labels; the table (instances only) is ``measure(labels, image)``,
    by default :func:`~napari_attnseg.objects.object_table` with the image's confidence.
    """
    from ..objects import object_table, write_table_csv

    notes: list[str] = []
    objects = prediction.instances if instances else None
    labels = prediction.labels if objects is None else objects
    written = [write_mask(targets.mask, labels)]
    if targets.probabilities is not None:
        targets.probabilities.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_image(targets.probabilities, prediction.foreground))
    if targets.table is not None and objects is not None:
        if measure is not None:
            table = measure(objects, image)
        else:
            grey_or_rgb = table_image(image, channel_axis)
            if grey_or_rgb is None:
                notes.append("the table has no intensity columns (measured for grey or RGB images)")
            table = object_table(objects, grey_or_rgb)
            if prediction.quality is not None:
                rows = len(table["label"])
                table["image_confidence"] = np.full(rows, round(prediction.quality.confidence, 4))
        written.append(write_table_csv(targets.table, table))
    if targets.overlay is not None:
        from ..objects.overlay import write_overlay

        written.append(write_overlay(targets.overlay, image, labels, channel_axis=channel_axis,
                                     instances=objects is not None, roi=prediction.roi))
    if isinstance(diameter, float) and prediction.zoom != 1.0:
        notes.append(
            f"objects taken as {diameter:g} px across: image resampled ×{prediction.zoom:.2f}"
        )
    return written, notes


# -- one item -------------------------------------------------------------------------------
@dataclass
class ItemResult:
    """One input done: its prediction, the files written and notes (the prediction's too)."""

    prediction: Prediction
    written: list[Path]
    notes: list[str]


def predict_item(
    item: Item,
    targets: Outputs,
    predictor: Predictor,
    model,
    *,
    image: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    channel_axis: int | None = None,
    measure: Measure | None = None,
    resume: Resume | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ItemResult:
    """Read ``item`` (unless ``image`` is given), predict it, write ``targets``, then its
    resume marker (with ``resume``); the work each caller, and each Dask worker, runs."""
    rgb = None
    if image is None:
        image, rgb = item.read()
    prediction = predictor.predict(model, image, rgb=rgb, channel_axis=channel_axis, roi=roi,
                                   progress=progress, cancel=cancel)
    settings = predictor.settings
    written, notes = write_outputs(
        targets, image, prediction, instances=settings.instances, channel_axis=channel_axis,
        diameter=settings.diameter, measure=measure,
    )
    if resume is not None and item.source is not None:
        resume.mark(item.source)
    return ItemResult(prediction, written, [*notes, *prediction.messages])


__all__ = [
    "MARKER_DIR",
    "Item",
    "ItemResult",
    "Outputs",
    "Resume",
    "Run",
    "check_items",
    "fingerprint",
    "outputs_for",
    "predict_item",
    "refuse_overwrite",
    "refuse_shared_stems",
    "run_items",
    "write_outputs",
]
