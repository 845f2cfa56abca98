"""Data: image I/O, normalisation, training samples and patches, augmentation, splits.

>>> from napari_attnseg.data import pair_folder, load_samples, PatchDataset, Augmenter
>>> pairs = pair_folder("DRIVE/train/images", "DRIVE/train/masks", fov_dir="DRIVE/train/fov")
>>> samples = load_samples(pairs, in_channels=3, normalization={"mode": "zscore"})
>>> train = PatchDataset(samples, patch_size=128, augment=Augmenter(), n_classes=1)

This package never imports napari or Qt.
"""

from .augmentation import Augmenter
from .datasets import (
    IGNORE,
    PatchDataset,
    Sample,
    labels_from_annotation,
    load_samples,
    natural_key,
    pair_folder,
)
from .io import (
    IMAGE_SUFFIXES,
    is_2d_image,
    is_image_file,
    read_image,
    read_mask,
    write_image,
    write_mask,
)
from .normalization import (
    DEFAULT_NORMALIZATION,
    NORMALIZATION_MODES,
    apply_clahe,
    dataset_statistics,
    normalize,
    prepare_image,
    to_channels_first,
)
from .splits import consecutive_groups, split_by_groups, split_from_lists, split_indices

__all__ = [
    "DEFAULT_NORMALIZATION",
    "IGNORE",
    "IMAGE_SUFFIXES",
    "NORMALIZATION_MODES",
    "Augmenter",
    "PatchDataset",
    "Sample",
    "apply_clahe",
    "consecutive_groups",
    "dataset_statistics",
    "is_2d_image",
    "is_image_file",
    "labels_from_annotation",
    "load_samples",
    "natural_key",
    "normalize",
    "pair_folder",
    "prepare_image",
    "read_image",
    "read_mask",
    "split_by_groups",
    "split_from_lists",
    "split_indices",
    "to_channels_first",
    "write_image",
    "write_mask",
]
