"""Reading and writing images and masks.

Training folders hold TIFFs (microscopy, often 16-bit or float) and PNG/JPEG/BMP
(photographs, endoscopy, most public masks). Everything here returns plain
NumPy arrays in a small set of layouts, so the rest of the engine never has to
guess: an image is ``(H, W)`` grey or ``(H, W, C)`` with ``C`` in {3, 4}
(RGB/RGBA), or a stack of those (``(Z, H, W)``, ``(Z, H, W, C)``; TIFF only),
in its native dtype; a mask is ``(H, W)`` integers.

Anything that cannot be read as an image — a missing file, a folder, an empty,
truncated or garbage file, an unsupported suffix or pixel type (complex,
text, …), a layout that is not an image — raises :class:`ImageFileError`
(a ``ValueError``) whose message names the file and the problem; whatever
the decoding library raised is chained as its cause. Nothing else escapes
the readers.

Writers go through a temporary file in the target folder and ``os.replace``,
so a cancelled or failed job never leaves a half-written file behind.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from .._files import atomic_write
from .input_spec import is_colour

TIFF_SUFFIXES = (".tif", ".tiff")
#: file suffixes (lower case) that :func:`read_image` and :func:`read_mask` accept
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg", ".bmp")
_WRITE_SUFFIXES = (*TIFF_SUFFIXES, ".png")


class ImageFileError(ValueError):
    """An image or mask file cannot be read (the message names the file and says why)."""


class ImageFileNotFoundError(ImageFileError, FileNotFoundError):
    """The image file does not exist (also a ``FileNotFoundError``)."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a regular file whose suffix is one of :data:`IMAGE_SUFFIXES`."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W)``, ``(H, W, 3|4)``, ``(Z, H, W)`` or ``(Z, H, W, 3|4)``.

    The dtype is the file's own. Singleton axes are dropped, a grey+alpha PNG
    becomes grey, and the colour samples of an RGB TIFF stored planar
    (``(3, H, W)`` on disk) are moved last. Other layouts raise a
    :class:`ImageFileError` naming the file and its shape, as does any file
    that cannot be read. Use :func:`~.input_spec.layout_of` to tell a single
    image from a stack.
    """
    path = Path(path)
    raw = _read_raw(path, keep_palette=False)
    array = np.squeeze(raw) if raw.ndim > 2 else raw
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 2 and path.suffix.lower() not in TIFF_SUFFIXES:
        array = array[..., 0]  # grey + alpha
    if array.ndim in (2, 3) or (array.ndim == 4 and is_colour(array.shape)):
        return np.ascontiguousarray(array)
    raise ImageFileError(
        f"{path} has shape {raw.shape}; expected a grey (H, W) or RGB(A) (H, W, 3|4) image, "
        "or a stack of them"
    )


def read_mask(path: str | os.PathLike, *, binary: bool = True) -> np.ndarray:
    """Read a mask as ``(H, W)``.

    ``binary=True`` gives uint8 {0, 1} with any nonzero value as foreground
    (public masks use 255). Otherwise the pixel values are class labels,
    returned as uint8 when they fit, else int32/int64. A palette PNG gives its
    palette indices; an RGB(A) file is accepted only when its colour channels
    are equal (a grey mask saved as colour).
    """
    path = Path(path)
    array = _read_raw(path, keep_palette=True)
    if array.ndim > 2:
        array = np.squeeze(array)
    if array.ndim == 3 and array.shape[-1] in (2, 3, 4):
        colour = array[..., :3] if is_colour(array.shape) else array[..., :1]
        if not all(np.array_equal(colour[..., 0], colour[..., c]) for c in range(colour.shape[-1])):
            raise ImageFileError(
                f"{path} is a colour image whose channels differ; a mask must be a grey "
                "or label image (one value per pixel)"
            )
        array = colour[..., 0]
    if array.ndim != 2:
        raise ImageFileError(f"{path} has shape {array.shape}; a mask must be 2D (H, W)")
    try:
        if binary:
            return (array != 0).astype(np.uint8)
        return _as_labels(array, path)
    except ValueError as exc:
        raise ImageFileError(str(exc)) from exc


def write_mask(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a label image ``(H, W)`` or stack ``(Z, H, W)`` atomically.

    TIFF is zlib-compressed; PNG (2D only) is also accepted. Labels are stored
    in the smallest unsigned type that holds them (uint8, uint16, uint32), or
    int32 when some are negative.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (Z, H, W), got shape {labels.shape}")
    labels = _as_labels(labels, "labels")
    if labels.ndim == 3 and Path(path).suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: a stack of labels can only be written as TIFF")
    return _write_atomic(Path(path), _smallest_int(labels), grey=True)


def write_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an image or map (e.g. float32 probabilities) atomically.

    TIFF takes any numeric dtype and shape; PNG only uint8/uint16 (H, W) or (H, W, 3|4).
    """
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    return _write_atomic(Path(path), array)


