"""Block-wise prediction of one large image or stack into a zarr store, chunk by chunk, resumable.

An image too large for memory — a zarr / OME-Zarr store, a TIFF read piece
by piece (:mod:`napari_attnseg.data.lazy`), a Dask array (a lazily loaded
napari layer) — is cut into blocks of ``chunk``×``chunk`` pixels per plane.
Each block is one task: read the block plus a halo, run
``Predictor.predict`` on it, crop the halo, write the block into the output
zarr and set the block's flag in ``done``. A stopped run **resumes**: blocks
whose flag is set are skipped. Memory per task is bounded by the block and
its halo, never the image. The jobs live in sibling modules, re-exported here:

* :mod:`.blockwise_plan` — the blocks, the region each is read from (on the
  whole plane's window grid, so blocks match the whole-image prediction bit
  for bit with ``batch_size=1``), and the settings a block-wise run honours;
* :mod:`.blockwise_stats` — the normalisation statistics, measured once per
  plane by :class:`~napari_attnseg.data.input_spec.InputSpec` (exactly for
  planes up to :data:`EXACT_STATISTICS_PIXELS`, by Dask reductions above)
  and applied to every block before the network, whose card normalisation
  is then switched off (:func:`~.distributed.with_card`; the caller's model
  is never changed);
* :mod:`.blockwise_store` — the input it reads and the zarr output (its
  attributes identify the run and keep the statistics for resuming);
* here — the task each worker runs (:func:`predict_block`) and running them
  (:class:`BlockwisePrediction`, :func:`predict_blockwise`).

Cards that resize every image to a fixed size, or normalise with CLAHE (a
per-image adaptive histogram), cannot be predicted block by block; they are
refused with a message.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from ..data.input_spec import InputSpec, Layout, layout_of
from ..data.lazy import LazyFile
from ..models.base import SegmentationModel
from ..models.card import ModelCard
from ..progress import CancelToken, check, report
from .blockwise_plan import (
    Block,
    Pass,
    as_hwc,
    blockwise_settings,
    covering_span,
    plan_blocks,
    read_region,
    region_key,
)
from .blockwise_stats import apply_statistics, image_statistics, plane_statistics
from .blockwise_store import FORMAT, FORMAT_VERSION, create, open_source, reopen
from .blockwise_task import BlockJob, predict_block
from .distributed import (
    Client,
    ModelSpec,
    Progress,
    model_identity,
    raise_failures,
    require_reference,
    run_futures,
    settings_fingerprint,
)
from .predictor import TTA_FLIPS, InferenceSettings, uses_tta
from .tiles import window_starts

#: default block edge (pixels); also the output's zarr chunk
DEFAULT_CHUNK = 2048
#: planes up to this many pixels get their normalisation statistics exactly as ``normalize``
EXACT_STATISTICS_PIXELS = 4096 * 4096


# -- the plan ---------------------------------------------------------------------------
class BlockwisePrediction:
    """A block-wise prediction bound to its zarr output: created (or reopened) now, run later.

    The output exists as soon as this object does, filled with 0 where no
    block is done yet, so a viewer can show :attr:`labels` (e.g. as a napari
    Labels layer backed by the zarr array) and refresh it as blocks finish.
    """

    def __init__(
        self,
        *,
        image: Any,
        layout: Layout,
        job: BlockJob,
        blocks: list[Block],
        group: zarr.Group,
        network: SegmentationModel | None,
        statistics: list[dict[str, Any]],
        name: str,
        notes: Sequence[str] = (),
    ) -> None:
        self.image = image
        self.layout = layout
        self.job = job
        self.blocks = blocks
        self.group = group
        self.network = network
        self.statistics = statistics
        self.name = name
        #: what the settings asked for that a block-wise run cannot do (see blockwise_settings)
        self.notes = list(notes)
        self.messages: list[str] = []
        self._plane_index = {p: i for i, p in enumerate(np.ndindex(*layout.stack_shape))}

    @property
    def path(self) -> Path:
        return Path(self.job.out)

    @property
    def labels(self) -> zarr.Array:
        return self.group["labels"]

    @property
    def probabilities(self) -> zarr.Array | None:
        return self.group["probabilities"] if "probabilities" in self.group else None

    def pending(self) -> list[Block]:
        """Blocks not done yet (by their flags in the output)."""
        done = np.asarray(self.group["done"][...])
        return [b for b in self.blocks if not done[b.flag]]

    def stats_for(self, block: Block) -> dict[str, Any]:
        """The packed normalisation statistics of the block's plane."""
        return self.statistics[self._plane_index[block.plane]]

    def run(
        self,
        *,
        client: Client | None = None,
        progress: Progress = None,
        cancel: CancelToken | None = None,
    ) -> zarr.Array:
        """Predict every pending block (here, or as Dask tasks on ``client``); the labels."""
        require_reference(self.job.model, client)
        pending = self.pending()
        if client is None:
            self._run_here(pending, progress, cancel)
        else:
            futures = self._submit(client, pending)
            names = [f"block {b.flag}" for b in pending]
            messages, errors = run_futures(
                client, futures, names, progress=progress, cancel=cancel, unit="block"
            )
            self.messages += [m for notes in messages if notes for m in notes]
            raise_failures(errors, len(pending), "blocks")
        self.messages = list(dict.fromkeys(self.messages))
        return self.labels

    def _run_here(self, pending: list[Block], progress: Progress, cancel) -> None:
        callback = None if isinstance(progress, str) else progress
        for n, block in enumerate(pending):
            check(cancel)
            report(callback, n, len(pending), f"block {n + 1}/{len(pending)}")
            self.messages += predict_block(
                self.image, self.job, block, self.stats_for(block), self.network, cancel
            )
        report(callback, len(pending), len(pending), "done")

    def _submit(self, client: Client, pending: list[Block]) -> list[Any]:
        token = uuid.uuid4().hex[:8]  # keys of this call only: a resumed run recomputes
        if isinstance(self.image, (da.Array, np.ndarray)):
            image = self.image if isinstance(self.image, da.Array) else da.from_array(self.image)
            tasks = [
                dask.delayed(predict_block, pure=False)(
                    image[region_key(self.layout, b.plane, b.region_rows, b.region_cols)],
                    self.job,
                    b,
                    self.stats_for(b),
                    None,
                    None,
                    True,
                    dask_key_name=f"attnseg-block-{token}-{n}",
                )
                for n, b in enumerate(pending)
            ]
            return client.compute(tasks)
        return [
            client.submit(
                predict_block,
                self.image,
                self.job,
                b,
                self.stats_for(b),
                key=f"attnseg-block-{token}-{n}",
                pure=False,
            )
            for n, b in enumerate(pending)
        ]


