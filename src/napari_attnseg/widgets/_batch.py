"""Segment's batch: every image layer, or a folder of image files, → masks (and tables) in a folder.

A batch uses the Segment widget's model and settings (instances or mask,
diameter, threshold, the advanced ones); the model's automatic region applies
unless "restrict to" says *whole image* — a region drawn on one image is not
carried over to others. For each input ``<stem>`` it writes ``<stem>.tif``
(the labels, as ``attnseg predict`` writes masks) and, for instances,
``<stem>.csv`` (the object table, as ``attnseg predict --table``) into the
output folder, each file atomically.

Before anything runs, :func:`check_outputs` refuses a batch whose outputs
would land on one of its inputs (compared by resolved path and, for files
that exist, by inode) or on each other (two inputs with one stem); outputs
that exist already are replaced only after the user agreed. This repeats the
rule of ``cli/_common.py`` (``refuse_overwrite``, ``refuse_shared_stems``) in
a few lines: importing the CLI package would load every subcommand.

Inputs that cannot be read or segmented are skipped and named at the end;
Cancel stops at the next tile — the masks written by then are complete and
are said to be there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import file_identity
from ..data.io import IMAGE_SUFFIXES, ImageFileError, read_image, write_mask
from ..data.pairing import natural_key
from ..inference import InferenceSettings, Predictor
from ..objects import write_table_csv
from ..progress import part
from ._jobs import JobContext
from ._layers import is_rgb_layer, layer_array
from ._models import ModelChoice, safe_name, session
from ._objects import measure


@dataclass
class BatchItem:
    """One input of a batch: a name to show, the stem of its outputs, how to read it."""

    name: str
    stem: str
    read: Callable[[], tuple[np.ndarray, bool | None]]  # (image, rgb or None = guess)
    #: the file the input came from (a layer opened from a file has one)
    source: Path | None = None


@dataclass
class BatchRequest:
    items: list[BatchItem]
    out: Path
    choice: ModelChoice
    settings: dict[str, Any]
    tables: bool
    #: filled by the worker as it goes (read on the GUI thread once the job has ended)
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def instances(self) -> bool:
        return bool(self.settings.get("instances"))


def layer_items(layers: Iterable) -> list[BatchItem]:
    """The image layers as batch inputs (their arrays are not copied)."""
    items = []
    for layer in layers:
        source = getattr(getattr(layer, "source", None), "path", None)
        data, rgb = layer_array(layer), is_rgb_layer(layer)
        items.append(BatchItem(layer.name, safe_name(layer.name),
                               lambda data=data, rgb=rgb: (np.asarray(data), rgb),
                               Path(source) if source else None))
    return items


def folder_items(folder: Path) -> list[BatchItem]:
    """The image files of ``folder`` (not subfolders; hidden files skipped), natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in the folder {folder}")
    return [BatchItem(p.name, p.stem, lambda p=p: (read_image(p), None), p) for p in files]


def output_paths(item: BatchItem, out: Path, table: bool) -> list[Path]:
    paths = [out / f"{item.stem}.tif"]
    if table:
        paths.append(out / f"{item.stem}.csv")
    return paths


def check_outputs(items: list[BatchItem], out: Path, tables: bool) -> list[Path]:
    """Every output path; ``ValueError`` if one would replace an input or another output."""
    by_stem: dict[str, list[str]] = {}
    for item in items:
        by_stem.setdefault(item.stem, []).append(item.name)
    shared = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    if shared:
        listed = "; ".join(f"{stem}: {', '.join(names)}" for stem, names in shared.items())
        raise ValueError(
            f"inputs share a name, so their masks would overwrite each other ({listed}); "
            "rename them first"
        )
    outputs = [path for item in items for path in output_paths(item, out, tables)]
    sources = {file_identity(item.source): item.source for item in items if item.source is not None}
    clashes = [(path, sources[key]) for path in outputs if (key := file_identity(path)) in sources]
    if clashes:
        shown = "; ".join(f"{path} is the input {src}" for path, src in clashes[:5])
        raise ValueError(f"refusing to overwrite input files: {shown}; choose another folder")
    return outputs


def run_batch(request: BatchRequest, ctx: JobContext) -> BatchRequest:
    """The worker's job: each input in turn → mask (and table) files; skips bad inputs."""
    model = session().load(request.choice)
    predictor = Predictor(InferenceSettings(**request.settings))
    n = len(request.items)
    for i, item in enumerate(request.items):
        ctx.cancel.raise_if_cancelled()

        progress = part(ctx.progress, i / n, (i + 1) / n, f"{i + 1} of {n}: {item.name}")

        progress(0, 1)
        try:
            image, rgb = item.read()
            prediction = predictor.predict(model, image, rgb=rgb, progress=progress,
                                           cancel=ctx.cancel)
            instances = request.instances and prediction.instances is not None
            labels = prediction.instances if instances else prediction.labels
            mask_path, *table_path = output_paths(item, request.out, request.tables and instances)
            table = measure(labels, image) if table_path else None
            write_mask(mask_path, labels)
        except (ImageFileError, ValueError, MemoryError) as exc:
            request.skipped.append(f"{item.name}: {exc}")
            continue
        request.written.append(mask_path)
        if table is not None:
            write_table_csv(table_path[0], table)
            request.written.append(table_path[0])
        request.notes += [f"{item.name}: {m}" for m in prediction.messages]
    return request


def summary(request: BatchRequest, *, cancelled: bool = False) -> str:
    """What a batch wrote (and skipped), in one paragraph."""
    masks = sum(1 for p in request.written if p.suffix == ".tif")
    tables = len(request.written) - masks
    text = (f"{'cancelled: ' if cancelled else ''}{masks} of {len(request.items)} mask(s)"
            + (f" and {tables} table(s)" if tables else "") + f" written to {request.out}")
    if cancelled:
        text += " (each complete); the rest were not segmented"
    if request.skipped:
        text += f"; skipped {len(request.skipped)}: " + "; ".join(request.skipped[:3])
        text += "…" if len(request.skipped) > 3 else ""
    return text