# -- internals ---------------------------------------------------------------
def _read_raw(path: Path, *, keep_palette: bool) -> np.ndarray:
    """The file's pixels as the decoder gives them; :class:`ImageFileError` otherwise."""
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image file")
    if not path.exists():
        raise ImageFileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageFileError(f"{path} is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageFileError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise ImageFileError(f"{path} is an empty file (0 bytes)")
    try:
        with _tifffile_log_held():
            array = _decode(path, suffix, keep_palette=keep_palette)
    except ImageFileError:
        raise
    except MemoryError as exc:
        raise ImageFileError(f"{path} is too large to read into memory") from exc
    except Exception as exc:  # every decoder error (PIL, tifffile, imageio, struct, ...)
        raise ImageFileError(f"cannot read {path}: {_reason(exc)}") from exc
    return _checked_pixels(array, path)


def _decode(path: Path, suffix: str, *, keep_palette: bool) -> np.ndarray:
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if keep_palette:
        with Image.open(path) as image:
            if image.mode == "P":
                return np.asarray(image)
    return np.asarray(iio.imread(path, plugin="pillow"))


@contextmanager
def _tifffile_log_held() -> Iterator[None]:
    """Hold what tifffile logs while this thread reads a file; pass it on only on success.

    A damaged TIFF makes tifffile log a line per broken tag before it fails;
    the :class:`ImageFileError` raised then says what is wrong in one line.
    """
    logger = logging.getLogger("tifffile")
    thread = threading.get_ident()
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if record.thread != thread:
            return True
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
    for record in held:  # reached only when the read succeeded
        logger.handle(record)


def _reason(exc: BaseException) -> str:
    """A readable reason from a decoder exception (its text, else its type)."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if isinstance(exc, UnidentifiedImageError) or "can not handle the given uri" in text:
        return "the content is not an image in a format this reader knows (PNG, JPEG, BMP, TIFF)"
    if "failed to read" in text or "truncated" in text:
        return f"the file is truncated or corrupt ({text})"
    if len(text) < 4:  # e.g. KeyError(5), IndexError(), struct.error('')
        detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return f"the file is corrupt or not a valid image ({detail})"
    return text


def _checked_pixels(array: np.ndarray, path: Path) -> np.ndarray:
    """Numeric, non-empty pixel data, or :class:`ImageFileError`."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":  # bool, signed, unsigned, float
        raise ImageFileError(
            f"{path}: unsupported pixel type {array.dtype}; images must hold integer "
            "or floating-point values"
        )
    if array.size == 0 or array.ndim < 2:
        raise ImageFileError(f"{path} holds no image data (shape {array.shape})")
    return array


def _read_tiff(path: Path) -> np.ndarray:
    """The first series, with colour samples (axis "S", e.g. planar RGB) moved last."""
    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        array, axes = np.asarray(series.asarray()), series.axes
    if "S" in axes and axes.index("S") != len(axes) - 1:
        array = np.moveaxis(array, axes.index("S"), -1)
    return array


def _as_labels(array: np.ndarray, source: object) -> np.ndarray:
    """Integer labels; floats must hold whole numbers."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{source}: labels must be whole numbers, got non-integer values")
        return _smallest_int(array.astype(np.int64))
    raise ValueError(f"{source}: labels must be integers, got dtype {array.dtype}")


def _smallest_int(labels: np.ndarray) -> np.ndarray:
    if labels.size == 0:
        return labels.astype(np.uint8)
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        return labels.astype(np.int32 if high < 2**31 and low >= -(2**31) else np.int64)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels.astype(np.int64)


def _write_atomic(path: Path, array: np.ndarray, *, grey: bool = False) -> Path:
    suffix = path.suffix.lower()
    if suffix not in _WRITE_SUFFIXES:
        raise ValueError(f"{path}: can only write {_WRITE_SUFFIXES} files")
    writer: Callable[[str], None]
    if suffix in TIFF_SUFFIXES:
        colour = not grey and array.ndim in (3, 4) and is_colour(array.shape)
        photometric = "rgb" if colour else "minisblack"

        def writer(target: str) -> None:
            tifffile.imwrite(target, array, photometric=photometric, compression="zlib")

    else:
        if array.dtype not in (np.uint8, np.uint16) or not (
            array.ndim == 2 or (array.ndim == 3 and is_colour(array.shape))
        ):
            raise ValueError(
                f"{path}: PNG holds uint8/uint16 (H, W) or (H, W, 3|4) data, got "
                f"{array.dtype} {array.shape}; write a .tif instead"
            )

        def writer(target: str) -> None:
            iio.imwrite(target, array, plugin="pillow", extension=".png")

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, writer)
