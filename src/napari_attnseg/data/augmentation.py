"""Random augmentation of training patches, built on MONAI dictionary transforms.

One random draw moves the image and everything aligned with it — the target
classes, the ``valid`` mask and the distance-penalty map — so labels never
drift from the pixels they describe. Geometric transforms resample the image
and the DPT bilinearly and the target and ``valid`` with nearest neighbour;
pixels that a rotation or zoom brings in from outside the patch are marked
invalid (``valid`` is padded with 0), so the loss ignores them. Intensity
transforms touch the image only.

Photometric transforms that imitate other cameras and exposures — ``gamma``,
``hue``, ``blur``, ``noise`` and ``jpeg`` — are opt-in (off by default), so
recipes and model cards written before they existed train exactly as before;
``zoom=(0.6, 1.6)`` adds the matching scale augmentation.

The options are plain data (:meth:`Augmenter.to_config` /
:meth:`Augmenter.from_config`), so a training recipe or model card can store
them. The defaults follow the Focal Attention recipe (Yeung et al., ISBI 2022,
§II-D: mirroring, rotation, scaling, brightness) except elastic deformation, which is opt-in
(``elastic=True`` or a dict of parameters) because it costs about as much
again as all other transforms together.
"""

from __future__ import annotations

import inspect
import io
import math
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
#: the best JPEG quality ``jpeg`` draws (its option is the worst)
JPEG_MAX_QUALITY = 95
#: RGB -> YIQ (NTSC); ``hue`` rotates the (I, Q) chroma plane
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float64
)


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
    * ``channel_shift``: add an independent offset in ±``channel_shift`` per channel;
    * ``gamma``: an amount ``g`` (gamma uniform in [1/(1+g), 1+g]) or a range
      ``[low, high]``; the image is rescaled to [0, 1] by its own min and max,
      raised to the gamma and scaled back (MONAI ``RandAdjustContrastd``);
    * ``hue``: rotate the hue of RGB (3-channel) images by up to ±``hue`` of the
      colour circle (0.5: any hue), a rotation of the YIQ chroma plane; other
      channel counts and grey RGB (R = G = B) are left as they are;
    * ``blur``: Gaussian blur, sigma uniform in [0, ``blur``] pixels (isotropic);
    * ``noise``: additive Gaussian noise, std uniform in [0, ``noise``]
      (MONAI ``RandGaussianNoised``);
    * ``jpeg``: JPEG compression artefacts, quality uniform in [``jpeg``, 95]: each
      channel is rescaled to 0–255 by its own min and max, encoded (3 channels as
      one RGB picture, with its chroma subsampling) and decoded with Pillow, and
      scaled back; ``None`` (or 0) is off.

    Intensity amounts are in units of the *normalised* image (z-score: stds).
    ``gamma``, ``hue``, ``blur``, ``noise`` and ``jpeg`` are off by default; they run
    after the other transforms, in that order. ``zoom`` may be as wide as
    ``(0.6, 1.6)`` for scale augmentation: pixels a zoom-out brings in from outside
    the patch get ``valid`` 0 (the image is padded by reflection).
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
        gamma: float | tuple[float, float] = 0.0,
        hue: float = 0.0,
        blur: float = 0.0,
        noise: float = 0.0,
        jpeg: int | None = None,
        prob: float = 0.5,
        seed: int | None = 0,
    ) -> None:
        options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self._configure(**options)
        self._transforms = self._build()
        self.set_random_state(seed)

    def _configure(
        self,
        flips: bool,
        rot90: bool,
        rotation_deg: float,
        zoom: tuple[float, float] | None,
        elastic: bool | Mapping[str, Any],
        brightness: float,
        contrast: float,
        channel_shift: float,
        gamma: float | tuple[float, float],
        hue: float,
        blur: float,
        noise: float,
        jpeg: int | None,
        prob: float,
        seed: int | None,
    ) -> None:
        """Validate and store the options (no transforms built: MONAI stays unimported)."""
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
        self.gamma = _gamma_option(gamma)
        self.hue = _amount("hue", hue, high=0.5)
        self.blur = _amount("blur", blur)
        self.noise = _amount("noise", noise)
        self.jpeg = _jpeg_option(jpeg)
        self.prob = float(prob)
        self.seed = seed

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
        cls.check_config(config)
        return cls(**config)

    @classmethod
    def check_config(cls, config: Mapping[str, Any] | None) -> None:
        """Raise ``ValueError`` (naming the option) unless ``config`` is valid for
        :meth:`from_config`; builds no transform, so MONAI is not imported."""
        if config is None:
            return
        allowed = set(inspect.signature(cls).parameters)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {unknown}; valid: {sorted(allowed)}")
        bound = inspect.signature(cls).bind(**config)
        bound.apply_defaults()
        cls.__new__(cls)._configure(**bound.arguments)

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
            "gamma": list(self.gamma) if isinstance(self.gamma, tuple) else self.gamma,
            "hue": self.hue,
            "blur": self.blur,
            "noise": self.noise,
            "jpeg": self.jpeg,
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
            RandAdjustContrastd,
            RandAffined,
            RandFlipd,
            RandGaussianNoised,
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
        # photometric (camera / exposure) transforms: appended after the others, so the
        # random streams of the transforms above stay what they were without them
        gammas = _gamma_range(self.gamma)
        if gammas is not None:
            transforms.append(("gamma", RandAdjustContrastd("image", prob=prob, gamma=gammas)))
        if self.hue > 0:
            transforms.append(("hue", _RandHue(self.hue, prob)))
        if self.blur > 0:
            transforms.append(("blur", _RandBlur(self.blur, prob)))
        if self.noise > 0:
            noise = RandGaussianNoised("image", prob=prob, mean=0.0, std=self.noise)
            transforms.append(("noise", noise))
        if self.jpeg is not None:
            transforms.append(("jpeg", _RandJpeg(self.jpeg, prob)))
        return transforms