def prepare_blockwise(
    model: ModelSpec,
    image: Any,
    out: str | os.PathLike,
    settings: InferenceSettings | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    client: Client | None = None,
    torch_threads: int | None = None,
) -> BlockwisePrediction:
    """Create (or reopen, to resume) the zarr output of a block-wise prediction of ``image``.

    ``image`` is a path (zarr / OME-Zarr store or TIFF, read lazily), a Dask
    array, a zarr array or a NumPy array; its layout follows ``Predictor``
    (``rgb``, ``channel_axis``; OME-Zarr's ``c`` axis by default). New
    outputs get the image's normalisation statistics first (one pass over
    it, on ``client`` when given).
    """
    settings = settings or InferenceSettings()
    ref, network, digest = model_identity(model)
    require_reference(ref, client)
    if ref is not None:
        document = ref.card()
        card, in_channels = ModelCard.from_dict(document), int(document["in_channels"])
    else:
        card = network.card if network.card is not None else ModelCard(name=network.name)
        in_channels = network.in_channels
    spec = InputSpec.from_card(card, in_channels)
    settings, notes = blockwise_settings(settings, card)
    tile = settings.tile_size
    if tile is None:
        raise ValueError("block-wise prediction needs a tile size (tile_size=None never tiles)")
    if chunk < tile:
        raise ValueError(f"the block size ({chunk}) must be at least the tile size ({tile})")
    if spec.size is not None:
        raise ValueError(
            f"model {card.name or '?'} resizes every image to {spec.size[0]}x{spec.size[1]}; "
            "it cannot be predicted block by block (predict the image whole)"
        )
    if spec.normalization.get("clahe"):
        raise ValueError(
            f"model {card.name or '?'} normalises with CLAHE over the whole image, which "
            "block-wise prediction cannot reproduce; predict the image whole"
        )
    source, identity, name = open_source(image)
    if channel_axis is None and isinstance(source, LazyFile):
        channel_axis = source.channel_axis
    layout = layout_of(source.shape, rgb=rgb, channel_axis=channel_axis)
    height, width = layout.spatial_shape[-2:]
    out = Path(out).expanduser().resolve()
    if isinstance(source, LazyFile) and (
        out == Path(source.path).resolve() or Path(source.path).resolve() in out.parents
    ):
        raise ValueError(f"the output {out} would overwrite the input {source.path}")
    # the plane's window grid can be followed at the native scale (see the module docstring)
    tta = uses_tta(settings.tta, card)
    settings = replace(settings, tta=tta)  # the blocks' predictors: the card's choice, decided
    flips = (TTA_FLIPS if tta else ((),)) if spec.scale == 1.0 else None
    blocks = plan_blocks(
        layout.stack_shape,
        height,
        width,
        chunk=chunk,
        tile=tile,
        overlap=settings.overlap,
        flips=flips,
        halo=math.ceil(tile / spec.scale),
    )
    n_classes = int(document["n_classes"]) if ref is not None else network.n_classes
    labels_dtype = "uint8" if max(2, n_classes) <= 256 else "uint16"
    fingerprint = {
        "model": digest,
        "settings": settings_fingerprint(settings),
        "input": identity,
        "shape": list(source.shape),
        "layout": {"rgb": layout.rgb, "channel_axis": layout.channel_axis},
        "chunk": chunk,
        "probabilities": probabilities,
    }
    fingerprint = json.loads(json.dumps(fingerprint))
    group = reopen(out, fingerprint, overwrite)
    if group is None:
        statistics = image_statistics(
            source, layout, spec, client, exact_pixels=EXACT_STATISTICS_PIXELS, chunk=DEFAULT_CHUNK
        )
        group = create(out, fingerprint, statistics, layout, chunk, labels_dtype, probabilities)
    meta = group.attrs[FORMAT]
    job = BlockJob(ref, settings, spec, layout, str(out), meta["run_id"], torch_threads)
    statistics = meta["statistics"]
    return BlockwisePrediction(
        image=source,
        layout=layout,
        job=job,
        blocks=blocks,
        group=group,
        network=network,
        statistics=statistics,
        name=name,
        notes=notes,
    )


