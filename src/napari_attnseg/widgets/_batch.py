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
that exist already are replaced only after the user agreed. Naming, these
refusals, reading, writing and skipping are the engine's
(:mod:`napari_attnseg.inference.files`), shared with ``attnseg predict``.

Inputs that cannot be read or segmented are skipped and named at the end;
Cancel stops at the next tile — the masks written by then are complete and
are said to be there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.io import IMAGE_SUFFIXES
from ..data.pairing import natural_key
from ..inference import InferenceSettings, Predictor
from ..inference.files import (
    BAD_INPUT,
    Item,
    Run,
    outputs_for,
    predict_item,
    refuse_overwrite,
    refuse_shared_stems,
    run_items,
)
from ._jobs import JobContext
from ._layers import is_rgb_layer, layer_array
from ._models import ModelChoice, safe_name, session
from ._objects import measure

#: one input of a batch: a name to show, the stem of its outputs, how to read it
BatchItem = Item


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
    return [Item.of_file(p) for p in files]


def check_outputs(items: list[BatchItem], out: Path, tables: bool) -> list[Path]:
    """Every output path; ``ValueError`` if one would replace an input or another output."""
    refuse_shared_stems(items, where="output folders")
    outputs = [path for item in items for path in outputs_for(out, item.stem, table=tables).paths()]
    sources = {item.source: f"{item.name!r} ({item.source})" for item in items if item.source}
    refuse_overwrite(outputs, sources, what="folder")
    return outputs


def run_batch(request: BatchRequest, ctx: JobContext) -> BatchRequest:
    """The worker's job: each input in turn → mask (and table) files; skips bad inputs."""
    model = session().load(request.choice)
    predictor = Predictor(InferenceSettings(**request.settings))
    table = request.tables and request.instances

    def work(item: BatchItem, progress):
        targets = outputs_for(request.out, item.stem, table=table)
        return predict_item(item, targets, predictor, model, measure=measure,
                            progress=progress, cancel=ctx.cancel)

    def done(item: BatchItem, result) -> None:
        request.written.extend(result.written)
        request.notes.extend(f"{item.name}: {m}" for m in result.notes)

    run_items(request.items, work, progress=ctx.progress, cancel=ctx.cancel, skip=BAD_INPUT,
              on_done=done, into=Run(skipped=request.skipped))
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
