"""Objects: instance labels, object size, per-object tables, instance metrics, field of view.

Pure numpy-in / numpy-out functions (no napari, no Qt, no torch) that turn a
segmentation model's output into countable objects and measure them:

>>> from napari_attnseg.objects import instances_from_foreground, object_table
>>> labels = instances_from_foreground(prediction.foreground)  # uint32, 0 = background
>>> table = object_table(labels, image)                         # dict of columns

- :mod:`.instances` — instance labels from a foreground map (seeded watershed
  of the distance transform, or connected components), from a 3-class
  (background, interior, boundary) model, or cells from membranes;
- :mod:`.stitch` — objects of a stack labelled plane by plane linked across
  planes by overlap (IoU), so that an object spanning planes has one id;
- :mod:`.size` — equivalent diameters, an image's median object diameter
  (for "auto diameter" rescaling) and a training set's (for the model card);
- :mod:`.table` — per-object measurements (``regionprops_table``) and CSV;
- :mod:`.matching` — instance metrics: IoU matching, AP at IoU thresholds
  and the DSB mean AP, F1, panoptic quality, and an accumulator over images;
- :mod:`.fov` — the field of view of a fundus photograph.
"""

from .fov import field_of_view
from .instances import (
    DECODERS,
    DEFAULT_SIGMA,
    DEFAULT_SPLIT,
    LABEL_DTYPE,
    METHODS,
    cells_from_membranes,
    default_min_size,
    instances_from_classes,
    instances_from_foreground,
    instances_from_head,
    relabel_raster,
    smallest_unsigned,
)
from .matching import (
    INSTANCE_COUNTS,
    INSTANCE_METRICS,
    THRESHOLDS,
    InstanceAccumulator,
    Matching,
    Overlap,
    format_instance_table,
    instance_metrics,
    iou_matrix,
    match,
    match_pairs,
    overlap,
)
from .size import (
    MIN_OBJECTS,
    diameter_summary,
    median_diameter,
    object_diameters,
    training_diameter,
    training_diameters,
)
from .stitch import DEFAULT_STITCH, stitch_planes
from .table import SHAPE_COLUMNS, STACK_COLUMNS, object_table, write_table_csv

__all__ = [
    "DECODERS",
    "DEFAULT_SIGMA",
    "DEFAULT_SPLIT",
    "DEFAULT_STITCH",
    "INSTANCE_COUNTS",
    "INSTANCE_METRICS",
    "LABEL_DTYPE",
    "METHODS",
    "MIN_OBJECTS",
    "SHAPE_COLUMNS",
    "STACK_COLUMNS",
    "THRESHOLDS",
    "InstanceAccumulator",
    "Matching",
    "Overlap",
    "cells_from_membranes",
    "default_min_size",
    "diameter_summary",
    "field_of_view",
    "format_instance_table",
    "instance_metrics",
    "instances_from_classes",
    "instances_from_foreground",
    "instances_from_head",
    "iou_matrix",
    "match",
    "match_pairs",
    "median_diameter",
    "object_diameters",
    "object_table",
    "overlap",
    "relabel_raster",
    "smallest_unsigned",
    "stitch_planes",
    "training_diameter",
    "training_diameters",
    "write_table_csv",
]