def predict_blockwise(
    model: ModelSpec,
    image: Any,
    out: str | os.PathLike,
    settings: InferenceSettings | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    client: Client | None = None,
    torch_threads: int | None = None,
    progress: Progress = None,
    cancel: CancelToken | None = None,
    on_message: Callable[[str], None] | None = None,
) -> zarr.Array:
    """Predict ``image`` block by block into the zarr group ``out``; its ``labels`` array.

    See :func:`prepare_blockwise` for the arguments and the module docstring
    for how blocks match the whole-image prediction. A stopped run resumes
    where it stopped (done blocks are skipped). ``on_message`` gets a note for
    each setting a block-wise run cannot honour (:func:`blockwise_settings`).
    """
    plan = prepare_blockwise(
        model,
        image,
        out,
        settings,
        chunk=chunk,
        rgb=rgb,
        channel_axis=channel_axis,
        probabilities=probabilities,
        overwrite=overwrite,
        client=client,
        torch_threads=torch_threads,
    )
    for note in plan.notes if on_message is not None else ():
        on_message(note)
    return plan.run(client=client, progress=progress, cancel=cancel)


__all__ = [
    "DEFAULT_CHUNK",
    "EXACT_STATISTICS_PIXELS",
    "FORMAT",
    "FORMAT_VERSION",
    "Block",
    "BlockJob",
    "BlockwisePrediction",
    "Pass",
    "apply_statistics",
    "as_hwc",
    "blockwise_settings",
    "covering_span",
    "plan_blocks",
    "plane_statistics",
    "predict_block",
    "predict_blockwise",
    "prepare_blockwise",
    "read_region",
    "region_key",
    "window_starts",
]