class _RandImageTransform:
    """A random transform of ``data["image"]`` alone, with MONAI's seeding interface."""

    def __init__(self, amount: float, prob: float) -> None:
        self.amount = amount
        self.prob = prob
        self.R = np.random.RandomState()

    def set_random_state(self, seed: int | None = None) -> _RandImageTransform:
        self.R = np.random.RandomState(seed)
        return self

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(data)
        fire = self.R.rand() < self.prob
        parameter = self._draw()  # drawn either way: one draw per call keeps streams aligned
        if fire and "image" in out:
            image = out["image"]
            if isinstance(image, torch.Tensor):
                image = image.detach().cpu().numpy()
            image = np.asarray(image, dtype=np.float32)
            out["image"] = np.ascontiguousarray(self._apply(image, parameter), dtype=np.float32)
        return out

    def _draw(self) -> float:
        raise NotImplementedError

    def _apply(self, image: np.ndarray, parameter: float) -> np.ndarray:
        raise NotImplementedError


class _RandHue(_RandImageTransform):
    def _draw(self) -> float:
        return float(self.R.uniform(-self.amount, self.amount))

    def _apply(self, image: np.ndarray, parameter: float) -> np.ndarray:
        if image.ndim != 3 or image.shape[0] != 3:
            return image
        angle = 2.0 * math.pi * parameter
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
        matrix = np.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ
        return np.einsum("ij,jhw->ihw", matrix.astype(np.float32), image)


class _RandBlur(_RandImageTransform):
    def _draw(self) -> float:
        return float(self.R.uniform(0.0, self.amount))

    def _apply(self, image: np.ndarray, parameter: float) -> np.ndarray:
        if parameter <= 0:
            return image
        from scipy.ndimage import gaussian_filter

        sigma = (0.0,) * (image.ndim - 2) + (parameter, parameter)
        return gaussian_filter(image, sigma=sigma, mode="reflect")


class _RandJpeg(_RandImageTransform):
    def _draw(self) -> float:
        return float(self.R.randint(int(self.amount), JPEG_MAX_QUALITY + 1))

    def _apply(self, image: np.ndarray, parameter: float) -> np.ndarray:
        from PIL import Image

        planes = image.reshape(-1, *image.shape[-2:])
        low = planes.min(axis=(1, 2), keepdims=True)
        span = planes.max(axis=(1, 2), keepdims=True) - low
        safe = np.where(span > 0, span, 1.0)
        quantised = np.clip(np.rint((planes - low) / safe * 255.0), 0, 255).astype(np.uint8)
        quality = int(parameter)
        if len(planes) == 3:
            rgb = Image.fromarray(np.ascontiguousarray(quantised.transpose(1, 2, 0)), "RGB")
            decoded = _jpeg_round_trip(rgb, quality).transpose(2, 0, 1)
        else:
            decoded = np.stack(
                [_jpeg_round_trip(Image.fromarray(plane, "L"), quality) for plane in quantised]
            )
        restored = decoded.astype(np.float32) / 255.0 * span + low
        restored = np.where(span > 0, restored, planes)  # constant channels stay as they were
        return restored.reshape(image.shape)


def _jpeg_round_trip(picture: Any, quality: int) -> np.ndarray:
    """A Pillow picture encoded as JPEG at ``quality`` and decoded again, as an array."""
    from PIL import Image

    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert(picture.mode))


def _amount(label: str, value: Any, high: float = math.inf) -> float:
    """A finite number in [0, high]; a ValueError naming ``label`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{label} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= high:
        bound = f"in [0, {high:g}]" if math.isfinite(high) else ">= 0"
        raise ValueError(f"{label} must be {bound}, got {value}")
    return value


def _gamma_option(gamma: Any) -> float | tuple[float, float]:
    """``gamma`` as an amount (>= 0) or a ``(low, high)`` range with 0 < low <= high."""
    if isinstance(gamma, (list, tuple)):
        if len(gamma) != 2:
            raise ValueError(f"gamma must be an amount or [low, high], got {gamma!r}")
        low, high = (_amount("gamma", v) for v in gamma)
        if not 0 < low <= high:
            raise ValueError(f"gamma must be [low, high] with 0 < low <= high, got {gamma!r}")
        return (low, high)
    return _amount("gamma", gamma)


def _gamma_range(gamma: float | tuple[float, float]) -> tuple[float, float] | None:
    """The gamma range to draw from, or None where ``gamma`` changes nothing."""
    if isinstance(gamma, tuple):
        return None if gamma == (1.0, 1.0) else gamma
    if gamma <= 0:
        return None
    return (1.0 / (1.0 + gamma), 1.0 + gamma)


def _jpeg_option(jpeg: Any) -> int | None:
    """``jpeg`` as the worst JPEG quality (1–95), or None (off; 0 and False also mean off)."""
    if jpeg is None or (isinstance(jpeg, (int, float)) and jpeg == 0):
        return None
    message = f"jpeg must be a quality from 1 to {JPEG_MAX_QUALITY} or null, got {jpeg!r}"
    try:
        quality = _amount("jpeg", jpeg, high=JPEG_MAX_QUALITY)
    except ValueError:
        raise ValueError(message) from None
    if quality != int(quality) or quality < 1:
        raise ValueError(message)
    return int(quality)


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
