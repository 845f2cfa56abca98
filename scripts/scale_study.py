#!/usr/bin/env python
"""Nuclei at any scale: pixel and instance metrics at training scale and at native scale.

    python scripts/make_splits.py                  # runs/data/nuclei/{train,val}
    python scripts/scale_study.py make             # runs/data/nuclei_native*, see below
    python scripts/scale_study.py run --model nuclei [--model runs/x.safetensors ...]

Validation sets (never trained on; none of them is committed):

* ``nuclei/val`` — our DSB2018 validation split at the 96×96 training scale;
* ``nuclei_native/val`` — the same images resampled to sizes the 2018 DSB
  images really have (256², 256×320, 360², 512×640, 520×696: nuclei 2.7–7×
  larger), bilinear for the image, nearest for the mask. Our copy of DSB2018
  holds only the 96² versions, so this is a proxy for native images: the
  nuclei have the native size, but only the detail of the 96² image;
* ``nuclei_stardist`` — the one native-resolution DSB2018 image with real
  instance labels that ships inside the ``stardist`` wheel
  (``pip download --no-deps stardist``; ``data/images/img2d.tif`` and
  ``mask2d.tif``, 512², 183 nuclei); found at ``--stardist DIR``.

Instance truth: the masks' connected components (touching nuclei are merged in
DSB2018_96's masks, so those count as one), and the StarDist image's own ids.

``run`` scores each model on each set with ``diameter`` set to ``None`` (the
trained scale, what the zoo did before) and ``"auto"`` (the default), and
prints a markdown table: pixel Dice, and AP@0.5, mean AP 0.5:0.95, F1@0.5 and
PQ of the instances made by ``attnseg predict --instances``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_attnseg.data import read_image, read_mask, write_image, write_mask
from napari_attnseg.inference import Predictor, evaluate_folder
from napari_attnseg.zoo import load

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "runs" / "data"
NATIVE_SIZES = [(256, 256), (256, 320), (360, 360), (512, 640), (520, 696)]
SETS = {
    "training scale (96²)": DATA / "nuclei" / "val",
    "native sizes (resampled)": DATA / "nuclei_native" / "val",
    "StarDist DSB image (512²)": DATA / "nuclei_stardist",
}


def make(stardist: Path) -> None:
    import torch
    import torch.nn.functional as F

    source = DATA / "nuclei" / "val"
    target = DATA / "nuclei_native" / "val"
    shutil.rmtree(target, ignore_errors=True)
    rng = np.random.default_rng(0)
    for image_path in sorted((source / "images").iterdir()):
        mask_path = source / "masks" / image_path.name
        image = read_image(image_path)
        mask = read_mask(mask_path)
        size = NATIVE_SIZES[rng.integers(len(NATIVE_SIZES))]
        x = torch.as_tensor(np.moveaxis(np.atleast_3d(image), -1, 0)[None].astype(np.float32))
        big = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0]
        big = np.moveaxis(big.clamp(0, 255).round().numpy().astype(np.uint8), 0, -1)
        m = torch.as_tensor(mask[None, None].astype(np.float32))
        big_mask = F.interpolate(m, size=size, mode="nearest")[0, 0].numpy().astype(np.uint8)
        write_image(target / "images" / f"{image_path.stem}.png", np.squeeze(big))
        write_mask(target / "masks" / f"{image_path.stem}.png", big_mask * 255)
    print(f"wrote {len(list((target / 'images').iterdir()))} images to {target}")
    star = DATA / "nuclei_stardist"
    shutil.rmtree(star, ignore_errors=True)
    images = stardist / "data" / "images"
    if (images / "img2d.tif").exists():
        (star / "images").mkdir(parents=True)
        (star / "masks").mkdir(parents=True)
        image = tifffile.imread(images / "img2d.tif")
        write_image(star / "images" / "img2d.tif", image)
        write_mask(star / "masks" / "img2d.tif", tifffile.imread(images / "mask2d.tif"))
        print(f"copied the StarDist image to {star}")
    else:
        print(f"no StarDist image under {images}: `pip download --no-deps stardist` and unzip")


def run(models: list[str], out: Path | None) -> None:
    rows, records = [], []
    for spec in models:
        model = load(spec)
        for label, folder in SETS.items():
            if not (folder / "images").is_dir():
                print(f"skipped {label}: {folder} missing (run `scale_study.py make`)")
                continue
            for diameter in (None, "auto"):
                predictor = Predictor(device="cpu", diameter=diameter)
                t0 = time.perf_counter()
                result = evaluate_folder(
                    model, folder / "images", folder / "masks", predictor=predictor,
                    instances=True, name=spec,
                )
                seconds = time.perf_counter() - t0
                pixel, inst = result["mean"], result["instances"]["mean"]
                rows.append(
                    f"| `{spec}` | {label} | {'auto' if diameter else 'trained scale'} "
                    f"| {pixel['dice']:.3f} | {inst['ap50']:.3f} | {inst['mean_ap']:.3f} "
                    f"| {inst['f1']:.3f} | {inst['pq']:.3f} | {result['n_images']} "
                    f"| {seconds:.0f} s |"
                )
                records.append({"model": spec, "set": label, "diameter": diameter,
                                "pixel": pixel, "instances": inst, "seconds": seconds})
                print(rows[-1], flush=True)
    header = (
        "| model | images | diameter | Dice | AP@0.5 | mean AP | F1@0.5 | PQ | n | time |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    print("\n" + header + "\n" + "\n".join(rows))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--stardist", type=Path, default=Path("/work/extdata/stardist/stardist"))
    r = sub.add_parser("run")
    r.add_argument("--model", action="append", default=None)
    r.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.cmd == "make":
        make(args.stardist)
    else:
        run(args.model or ["nuclei"], args.json)


if __name__ == "__main__":
    main()
