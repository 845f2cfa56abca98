#!/usr/bin/env python
"""Build the bundled sample images from DSB2018 (CC0) validation crops.

    python scripts/make_samples.py --data ../shared/data

* ``samples/nuclei.tif`` + ``nuclei_mask.tif``: a 4×4 mosaic (384×384, grey)
  of 16 fluorescence crops from the *validation* split of DSB2018_96, so the
  zoo never trained on them, each contrast-stretched to its own percentiles;
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    val = json.loads((ROOT / "recipes/splits/nuclei.json").read_text())["val"]
    fluo, bright, sources = [], [], {"nuclei": [], "nuclei_brightfield": []}
    for image_path, mask_path, *_ in val:
        image = iio.imread(args.data / image_path)[..., :3]
        mask = (iio.imread(args.data / mask_path) > 0).astype(np.uint8)
        grey = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
            image[..., 1], image[..., 2]
        )
        cover = mask.mean()
        if grey and image.mean() < 60 and 0.08 < cover < 0.5 and len(fluo) < 16:
            fluo.append((stretch(image[..., 0]), mask))
            sources["nuclei"].append(Path(image_path).name)
        elif not grey and image.mean() > 100 and 0.1 < cover < 0.5 and len(bright) < 4:
            bright.append((image, mask))
            sources["nuclei_brightfield"].append(Path(image_path).name)
    OUT.mkdir(parents=True, exist_ok=True)
    opts = {"compression": "zlib"}
    tifffile.imwrite(OUT / "nuclei.tif", mosaic([t[0] for t in fluo], 4), **opts)
    tifffile.imwrite(OUT / "nuclei_mask.tif", mosaic([t[1] for t in fluo], 4), **opts)
    tifffile.imwrite(
        OUT / "nuclei_brightfield.tif", mosaic([t[0] for t in bright], 2), photometric="rgb", **opts
    )
    tifffile.imwrite(OUT / "nuclei_brightfield_mask.tif", mosaic([t[1] for t in bright], 2), **opts)
    (OUT / "SOURCES.json").write_text(
        json.dumps(
            {
                "dataset": "2018 Data Science Bowl stage1_train "
                "(Caicedo et al., Nature Methods 2019), "
                "resized to 96x96; CC0 public domain",
                "split": "validation split of recipes/splits/nuclei.json (never used for training)",
                "tiles": sources,
            },
            indent=2,
        )
        + "\n"
    )
    print({k: len(v) for k, v in sources.items()})


if __name__ == "__main__":
    main()
