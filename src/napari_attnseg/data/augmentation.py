"""Random augmentation of training patches, built on MONAI dictionary transforms.

One random draw moves the image and everything aligned with it — the target
classes, the ``valid`` mask and the distance-penalty map — so labels never
drift from the pixels they describe. Geometric transforms resample the image
and the DPT bilinearly and the target and ``valid`` with nearest neighbour;
pixels that a rotation or zoom brings in from outside the patch are marked
invalid (``valid`` is padded with 0), so the loss ignores them. Intensity
transforms touch the image only.

The options are plain data (:meth:`Augmenter.to_config` /
:meth:`Augmenter.from_config`), so a training recipe or model card can store
them. The defaults follow the Focal Attention recipe (§2.8: mirroring,
rotation, scaling, brightness) except elastic deformation, which is opt-in
(``elastic=True`` or a dict of parameters) because it costs about as much
again as all other transforms together.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np
import torch

#: the keys an augmenter moves jointly, and how each is resampled and padded
KEYS = ("image", "target", "valid", "dpt")
_MODES = ("bilinear", "nearest", "nearest", "bilinear")
_PADDING = ("reflection", "zeros", "zeros", "zeros")
DEFAULT_ELASTIC: dict[str, Any] = {"spacing": 32, "magnitude": [1.0, 3.0]}
_MAX_SEED = 2**31 - 1


class Augmenter:
    """Joint random augmentation of ``{"image", "target", "valid", "dpt"}`` arrays.

    Arrays are ``(C, H, W)``; ``target`` and ``valid`` may also be ``(H, W)``.
    Keys other than those in :data:`KEYS` pass through untouched, missing keys
    are fine. Each transform fires with probability ``prob``:

    * ``flips``: horizontal and vertical mirroring (each independently);
    * ``rot90``: a random multiple of 90° (square inputs only, so a batch
      keeps its shape);
    * ``rotation_deg`` / ``zoom``: one affine resampling, angle uniform in
      ±``rotation_deg``, magnification uniform in ``zoom`` per axis (>1 enlarges);
    * ``elastic``: ``False``, ``True`` or ``{"spacing": px, "magnitude": [lo, hi]}``
      (MONAI ``Rand2DElasticd``);
    * ``brightness``: add one offset in ±``brightness`` to all channels;
    * ``contrast``: scale around the mean by a factor in 1 ± ``contrast``;
    * ``channel_shift``: add an independent offset in ±``channel_shift`` per channel.

    Intensity amounts are in units of the *normalised* image (z-score: stds).
    """

    def __init__(
        self,
        flips: bool = True,
        rot90: bool = True,
        rotation_deg: float = 15.0,
        zoom: tuple[float, float] | None = (0.9, 1.1),
        elastic: bool | Mapping[str, Any] = False,
        brightness: float = 0.1,
        contrast: float = 0.1,
        channel_shift: float = 0.0,
        prob: float = 0.5,
        seed: int | None = 0,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        for label, value in (
            ("rotation_deg", rotation_deg),
            ("brightness", brightness),
            ("contrast", contrast),
            ("channel_shift", channel_shift),
        ):
            if value < 0:
                raise ValueError(f"{label} must be >= 0, got {value}")
        if zoom is not None:
            zoom = (float(zoom[0]), float(zoom[1]))
            if not 0 < zoom[0] <= zoom[1]:
                raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.flips = bool(flips)
        self.rot90 = bool(rot90)
        self.rotation_deg = float(rotation_deg)
        self.zoom = zoom
        self.elastic = _elastic_params(elastic)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.channel_shift = float(channel_shift)
        self.prob = float(prob)
        self.seed = seed
        self._transforms = self._build()
        self.set_random_state(seed)

    # -- construction -----------------------------------------------------
    @classmethod
    def off(cls) -> Augmenter:
        """An augmenter that returns its input unchanged."""
        return cls(
            flips=False,
            rot90=False,
            rotation_deg=0.0,
            zoom=None,
            elastic=False,
            brightness=0.0,
            contrast=0.0,
            channel_shift=0.0,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Augmenter:
        """Rebuild from :meth:`to_config` output (``{}``: defaults, ``None``: :meth:`off`)."""
        if config is None:
            return cls.off()
        allowed = set(inspect.signature(cls).parameters)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {unknown}; valid: {sorted(allowed)}")
        return cls(**config)

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable options: ``Augmenter.from_config(a.to_config())`` acts like ``a``."""
        return {
            "flips": self.flips,
            "rot90": self.rot90,
            "rotation_deg": self.rotation_deg,
            "zoom": list(self.zoom) if self.zoom is not None else None,
            "elastic": dict(self.elastic) if self.elastic else False,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "channel_shift": self.channel_shift,
            "prob": self.prob,
            "seed": self.seed,
        }

    @property
    def is_identity(self) -> bool:
        return not self._transforms or self.prob == 0.0

    def set_random_state(self, seed: int | None) -> None:
        """Re-seed every transform (distinct streams derived from ``seed``)."""
        master = np.random.RandomState(seed)
        for _, transform in self._transforms:
            transform.set_random_state(seed=int(master.randint(_MAX_SEED)))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"Augmenter({options})"

    # -- application ------------------------------------------------------
    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Augment a dict of aligned arrays; returns a new dict with the same types and dtypes."""
        if self.is_identity:
            return dict(data)
        if "image" not in data:
            raise ValueError(f"augmentation needs an 'image' entry, got keys {sorted(data)}")
        height, width = np.shape(data["image"])[-2:]
        work: MutableMapping[str, Any] = dict(data)
        originals: dict[str, tuple[Any, bool, bool]] = {}
        for key in KEYS:
            if key not in data:
                continue
            value = data[key]
            if tuple(np.shape(value)[-2:]) != (height, width):
                raise ValueError(
                    f"augmentation: {key!r} has shape {tuple(np.shape(value))}, "
                    f"but the image is {height}x{width}"
                )
            two_d = np.ndim(value) == 2
            is_torch = isinstance(value, torch.Tensor)
            originals[key] = (value.dtype, two_d, is_torch)
            array = value.detach().cpu().numpy() if is_torch else np.asarray(value)
            array = array.astype(np.float32, copy=False)
            work[key] = array[None] if two_d else array
        for name, transform in self._transforms:
            if name == "rot90" and height != width:
                continue
            work = transform(work)
        out = dict(work)
        for key, (dtype, two_d, is_torch) in originals.items():
            out[key] = _restore(work[key], dtype, two_d, is_torch)
        return out

    # -- internals --------------------------------------------------------
    def _build(self) -> list[tuple[str, Any]]:
        # imported here, not with the module: MONAI's transforms take seconds to import, and
        # the docks import this package long before anything is trained
        from monai.transforms import (
            Rand2DElasticd,
            RandAffined,
            RandFlipd,
            RandRotate90d,
            RandScaleIntensityFixedMeand,
            RandShiftIntensityd,
        )

        keys, prob, common = list(KEYS), self.prob, {"allow_missing_keys": True}
        transforms: list[tuple[str, Any]] = []
        if self.flips:
            transforms.append(("flip_y", RandFlipd(keys, prob=prob, spatial_axis=0, **common)))
            transforms.append(("flip_x", RandFlipd(keys, prob=prob, spatial_axis=1, **common)))
        if self.rot90:
            transforms.append(("rot90", RandRotate90d(keys, prob=prob, max_k=3, **common)))
        zooms = self.zoom is not None and self.zoom != (1.0, 1.0)
        if self.rotation_deg > 0 or zooms:
            # MONAI scales the sampling grid: a grid factor s shows the image 1/s times as large
            scale = (1.0 / self.zoom[1] - 1.0, 1.0 / self.zoom[0] - 1.0) if zooms else None
            affine = RandAffined(
                keys,
                prob=prob,
                rotate_range=np.deg2rad(self.rotation_deg) if self.rotation_deg > 0 else None,
                scale_range=(scale, scale) if scale else None,
                mode=list(_MODES),
                padding_mode=list(_PADDING),
                **common,
            )
            transforms.append(("affine", affine))
        if self.elastic:
            spacing = float(self.elastic["spacing"])
            elastic = Rand2DElasticd(
                keys,
                spacing=(spacing, spacing),
                magnitude_range=tuple(self.elastic["magnitude"]),
                prob=prob,
                mode=list(_MODES),
                padding_mode=list(_PADDING),
                **common,
            )
            transforms.append(("elastic", elastic))
        if self.brightness > 0:
            transforms.append(
                ("brightness", RandShiftIntensityd("image", offsets=self.brightness, prob=prob))
            )
        if self.contrast > 0:
            transforms.append(
                (
                    "contrast",
                    RandScaleIntensityFixedMeand("image", factors=self.contrast, prob=prob),
                )
            )
        if self.channel_shift > 0:
            shift = RandShiftIntensityd(
                "image", offsets=self.channel_shift, prob=prob, channel_wise=True
            )
            transforms.append(("channel_shift", shift))
        return transforms


def _elastic_params(elastic: bool | Mapping[str, Any] | None) -> dict[str, Any]:
    if not elastic:
        return {}
    if elastic is True:
        elastic = DEFAULT_ELASTIC
    if not isinstance(elastic, Mapping):
        raise ValueError(f"elastic must be False, True or a dict of parameters, got {elastic!r}")
    unknown = sorted(set(elastic) - set(DEFAULT_ELASTIC))
    if unknown:
        raise ValueError(f"unknown elastic option(s) {unknown}; valid: {sorted(DEFAULT_ELASTIC)}")
    params = {**DEFAULT_ELASTIC, **elastic}
    low, high = (float(v) for v in params["magnitude"])
    if float(params["spacing"]) <= 0 or not 0 <= low <= high:
        raise ValueError(
            f"elastic needs spacing > 0 and 0 <= magnitude[0] <= magnitude[1], got {params}"
        )
    return {"spacing": float(params["spacing"]), "magnitude": [low, high]}


def _restore(value: Any, dtype: Any, two_d: bool, is_torch: bool) -> Any:
    """Back to the caller's layout and dtype: integer labels rounded, booleans thresholded."""
    tensor = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)
    array = tensor.detach().cpu().numpy()
    if two_d:
        array = array[0]
    if is_torch:
        if dtype == torch.bool:
            array = array > 0.5
        elif not dtype.is_floating_point:
            array = np.rint(array)
        return torch.as_tensor(np.ascontiguousarray(array)).to(dtype)
    if dtype.kind == "b":
        return array > 0.5
    if np.issubdtype(dtype, np.integer):
        return np.rint(array).astype(dtype)
    return np.ascontiguousarray(array.astype(dtype, copy=False))
