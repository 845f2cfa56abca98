#!/usr/bin/env python
"""Build the bundled sample images from DSB2018 (CC0) validation crops.

    python scripts/make_samples.py --data ../shared/data

* ``samples/nuclei.tif`` + ``nuclei_mask.tif``: a 2×2 mosaic (512×512, grey) of
  256² fluorescence crops at *native resolution* (DSB2018_native) with their
  *instance labels* (uint16, one id per nucleus), from images in the validation
  split of both ``recipes/splits/nuclei.json`` (the 96-px zoo models) and
  ``recipes/splits/nuclei_native.json`` (the native default), so no shipped
  model trained on them; the crop of each image with the most nuclei, each
  contrast-stretched to its own percentiles;
* ``samples/nuclei_brightfield.tif`` + mask: a 2×2 mosaic (192×192, RGB) of
  stained/brightfield validation crops.

DSB2018 is CC0 (public domain), so these may be redistributed; no other
dataset is ever bundled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "napari_attnseg" / "samples"


def stretch(tile: np.ndarray) -> np.ndarray:
    """Contrast-stretch one crop to its 0.5–99.8 percentiles, so the crops of a mosaic
    (taken with very different exposures) look alike and one normalisation suits them all."""
    low, high = np.percentile(tile, (0.5, 99.8))
    scaled = (tile.astype(np.float32) - low) / max(1e-6, high - low)
    return (255 * np.clip(scaled, 0, 1)).astype(np.uint8)


def mosaic(tiles: list[np.ndarray], n: int) -> np.ndarray:
    rows = [np.concatenate(tiles[r * n : (r + 1) * n], axis=1) for r in range(n)]
    return np.concatenate(rows, axis=0)


def native_nuclei(data: Path, n: int = 4, side: int = 256) -> tuple[np.ndarray, np.ndarray, list]:
    """The native-resolution fluorescence mosaic and its instance labels (see above)."""
    from skimage.segmentation import relabel_sequential

    val96 = {Path(p[0]).stem for p in json.loads((ROOT / "recipes/splits/nuclei.json").read_text())["val"]}
    native = json.loads((ROOT / "recipes/splits/nuclei_native.json").read_text())
    stems = sorted(k.split("/", 1)[1] for k in native["val"]
                   if k.startswith("dsb/") and native["modality"][k] == "fluorescence"
                   and k.split("/", 1)[1] in val96)
    tiles, sources = [], []
    for stem in stems:
        image = iio.imread(data / "DSB2018_native" / "images" / f"{stem}.png")[..., 0]
        labels = iio.imread(data / "DSB2018_native" / "labels" / f"{stem}.png").astype(np.int64)
        if min(labels.shape) < side:
            continue
        best = None
        for y in range(0, labels.shape[0] - side + 1, side // 2):
            for x in range(0, labels.shape[1] - side + 1, side // 2):
                count = np.unique(labels[y:y + side, x:x + side]).size - 1
                if best is None or count > best[0]:
                    best = (count, y, x)
        count, y, x = best
        if count < 20:
            continue
        crop = (slice(y, y + side), slice(x, x + side))
        tiles.append((stretch(image[crop]), labels[crop]))
        sources.append({"image": stem, "crop_yx": [y, x], "nuclei": int(count)})
        if len(tiles) == n:
            break
    offset, labelled = 0, []
    for _, labels in tiles:
        relabelled = relabel_sequential(labels)[0]
        labelled.append(np.where(relabelled > 0, relabelled + offset, 0))
        offset += int(relabelled.max())
    k = int(round(len(tiles) ** 0.5))
    return (mosaic([t[0] for t in tiles], k), mosaic(labelled, k).astype(np.uint16), sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    val = json.loads((ROOT / "recipes/splits/nuclei.json").read_text())["val"]
    bright, sources = [], {"nuclei": [], "nuclei_brightfield": []}
    for image_path, mask_path, *_ in val:
        image = iio.imread(args.data / image_path)[..., :3]
        mask = (iio.imread(args.data / mask_path) > 0).astype(np.uint8)
        grey = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
            image[..., 1], image[..., 2]
        )
        cover = mask.mean()
        if not grey and image.mean() > 100 and 0.1 < cover < 0.5 and len(bright) < 4:
            bright.append((image, mask))
            sources["nuclei_brightfield"].append(Path(image_path).name)
    OUT.mkdir(parents=True, exist_ok=True)
    opts = {"compression": "zlib"}
    image, labels, sources["nuclei"] = native_nuclei(args.data)
    tifffile.imwrite(OUT / "nuclei.tif", image, **opts)
    tifffile.imwrite(OUT / "nuclei_mask.tif", labels, **opts)
    tifffile.imwrite(
        OUT / "nuclei_brightfield.tif", mosaic([t[0] for t in bright], 2), photometric="rgb", **opts
    )
    tifffile.imwrite(OUT / "nuclei_brightfield_mask.tif", mosaic([t[1] for t in bright], 2), **opts)
    (OUT / "SOURCES.json").write_text(
        json.dumps(
            {
                "dataset": "2018 Data Science Bowl stage1_train "
                "(Caicedo et al., Nature Methods 2019); CC0 public domain. nuclei: native "
                "resolution with instance labels (community-fixed annotations); "
                "nuclei_brightfield: resized to 96x96",
                "split": "validation splits of recipes/splits/nuclei.json and (nuclei) "
                "recipes/splits/nuclei_native.json (never used for training)",
                "tiles": sources,
            },
            indent=2,
        )
        + "\n"
    )
    print({k: len(v) for k, v in sources.items()})


if __name__ == "__main__":
    main()
