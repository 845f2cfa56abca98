"""Random training patches (or whole images) from :class:`~.samples.Sample`\\ s.

Items carry the image, the target, a ``valid`` mask (ROI and unlabelled
pixels are invalid) and, for the Focal Distance Penalty Term, the
distance-penalty map — computed once per sample and cropped/augmented
together with the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..losses import distance_penalty_map
from .annotations import IGNORE
from .augmentation import Augmenter
from .samples import Sample, _checked_dpt

DistancePenaltyFn = Callable[[np.ndarray, int], np.ndarray]


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
        dpt_fn = dpt_fn or distance_penalty_map
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
