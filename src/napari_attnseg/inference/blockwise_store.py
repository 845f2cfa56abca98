"""Storage of a block-wise prediction: the input it reads and the zarr output it writes.

The output is a zarr group: ``labels``, optionally ``probabilities`` (chunked
like the blocks, so every task writes its own chunks) and ``done`` (one flag
per block). Its attributes (under :data:`FORMAT`) record what identifies the
run — model hash, settings, input, layout, block size — and the input's
normalisation statistics, so a stopped run **resumes** with the same ones
(:func:`reopen`), and a run with other settings is refused unless it may
overwrite.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from ..data.input_spec import Layout, Statistics
from ..data.lazy import LazyFile, open_lazy

FORMAT = "napari-attnseg-blockwise"
FORMAT_VERSION = 1


def open_source(image: Any) -> tuple[Any, dict[str, Any], str]:
    """The array-like to read, what identifies it for resuming, and its name."""
    if isinstance(image, (str, os.PathLike)):
        image = open_lazy(image)
    if isinstance(image, LazyFile):
        identity = {"path": image.path, "component": image.component, "stamp": list(image.stamp)}
        return image, identity, image.name
    if isinstance(image, zarr.Array):
        return image, {"zarr": str(image.store_path)}, Path(str(image.path) or "image").name
    if isinstance(image, da.Array):
        return image, {"dask": image.name}, "image"
    if isinstance(image, np.ndarray):
        return image, {"numpy": tokenize(image)}, "image"
    raise ValueError(
        f"cannot predict a {type(image).__name__} block by block; give a path, a Dask, "
        "zarr or NumPy array"
    )


def chunks_for(shape: Sequence[int], layout: Layout, chunk: int) -> tuple[int, ...]:
    """Dask chunks for reading an image: one plane, ``chunk``² pixels, all channels."""
    spatial = [i for i in range(len(shape)) if i != layout.channel_axis]
    out = []
    for i, size in enumerate(shape):
        if i == layout.channel_axis:
            out.append(size)
        elif i in spatial[-2:]:
            out.append(min(size, chunk))
        else:
            out.append(1)
    return tuple(out)


def pack(stats: Statistics) -> dict[str, Any]:
    """JSON for the output's attributes (dtype kept, so restored values are bit-identical)."""
    return {k: {"dtype": str(v.dtype), "values": np.ravel(v).tolist()} for k, v in stats.items()}


def unpack(packed: dict[str, Any], channels: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in packed.items():
        array = np.asarray(v["values"], dtype=v["dtype"])
        out[k] = array if k == "fill" else array.reshape(channels, 1, 1)
    return out


def reopen(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> zarr.Group | None:
    """The existing output to resume, or None to create one (refusing to touch others)."""
    if not out.exists():
        return None
    try:
        group = zarr.open_group(str(out), mode="r+")
        meta = dict(group.attrs).get(FORMAT)
    except Exception:  # not a zarr group at all
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{out} exists and is not a napari-attnseg block-wise prediction; choose another output"
        )
    if meta.get("fingerprint") == fingerprint:
        return group
    if overwrite:
        shutil.rmtree(out)
        return None
    differ = sorted(
        k
        for k in set(fingerprint) | set(meta.get("fingerprint", {}))
        if fingerprint.get(k) != meta.get("fingerprint", {}).get(k)
    )
    raise ValueError(
        f"{out} holds a prediction made differently ({', '.join(differ)} differ); "
        "use overwrite (--overwrite) to replace it or choose another output"
    )


def create(
    out: Path,
    fingerprint: dict[str, Any],
    statistics: list[dict[str, Any]],
    layout: Layout,
    chunk: int,
    labels_dtype: str,
    probabilities: bool,
) -> zarr.Group:
    """The empty output, built under a temporary name and renamed into place."""
    shape = layout.spatial_shape
    stack = layout.stack_shape
    chunks = (*([1] * len(stack)), chunk, chunk)
    grid = (*stack, math.ceil(shape[-2] / chunk), math.ceil(shape[-1] / chunk))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=2)
        group.create_array("labels", shape=shape, chunks=chunks, dtype=labels_dtype, fill_value=0)
        if probabilities:
            group.create_array(
                "probabilities", shape=shape, chunks=chunks, dtype="float32", fill_value=0.0
            )
        group.create_array("done", shape=grid, chunks=(1,) * len(grid), dtype="uint8", fill_value=0)
        group.attrs[FORMAT] = {
            "version": FORMAT_VERSION,
            "run_id": uuid.uuid4().hex,
            "fingerprint": fingerprint,
            "statistics": statistics,
        }
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return zarr.open_group(str(out), mode="r+")


@functools.lru_cache(maxsize=8)
def outputs(out: str, run_id: str) -> tuple[zarr.Array, zarr.Array | None, zarr.Array]:
    """The output arrays, opened once per process and run."""
    group = zarr.open_group(out, mode="r+")
    if group.attrs.get(FORMAT, {}).get("run_id") != run_id:
        raise ValueError(f"{out} was replaced by another run; start again")
    probs = group["probabilities"] if "probabilities" in set(group.array_keys()) else None
    return group["labels"], probs, group["done"]


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "chunks_for",
    "create",
    "open_source",
    "outputs",
    "pack",
    "reopen",
    "unpack",
]
