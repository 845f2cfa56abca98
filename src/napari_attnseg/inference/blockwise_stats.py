"""Normalisation statistics of a block-wise prediction: measured once per plane, applied per block.

Most cards normalise per image (z-score, percentile, min-max); computed per
block it would jump from block to block. So the statistics are measured once
per plane over the whole plane by :meth:`InputSpec.statistics
<napari_attnseg.data.input_spec.InputSpec.statistics>` — for planes up to an
exact limit by reading the plane in one task (exactly what the whole-image
prediction computes), for larger planes with Dask reductions over the lazy
image — stored in the output's attributes (a resumed run reuses them), and
every block is normalised with them by :meth:`InputSpec.apply`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..data.input_spec import InputSpec, Layout, Statistics, canonical
from .blockwise_plan import as_hwc, read_region, region_key
from .blockwise_store import chunks_for, pack
from .distributed import Client, raise_failures, run_futures


def plane_statistics(chw: np.ndarray, normalization: Mapping[str, Any]) -> Statistics:
    """:meth:`InputSpec.plane_statistics` of a ``(C, H, W)`` plane under ``normalization``."""
    return InputSpec(int(chw.shape[0]), normalization).plane_statistics(chw)


def apply_statistics(
    chw: np.ndarray, normalization: Mapping[str, Any], stats: Statistics
) -> np.ndarray:
    """:meth:`InputSpec.apply`: fill and normalise a ``(C, h, w)`` part of a plane."""
    return InputSpec(int(chw.shape[0]), normalization).apply(chw, stats)


def image_statistics(
    source: Any,
    layout: Layout,
    spec: InputSpec,
    client: Client | None,
    *,
    exact_pixels: int,
    chunk: int,
) -> list[dict[str, Any]]:
    """Packed statistics of every plane: exact up to ``exact_pixels`` a plane, else by Dask.

    Exact planes are read whole, one task per plane (on ``client`` when
    given); larger ones are reduced by Dask from ``chunk``² pieces.
    """
    height, width = layout.spatial_shape[-2:]
    planes = [tuple(p) for p in np.ndindex(*layout.stack_shape)]
    if height * width <= exact_pixels:
        if client is None:
            return [exact_statistics(source, layout, spec, p, False) for p in planes]
        if isinstance(source, (da.Array, np.ndarray)):
            image = source if isinstance(source, da.Array) else da.from_array(source)
            tasks = [
                dask.delayed(exact_statistics)(
                    image[region_key(layout, p, (0, height), (0, width))], layout, spec, p, True
                )
                for p in planes
            ]
            futures = client.compute(tasks)
        else:
            futures = [
                client.submit(exact_statistics, source, layout, spec, p, False, pure=False)
                for p in planes
            ]
        results, errors = run_futures(client, futures, [str(p) for p in planes])
        raise_failures(errors, len(planes), "planes")
        return results
    if isinstance(source, da.Array):
        image = source
    else:
        image = da.from_array(source, chunks=chunks_for(source.shape, layout, chunk), asarray=True)
    canon, _ = canonical(image, rgb=layout.rgb, channel_axis=layout.channel_axis)

    def compute(collections):
        if client is None:
            return dask.compute(collections, scheduler="threads")[0]
        return client.compute(collections, sync=True)

    return [pack(s) for s in spec.statistics(canon, rgb=layout.rgb, compute=compute)]


def exact_statistics(
    source: Any, layout: Layout, spec: InputSpec, plane: tuple[int, ...], cut: bool
) -> dict[str, Any]:
    """Task: read one whole plane and measure its statistics exactly (packed for JSON).

    ``cut``: ``source`` is the plane already cut with :func:`region_key`.
    """
    height, width = layout.spatial_shape[-2:]
    region = (
        as_hwc(source, layout)
        if cut
        else read_region(source, layout, plane, (0, height), (0, width))
    )
    return pack(spec.plane_statistics(spec.channels(region, rgb=layout.rgb)))


__all__ = ["apply_statistics", "exact_statistics", "image_statistics", "plane_statistics"]
