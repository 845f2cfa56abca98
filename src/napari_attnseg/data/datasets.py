"""Training data: image/mask pairs on disk → normalised samples → random patches.

* :func:`pair_folder` matches images to masks (and optional FOV/ROI masks) by file stem;
* :func:`load_samples` reads, converts and normalises them once into :class:`Sample`\\ s;
* :class:`PatchDataset` serves random (optionally foreground-centred) patches with
  the target, a ``valid`` mask (ROI and unlabelled pixels are invalid) and,
  for the Focal Distance Penalty Term, the distance-penalty map — computed once
  per sample and cropped/augmented together with the image.

Labels follow one convention everywhere: a mask holds class indices (binary:
0/1), ``-1`` marks an ignored pixel. :func:`labels_from_annotation` turns
what users paint in napari into that convention.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..progress import CancelToken, ProgressCallback, check, report
from .augmentation import Augmenter
from .io import IMAGE_SUFFIXES, is_2d_image, read_image, read_mask
from .normalization import prepare_image
from .resize import resize_arrays, working_size

IGNORE = -1
ANNOTATION_MODES = ("dense", "sparse")
#: separators allowed between an image stem and a mask suffix ("21" ↔ "21_manual1")
_STEM_SEPARATORS = ("_", "-", ".", " ")

DistancePenaltyFn = Callable[[np.ndarray, int], np.ndarray]
Pair = tuple[Path, Path, Path | None]


@dataclass
class Sample:
    """One training image, normalised and ready for patch sampling.

    ``image`` is ``(C, H, W)`` float32, ``mask`` ``(H, W)`` int64 class indices
    (``-1`` = ignore), ``roi`` an optional ``(H, W)`` bool region outside which
    nothing counts (e.g. DRIVE's field of view), ``dpt`` the cached
    ``(K, H, W)`` distance-penalty map (filled in by :class:`PatchDataset`).
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    roi: np.ndarray | None = None
    dpt: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        self.mask = np.asarray(self.mask).astype(np.int64, copy=False)
        if self.image.ndim != 3:
            raise ValueError(
                f"sample {self.name!r}: image must be (C, H, W), got {self.image.shape}"
            )
        size = self.image.shape[1:]
        if self.mask.shape != size:
            raise ValueError(
                f"sample {self.name!r}: mask shape {self.mask.shape} does not match image {size}"
            )
        if self.roi is not None:
            self.roi = np.asarray(self.roi).astype(bool, copy=False)
            if self.roi.shape != size:
                raise ValueError(
                    f"sample {self.name!r}: roi shape {self.roi.shape} does not match image {size}"
                )
        if self.dpt is not None:
            self.dpt = _checked_dpt(self.dpt, size, self.name)

    @property
    def valid(self) -> np.ndarray:
        """Pixels that count: labelled (mask ≥ 0) and inside the ROI."""
        valid = self.mask >= 0
        return valid & self.roi if self.roi is not None else valid


# -- files -------------------------------------------------------------------
def pair_folder(
    images_dir: str | Path, masks_dir: str | Path, *, fov_dir: str | Path | None = None
) -> list[Pair]:
    """Pair every image in ``images_dir`` with its mask (and FOV mask) by file stem.

    A mask (FOV) matches an image when its stem equals the image's stem or,
    failing that, when it is the image stem followed by a separator and a
    suffix (``21.png`` ↔ ``21_manual1.gif``, ``a.tif`` ↔ ``a_mask.png``); two
    such candidates are an error. Images come back in natural order (2 before 10).
    Images without a mask raise ``ValueError`` naming a few of them.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images = _image_files(images_dir, "images")
    if masks_dir.resolve() == images_dir.resolve():
        raise ValueError(f"images and masks must be in separate folders, both are {images_dir}")
    masks = _stem_index(_image_files(masks_dir, "masks"))
    fovs = _stem_index(_image_files(Path(fov_dir), "FOV masks")) if fov_dir is not None else None
    pairs: list[Pair] = []
    missing: list[str] = []
    for image in images:
        mask = _match(image.stem, masks)
        fov = _match(image.stem, fovs) if fovs is not None else None
        if mask is None or (fovs is not None and fov is None):
            missing.append(image.name)
            continue
        pairs.append((image, mask, fov))
    if missing:
        what = "mask" if fov_dir is None else "mask or FOV mask"
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(f"{len(missing)} image(s) in {images_dir} have no {what}: {shown}")
    return pairs


def natural_key(name: str) -> list[Any]:
    """Sort key that orders "2.png" before "10.png"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


# -- annotations -------------------------------------------------------------
def labels_from_annotation(labels: np.ndarray, mode: str, n_classes: int) -> np.ndarray:
    """Convert painted labels to class indices (int64, ``-1`` = ignore).

    * ``"dense"``: every pixel is labelled; the value is the class index. For a
      binary model (``n_classes`` 1 or 2) any nonzero value is foreground, so
      0/255 masks work as they are.
    * ``"sparse"``: only painted pixels count — 0 is unlabelled (→ −1),
      1 is background (→ 0) and 2, 3, … are classes 1, 2, …
    """
    if mode not in ANNOTATION_MODES:
        raise ValueError(f"annotation mode must be one of {ANNOTATION_MODES}, got {mode!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.array_equal(
            labels, np.round(labels)
        ):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    classes = max(n_classes, 2)  # a single-logit model still has background + foreground
    if mode == "dense":
        if n_classes <= 2:
            return (labels != 0).astype(np.int64)
        _check_range(labels, 0, classes - 1, f"dense labels for {n_classes} classes")
        return labels
    if not np.any(labels != 0):
        raise ValueError(
            "no labelled pixels: paint background with label 1 and objects with label 2"
            + (f"..{classes}" if classes > 2 else "")
        )
    _check_range(labels, 0, classes, f"sparse labels for {n_classes} class(es)")
    return labels - 1  # 0 → −1 (ignore), 1 → 0, k → k − 1


# -- loading -----------------------------------------------------------------
def load_samples(
    pairs: Iterable[Sequence[Path | str | None]],
    *,
    in_channels: int,
    normalization: dict[str, Any] | None,
    n_classes: int = 1,
    scale: float = 1.0,
    annotation: str = "dense",
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[Sample]:
    """Read ``(image, mask[, roi])`` files into normalised :class:`Sample`\\ s.

    Images go through :func:`~.normalization.prepare_image` (the same path
    inference takes), then are resized by ``scale`` — bilinear with
    anti-aliasing for the image, nearest for mask and ROI — as the predictor
    does with a card's ``input_scale``. Masks are read as labels and converted
    with :func:`labels_from_annotation` (``annotation`` "dense" or "sparse").
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    pairs = [tuple(pair) for pair in pairs]
    samples: list[Sample] = []
    for done, pair in enumerate(pairs):
        check(cancel)
        if len(pair) not in (2, 3):
            raise ValueError(f"expected (image, mask) or (image, mask, roi) paths, got {pair!r}")
        image_path, mask_path = Path(pair[0]), Path(pair[1])
        roi_path = Path(pair[2]) if len(pair) == 3 and pair[2] is not None else None
        raw_image = read_image(image_path)
        if not is_2d_image(raw_image):
            raise ValueError(
                f"{image_path} is a stack of shape {raw_image.shape}; training needs 2D images "
                "(save the slices as separate files)"
            )
        image = prepare_image(raw_image, in_channels, normalization, rgb=rgb)
        raw_mask = read_mask(mask_path, binary=False)
        if raw_mask.shape != image.shape[1:]:
            raise ValueError(
                f"mask {mask_path} is {raw_mask.shape[0]}x{raw_mask.shape[1]} but image "
                f"{image_path} is {image.shape[1]}x{image.shape[2]}"
            )
        try:
            mask = labels_from_annotation(raw_mask, annotation, n_classes)
        except ValueError as exc:
            raise ValueError(f"{mask_path}: {exc}") from exc
        roi = None
        if roi_path is not None:
            roi = read_mask(roi_path, binary=True).astype(bool)
            if roi.shape != mask.shape:
                raise ValueError(
                    f"ROI {roi_path} is {roi.shape}, image {image_path} is {mask.shape}"
                )
        if scale != 1.0:
            size = working_size(*mask.shape, scale=scale)
            image, mask, roi = resize_arrays(image, mask, roi, size)
        samples.append(Sample(image_path.stem, image, mask, roi))
        report(progress, done + 1, len(pairs), f"loaded {image_path.name}")
    return samples


# -- patches -----------------------------------------------------------------
class PatchDataset(Dataset):
    """Random training patches (or whole images) from a list of :class:`Sample`\\ s.

    Items are dicts of tensors: ``image`` (C, P, P) float32, ``target`` (P, P)
    int64 class indices, ``valid`` (P, P) bool and, with ``with_dpt``,
    ``dpt`` (K, P, P) float32. Invalid pixels — unlabelled, outside the ROI,
    padding, or brought in by augmentation — have ``valid`` False and target 0.

    * ``patch_size=None`` serves whole images (validation; the model takes any size);
    * images smaller than the patch are padded (image: reflect, target: ignored);
    * ``fg_fraction`` of the patches are centred on a random foreground pixel;
    * ``samples_per_epoch`` sets the length (item *i* comes from sample *i* mod N);
    * the DPT is computed once per sample by ``dpt_fn(mask, K)`` with
      ``K = max(n_classes, 2)`` maps, background included, as the losses expect
      (default :func:`napari_attnseg.losses.distance_penalty_map`; ignored
      pixels count as background) and cached on the sample. A cached map
      with the wrong K (another ``n_classes``) is an error.

    Randomness is seeded by ``seed`` (and by the epoch after :meth:`set_epoch`);
    in DataLoader workers it is re-derived from the worker's seed as well, so
    workers never repeat each other's patches.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        patch_size: int | None,
        augment: Augmenter | None,
        n_classes: int,
        with_dpt: bool = False,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        fg_fraction: float = 0.0,
        dpt_fn: DistancePenaltyFn | None = None,
    ) -> None:
        self.samples = list(samples)
        if not self.samples:
            raise ValueError("PatchDataset needs at least one sample")
        if patch_size is not None and (isinstance(patch_size, bool) or int(patch_size) < 1):
            raise ValueError(f"patch_size must be a positive integer or None, got {patch_size!r}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 or None, got {samples_per_epoch}")
        if not 0.0 <= fg_fraction <= 1.0:
            raise ValueError(f"fg_fraction must be in [0, 1], got {fg_fraction}")
        channels = {sample.image.shape[0] for sample in self.samples}
        if len(channels) > 1:
            raise ValueError(f"samples have different channel counts {sorted(channels)}")
        self.patch_size = int(patch_size) if patch_size is not None else None
        self.augment = None if augment is None or augment.is_identity else augment
        self.n_classes = n_classes
        self.with_dpt = with_dpt
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.fg_fraction = float(fg_fraction)
        self._check_labels()
        self._foreground: dict[int, np.ndarray] = {}
        self.epoch = 0
        self._rng = np.random.default_rng(seed)
        self._rng_worker_seed: int | None = None
        if with_dpt:
            self._fill_dpt(dpt_fn)

    @property
    def n_maps(self) -> int:
        """K, the DPT channels: one per class, background included (2 for a binary model)."""
        return max(self.n_classes, 2)

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Derive this epoch's patches and augmentations from ``(seed, epoch)``.

        Called by the trainer before each epoch, it makes a resumed run draw the
        same patches as an uninterrupted one.
        """
        self.epoch = int(epoch)
        self._rng = np.random.default_rng([self.seed, self.epoch])
        self._rng_worker_seed = None
        if self.augment is not None:
            self.augment.set_random_state(int(self._rng.integers(2**31 - 1)))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = self._generator()
        sample_index = index % len(self.samples)
        sample = self.samples[sample_index]
        arrays = {"image": sample.image, "target": sample.mask, "valid": sample.valid}
        if self.with_dpt:
            arrays["dpt"] = sample.dpt
        if self.patch_size is not None:
            arrays = self._random_patch(arrays, sample_index, rng)
        arrays["target"] = np.where(arrays["valid"], arrays["target"], 0)
        if self.augment is not None:
            arrays = self.augment(arrays)
            arrays["target"] = np.where(arrays["valid"], arrays["target"], 0)
        item = {
            "image": torch.tensor(arrays["image"], dtype=torch.float32),
            "target": torch.tensor(arrays["target"], dtype=torch.int64),
            "valid": torch.tensor(arrays["valid"], dtype=torch.bool),
        }
        if self.with_dpt:
            item["dpt"] = torch.tensor(arrays["dpt"], dtype=torch.float32)
        return item

    # -- internals --------------------------------------------------------
    def _check_labels(self) -> None:
        highest = max(self.n_classes, 2) - 1
        for sample in self.samples:
            top = int(sample.mask.max()) if sample.mask.size else 0
            if top > highest or int(sample.mask.min(initial=0)) < IGNORE:
                raise ValueError(
                    f"sample {sample.name!r} has mask values outside -1..{highest} "
                    f"for n_classes={self.n_classes}"
                )

    def _fill_dpt(self, dpt_fn: DistancePenaltyFn | None) -> None:
        if dpt_fn is None:
            from ..losses import distance_penalty_map as dpt_fn
        for sample in self.samples:
            if sample.dpt is None:
                sample.dpt = dpt_fn(np.maximum(sample.mask, 0), self.n_maps)
            sample.dpt = _checked_dpt(sample.dpt, sample.mask.shape, sample.name, self.n_maps)

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        if info is not None and info.seed != self._rng_worker_seed:
            self._rng = np.random.default_rng([self.seed, self.epoch, info.seed])
            self._rng_worker_seed = info.seed
            if self.augment is not None:
                self.augment.set_random_state(int(self._rng.integers(2**31 - 1)))
        return self._rng

    def _random_patch(
        self, arrays: dict[str, np.ndarray], sample_index: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        size = self.patch_size
        height, width = arrays["image"].shape[-2:]
        pad_y, pad_x = max(size - height, 0), max(size - width, 0)
        if pad_y or pad_x:
            arrays = _pad(arrays, pad_y, pad_x)
        top = left = None
        if self.fg_fraction > 0 and rng.random() < self.fg_fraction:
            foreground = self._foreground_pixels(sample_index)
            if foreground.size:
                y, x = np.unravel_index(foreground[rng.integers(foreground.size)], (height, width))
                top = int(np.clip(y + pad_y // 2 - size // 2, 0, height + pad_y - size))
                left = int(np.clip(x + pad_x // 2 - size // 2, 0, width + pad_x - size))
        if top is None:
            top = int(rng.integers(height + pad_y - size + 1))
            left = int(rng.integers(width + pad_x - size + 1))
        window = (..., slice(top, top + size), slice(left, left + size))
        return {key: value[window] for key, value in arrays.items()}

    def _foreground_pixels(self, sample_index: int) -> np.ndarray:
        if sample_index not in self._foreground:
            sample = self.samples[sample_index]
            self._foreground[sample_index] = np.flatnonzero((sample.mask > 0) & sample.valid)
        return self._foreground[sample_index]


# -- helpers -----------------------------------------------------------------
def _image_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files = [
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {what} folder {folder}")
    return sorted(files, key=lambda path: natural_key(path.name))


def _stem_index(files: list[Path]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in files:
        if path.stem in index:
            raise ValueError(
                f"two files share the stem {path.stem!r}: {index[path.stem]} and {path}"
            )
        index[path.stem] = path
    return index


def _match(stem: str, index: dict[str, Path]) -> Path | None:
    if stem in index:
        return index[stem]
    candidates = [
        path
        for other, path in index.items()
        if other.startswith(stem) and other[len(stem) : len(stem) + 1] in _STEM_SEPARATORS
    ]
    if len(candidates) > 1:
        names = ", ".join(sorted(path.name for path in candidates))
        raise ValueError(f"image {stem!r} matches several files: {names}")
    return candidates[0] if candidates else None


def _check_range(labels: np.ndarray, low: int, high: int, what: str) -> None:
    bad = np.unique(labels[(labels < low) | (labels > high)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise ValueError(f"{what} must be in {low}..{high}, found {shown}")


def _pad(arrays: dict[str, np.ndarray], pad_y: int, pad_x: int) -> dict[str, np.ndarray]:
    """Centre-pad to the patch size: image reflected, everything else empty/invalid."""
    spatial = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2))
    out = {}
    for key, value in arrays.items():
        widths = ((0, 0),) * (value.ndim - 2) + spatial
        if key == "image":
            flat = any(n < 2 for n in value.shape[-2:])
            out[key] = np.pad(value, widths, mode="edge" if flat else "reflect")
        else:
            fill = IGNORE if key == "target" else 0
            out[key] = np.pad(value, widths, mode="constant", constant_values=fill)
    return out


def _checked_dpt(
    dpt: np.ndarray, size: tuple[int, ...], name: str, n_maps: int | None = None
) -> np.ndarray:
    dpt = np.asarray(dpt, dtype=np.float32)
    if dpt.ndim == 2:
        dpt = dpt[None]
    k = "K" if n_maps is None else n_maps
    if dpt.ndim != 3 or dpt.shape[1:] != tuple(size) or dpt.shape[0] != (n_maps or dpt.shape[0]):
        raise ValueError(
            f"sample {name!r}: DPT map must be ({k}, {size[0]}, {size[1]}), got {dpt.shape}"
        )
    return dpt
