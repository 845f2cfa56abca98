"""Data: image I/O, the one input specification, samples and patches, augmentation, splits.

>>> from napari_attnseg.data import InputSpec, pair_folder, load_samples, PatchDataset
>>> spec = InputSpec(in_channels=3, normalization={"mode": "zscore"})
>>> pairs = pair_folder("DRIVE/train/images", "DRIVE/train/masks", fov_dir="DRIVE/train/fov")
>>> samples = load_samples(pairs, spec)
>>> train = PatchDataset(samples, patch_size=128, augment=Augmenter(), n_classes=1)

Modules, in the order an image meets them: ``io`` (files ↔ arrays),
``input_spec`` (channels, normalisation and working size — the one place a
network's input is made), ``pairing`` (images ↔ masks by file stem),
``annotations`` (painted labels → class indices), ``samples`` (prepared
training images), ``patches`` (random training patches), ``augmentation``,
``splits``. This package never imports napari or Qt.
"""

from ..models.card import DEFAULT_NORMALIZATION, NORMALIZATION_MODES
from .annotations import ANNOTATION_MODES, IGNORE, labels_from_annotation
from .augmentation import Augmenter
from .input_spec import InputSpec, Layout, canonical, is_colour, layout_of
from .io import (
    IMAGE_SUFFIXES,
    ImageFileError,
    is_image_file,
    read_image,
    read_mask,
    write_image,
    write_mask,
)
from .normalization import (
    apply_clahe,
    dataset_statistics,
    normalize,
)
from .pairing import natural_key, pair_folder
from .patches import PatchDataset
from .samples import Sample, load_samples
from .splits import consecutive_groups, split_by_groups, split_from_lists, split_indices

__all__ = [
    "ANNOTATION_MODES",
    "DEFAULT_NORMALIZATION",
    "IGNORE",
    "IMAGE_SUFFIXES",
    "ImageFileError",
    "NORMALIZATION_MODES",
    "Augmenter",
    "InputSpec",
    "Layout",
    "PatchDataset",
    "Sample",
    "apply_clahe",
    "canonical",
    "consecutive_groups",
    "dataset_statistics",
    "is_colour",
    "is_image_file",
    "labels_from_annotation",
    "layout_of",
    "load_samples",
    "natural_key",
    "normalize",
    "pair_folder",
    "read_image",
    "read_mask",
    "split_by_groups",
    "split_from_lists",
    "split_indices",
    "write_image",
    "write_mask",
]
