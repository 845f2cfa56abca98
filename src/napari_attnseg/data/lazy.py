"""Images too large to read whole: TIFF, zarr and OME-Zarr opened piece by piece.

:class:`LazyFile` is an array-like (``shape``, ``dtype``, ``ndim``,
``__getitem__``) over one image in a file. Indexing it reads only what the
index covers: a zarr store reads the chunks it touches, a TIFF is
memory-mapped when stored contiguous and uncompressed, else read through
tifffile's zarr view of its strips or tiles (``tifffile.imread(aszarr=True)``).
It holds nothing but the path and how to view the file, so it pickles to
other processes (Dask workers), each of which opens the file once
(:func:`_open_raw` caches the handle per process) and keeps it.

The view follows :func:`~.io.read_image`: the first TIFF series with colour
samples moved last, singleton axes dropped. For OME-Zarr the first
(full-resolution) multiscale level is read and a channel axis named ``c`` is
reported as :attr:`LazyFile.channel_axis`.

``dask.array.from_array(lazy_file, chunks=...)`` turns it into a Dask array
whose chunks are read on the workers that compute them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .io import TIFF_SUFFIXES

#: files that mark a folder as a zarr store (zarr v2 array/group, zarr v3 node)
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store (a folder holding a zarr array or group)."""
    path = Path(path)
    return path.is_dir() and any((path / marker).is_file() for marker in ZARR_MARKERS)


def is_lazy_readable(path: str | os.PathLike) -> bool:
    """Whether :func:`open_lazy` can read ``path`` piece by piece (zarr store or TIFF)."""
    path = Path(path)
    return is_zarr(path) or (path.is_file() and path.suffix.lower() in TIFF_SUFFIXES)


@dataclass(frozen=True)
class LazyFile:
    """One image in a file, read piece by piece (see the module docstring)."""

    path: str
    #: "tiff" or "zarr"
    kind: str
    #: the zarr array inside the store ("" for the store itself)
    component: str
    #: the file's own shape (before dropping singleton axes)
    raw_shape: tuple[int, ...]
    dtype: np.dtype
    #: the file's axes in the order this view shows them (singleton axes left out)
    order: tuple[int, ...]
    #: the channel axis of this view when the file names one (OME-Zarr "c"), else None
    channel_axis: int | None = None
    #: (modification time in ns, size) when opened: a changed file is opened afresh
    stamp: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw_shape[a] for a in self.order)

    @property
    def ndim(self) -> int:
        return len(self.order)

    @property
    def name(self) -> str:
        """The image's name: the file name without ``.tif``, ``.zarr`` or ``.ome.zarr``."""
        name = Path(self.path).name
        for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", ".zarr", *TIFF_SUFFIXES):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)] or name
        return name

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _full_key(key, self.ndim)
        raw_key: list[Any] = [0] * len(self.raw_shape)  # dropped singleton axes
        for index, axis in zip(key, self.order, strict=True):
            raw_key[axis] = index
        out = np.asarray(
            _open_raw(self.path, self.kind, self.component, self.stamp)[tuple(raw_key)]
        )
        kept = [
            axis for index, axis in zip(key, self.order, strict=True) if not isinstance(index, int)
        ]
        return np.transpose(out, np.argsort(np.argsort(kept)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[()]
        return out if dtype is None else out.astype(dtype)


def open_lazy(path: str | os.PathLike) -> LazyFile:
    """Open a TIFF, zarr array, zarr group holding one array, or OME-Zarr image lazily."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    if is_zarr(path):
        return _open_zarr(path, stamp)
    if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path, stamp)
    raise ValueError(
        f"{path}: cannot read it piece by piece; give a TIFF file or a zarr / OME-Zarr folder"
    )


# -- internals ---------------------------------------------------------------
def _full_key(key: Any, ndim: int) -> tuple[Any, ...]:
    """A basic index as one int or slice per axis (Ellipsis expanded)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1 :]
    key = key + (slice(None),) * (ndim - len(key))
    if len(key) != ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
        raise IndexError(f"LazyFile supports one int or slice per axis, got {key!r}")
    return tuple(int(k) if isinstance(k, np.integer) else k for k in key)


def _view(raw_shape: tuple[int, ...], first: list[int], last: list[int]) -> tuple[int, ...]:
    """Axes of ``raw_shape`` without singletons, ``first`` axes ahead, ``last`` axes behind."""
    kept = [a for a, s in enumerate(raw_shape) if s != 1]
    middle = [a for a in kept if a not in first and a not in last]
    return tuple([a for a in first if a in kept] + middle + [a for a in last if a in kept])


def _open_tiff(path: Path, stamp: tuple[int, int]) -> LazyFile:
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            shape, dtype, axes = tuple(series.shape), np.dtype(series.dtype), series.axes
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    samples = [axes.index("S")] if "S" in axes else []
    order = _view(shape, [], samples)
    return LazyFile(str(path), "tiff", "", shape, dtype, order, None, stamp)


def _open_zarr(path: Path, stamp: tuple[int, int]) -> LazyFile:
    import zarr  # optional (the "distributed" extra); is_zarr works without it

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for unreadable stores
        raise ValueError(f"cannot open the zarr store {path}: {exc}") from exc
    component, axes_names = "", None
    if isinstance(node, zarr.Group):
        multiscales = _multiscales(dict(node.attrs))
        if multiscales:
            component = str(multiscales[0]["datasets"][0]["path"])
            axes_names = [
                a["name"] if isinstance(a, dict) else str(a) for a in multiscales[0].get("axes", [])
            ]
        else:
            arrays = sorted(node.array_keys())
            if len(arrays) != 1:
                raise ValueError(
                    f"{path} is a zarr group with {len(arrays)} arrays "
                    f"({', '.join(arrays[:5]) or 'none'}); give the array itself, "
                    f"e.g. {path / (arrays[0] if arrays else 'NAME')}"
                )
            component = arrays[0]
        node = node[component]
    shape, dtype = tuple(int(s) for s in node.shape), np.dtype(node.dtype)
    channel = [axes_names.index("c")] if axes_names and "c" in axes_names else []
    order = _view(shape, [], [])
    channel_axis = order.index(channel[0]) if channel and channel[0] in order else None
    return LazyFile(str(path), "zarr", component, shape, dtype, order, channel_axis, stamp)


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """OME-NGFF multiscales metadata (v0.4 at the top level, v0.5 under "ome")."""
    found = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or []
    return [m for m in found if isinstance(m, dict) and m.get("datasets")]


@functools.lru_cache(maxsize=16)
def _open_raw(path: str, kind: str, component: str, stamp: tuple[int, int]) -> Any:
    """The file's array, opened once per process (and again when the file changed)."""
    import zarr

    if kind == "zarr":
        node = zarr.open(path, mode="r")
        return node[component] if component else node
    try:
        return tifffile.memmap(path, mode="r", series=0)
    except ValueError:  # compressed or not contiguous: read its strips/tiles through zarr
        return zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")


__all__ = ["ZARR_MARKERS", "LazyFile", "is_lazy_readable", "is_zarr", "open_lazy"]
