"""The model card: everything needed to use a model besides its weights (plain data).

It lives below :mod:`.base` so that every :class:`~.base.SegmentationModel`
can declare its ``card``; :mod:`.persistence` writes it as JSON beside the
weights and embeds it in the safetensors header.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: a card's ``normalization`` modes (applied by ``data.normalization.normalize``)
NORMALIZATION_MODES = ("zscore", "dataset", "percentile", "minmax", "none")
DEFAULT_NORMALIZATION: dict[str, Any] = {"mode": "zscore"}
#: keys of a saved card document that describe the file, not the card
ENVELOPE = ("format", "format_version", "config", "in_channels", "n_classes", "weights_dtype")


#: the separation heads a card may name (``instances["method"]``), and their class names
HEADS: dict[str, tuple[str, ...]] = {
    "bands": ("background", "interior", "boundary", "centre"),
}


@dataclass
class ModelCard:
    """Everything needed to use a model besides its weights.

    ``normalization`` says how inference must normalise an image, e.g.
    ``{"mode": "zscore"}`` (per image), ``{"mode": "dataset", "mean": [...],
    "std": [...]}`` or ``{"mode": "percentile", "low": 1, "high": 99.8}``,
    optionally with ``"clahe": true``. ``input_scale`` is the factor by which
    images are resized before inference (the scale the model was trained at);
    ``input_size`` (``[H, W]``), when set, instead resizes every image to that
    fixed size (models trained on whole frames resized to one size, such as
    the polyp models), and the prediction is resized back.
    """

    name: str = ""
    description: str = ""
    class_names: list[str] = field(default_factory=list)
    normalization: dict[str, Any] = field(default_factory=lambda: {"mode": "zscore"})
    input_scale: float = 1.0
    input_size: list[int] | None = None
    threshold: float = 0.5
    tile_size: int | None = None
    license: str = ""
    #: median object diameter in pixels at the scale the network works at (the
    #: training scale), measured on the training masks; ``None``: not an object model
    object_diameter: float | None = None
    #: the 10th–90th percentile of the training images' median object diameters (working
    #: pixels): objects of a size in this range are not resampled (the network saw such sizes)
    object_diameter_range: list[float] | None = None
    #: ``[min, max]`` resampling that auto size (or auto field of view) may apply (None: the
    #: predictor's default, ``inference.objects.DEFAULT_ZOOM_RANGE`` /
    #: ``inference.fov_scale.DEFAULT_FOV_ZOOM_RANGE``); the training zoom augmentation
    #: justifies it
    zoom_range: list[float] | None = None
    #: fundus models: the training photographs' field-of-view diameter (working pixels,
    #: ``inference.fov_scale``); photographs of other cameras are resampled to match it
    fov_diameter: float | None = None
    #: how countable objects are made from the prediction (``objects.instances``),
    #: e.g. ``{"method": "watershed"}``; ``None``: a semantic model (masks only)
    instances: dict[str, Any] | None = None
    #: how to find the region of interest automatically (``objects.fov``), e.g.
    #: ``{"method": "fundus"}``; ``None``: the whole image
    roi: dict[str, Any] | None = None
    base_model: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        card = cls(**{k: v for k, v in data.items() if k in known})
        extra = {k: v for k, v in data.items() if k not in known and k not in ENVELOPE}
        card.metadata = {**extra, **card.metadata}
        return card

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def separation_head(self) -> str | None:
        """The separation head the network has (``"bands"``: background, interior, boundary,
        centre; :data:`HEADS`, whose targets :mod:`napari_attnseg.data.targets` makes), named by ``instances["method"]``; None
        for a model whose classes are the output (binary and semantic models)."""
        method = (self.instances or {}).get("method")
        return method if method in HEADS else None

    def predicted_classes(self, n_classes: int) -> int:
        """The classes a prediction of a network with ``n_classes`` outputs has: a separation
        head's classes make one object class (background / object), a single logit is
        background / foreground, else the network's classes."""
        return 2 if self.separation_head else max(2, int(n_classes))


_ENVELOPE = ("format", "format_version", "config", "in_channels", "n_classes", "weights_dtype")


def check_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A complete, checked copy of a normalisation spec (``None``: the default z-score)."""
    spec = dict(DEFAULT_NORMALIZATION if spec is None else spec)
    spec.setdefault("mode", "zscore")
    if spec["mode"] not in NORMALIZATION_MODES:
        raise ValueError(
            f"unknown normalization mode {spec['mode']!r}; use one of {NORMALIZATION_MODES}"
        )
    if spec["mode"] == "percentile":
        low, high = float(spec.get("low", 1.0)), float(spec.get("high", 99.8))
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"percentile normalization needs 0 <= low < high <= 100, got {low}, {high}"
            )
    return spec
