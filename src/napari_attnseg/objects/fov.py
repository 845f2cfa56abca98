"""The field of view of a fundus photograph: the bright disc of the retina.

A fundus camera images the retina through a circular aperture; outside it
the photograph is (nearly) black. :func:`field_of_view` finds that disc from
the red channel, where the retina is brightest and most even:

1. threshold: red > min + ``fraction`` × (99th percentile − min) (robust to
   a few saturated pixels, and unlike Otsu's threshold not pulled into the
   retina by a dark, unevenly lit fundus);
2. morphological closing with a disc of ``closing`` × the image's smaller
   side, which bridges dark vessels and lesions along the rim;
3. holes filled, and only the largest connected component kept (the
   aperture is one disc; specks of glare outside it go).

Measured against DRIVE's hand-made FOV masks in ``docs/objects.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

from ..data.input_spec import is_colour

#: inside: red > min + FRACTION × (99th percentile − min) of the red channel
FRACTION = 0.15
#: closing radius, as a fraction of the image's smaller side
CLOSING = 0.01


def _red(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and is_colour(image.shape):
        return image[..., 0].astype(np.float32)
    if image.ndim == 2:
        return image.astype(np.float32)
    raise ValueError(
        f"expected a fundus photograph (H, W, 3|4) or a grey image (H, W), got shape {image.shape}"
    )


def field_of_view(
    image: np.ndarray, *, fraction: float = FRACTION, closing: float = CLOSING
) -> np.ndarray:
    """Boolean mask (H, W) of the field of view of a fundus photograph (RGB(A) or grey)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if closing < 0:
        raise ValueError(f"closing must be >= 0, got {closing}")
    red = _red(image)
    if red.size == 0:
        raise ValueError("the image is empty")
    if not np.isfinite(red).all():
        raise ValueError("the image holds NaN or infinite values")
    low = float(red.min())
    high = float(np.percentile(red, 99))
    if high <= low:
        return np.zeros(red.shape, dtype=bool)  # a flat image shows no aperture
    mask = red > low + fraction * (high - low)
    radius = int(round(closing * min(red.shape)))
    if radius > 0:
        # mode="ignore": pixels beyond the border take no part, so the disc is
        # not eaten away where it meets the image's edge
        footprint = morphology.disk(radius, decomposition="sequence")
        mask = morphology.closing(mask, footprint, mode="ignore")
    mask = ndi.binary_fill_holes(mask)
    components, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        mask = components == sizes.argmax()
    return mask


__all__ = ["CLOSING", "FRACTION", "field_of_view"]
