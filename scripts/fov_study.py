"""Fundus photographs of other cameras, simulated: DRIVE-like validation photographs rescaled
×0.6, ×1.0 and ×1.7, segmented with the field of view matched (``--fov-diameter auto``) and not
(``--fov-diameter none``) — the figures of docs/zoo.md's "Fundus photographs of any camera".

    python scripts/fov_study.py --images runs/data/vessels/val/images \\
        --masks runs/data/vessels/val/masks --fov-masks runs/data/vessels/val/fov \\
        --model vessels --out runs/fov_study

Prints a markdown table of Dice (mean over images, inside the hand-made field of
view) per scale and setting, with the zoom the auto setting chose.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage.transform import rescale

from napari_attnseg.data.io import IMAGE_SUFFIXES, read_image, read_mask, write_image, write_mask
from napari_attnseg.inference import InferenceSettings, Predictor
from napari_attnseg.inference.evaluate import evaluate_folder
from napari_attnseg.models import load_model
from napari_attnseg.zoo import resolve

SCALES = (0.6, 1.0, 1.7)


def rescaled_copy(images: Path, masks: Path, fovs: Path, scale: float, out: Path) -> Path:
    """The photographs, masks and FOV masks rescaled by ``scale`` into ``out``."""
    for sub in ("images", "masks", "fov"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = path.stem
        image = read_image(path)
        big = rescale(image.astype(np.float32), scale, order=1, channel_axis=-1,
                      preserve_range=True, anti_aliasing=scale < 1)
        write_image(out / "images" / f"{stem}.tif", np.clip(big, 0, 255).astype(np.uint8))
        for folder, sub in ((masks, "masks"), (fovs, "fov")):
            found = next(p for p in folder.iterdir() if p.stem == stem)
            mask = read_mask(found) > 0
            small = rescale(mask.astype(np.uint8), scale, order=0, preserve_range=True,
                            anti_aliasing=False)
            write_mask(out / sub / f"{stem}.tif", (small > 0).astype(np.uint8))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--fov-masks", type=Path, required=True)
    parser.add_argument("--model", default="vessels")
    parser.add_argument("--out", type=Path, default=Path("runs/fov_study"))
    parser.add_argument("--scales", type=float, nargs="+", default=SCALES)
    args = parser.parse_args(argv)
    model = load_model(resolve(args.model))
    rows = ["| scale | Dice, fov none | Dice, fov auto | zoom (auto) | s/image (auto) |",
            "|---|---|---|---|---|"]
    for scale in args.scales:
        folder = rescaled_copy(args.images, args.masks, args.fov_masks, scale,
                               args.out / f"x{scale:g}")
        dice, zooms, seconds = {}, [], 0.0
        for setting in (None, "auto"):
            notes: list[str] = []
            predictor = Predictor(InferenceSettings(fov_diameter=setting, device="cpu"),
                                  on_message=notes.append)
            start = time.perf_counter()
            summary = evaluate_folder(model, folder / "images", folder / "masks",
                                      folder / "fov", predictor=predictor)
            if setting == "auto":
                seconds = (time.perf_counter() - start) / summary["n_images"]
                zooms = [n.rsplit("×", 1)[-1] if "×" in n else "1" for n in notes
                         if n.startswith("field of view")]
            dice[setting] = summary["mean"]["dice"]
        rows.append(f"| ×{scale:g} | {dice[None]:.3f} | {dice['auto']:.3f} | "
                    f"{', '.join(sorted(set(zooms)))} | {seconds:.1f} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
