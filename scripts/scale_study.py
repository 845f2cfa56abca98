#!/usr/bin/env python
"""Nuclei at any scale: pixel and instance metrics at training scale and at native scale.

    python scripts/make_splits.py                  # runs/data/nuclei/{train,val}
    python scripts/scale_study.py make --stardist DIR   # runs/data/nuclei_native*, see below
    python scripts/scale_study.py run --model nuclei [--model runs/x.safetensors ...]
    python scripts/scale_study.py check --model nuclei     # auto vs each image's 96² scale
    python scripts/scale_study.py cost --model nuclei [--model ...]   # seconds per 512² image

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
import os
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


def _dice(labels: np.ndarray, mask: np.ndarray) -> float:
    a, b = labels > 0, mask > 0
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def check(models: list[str], every: int) -> None:
    """Every ``every``-th resampled native image: the zoom and Dice of ``auto`` against
    predicting it exactly at its 96² scale (the diameter its resampling implies)."""
    folder = DATA / "nuclei_native" / "val"
    for spec in models:
        model = load(spec, device="cpu")
        rows = []
        for path in sorted((folder / "images").iterdir())[::every]:
            image, mask = read_image(path), read_mask(folder / "masks" / path.name)
            factor = image.shape[0] / 96
            at_96 = model.card.object_diameter / model.card.input_scale * factor
            row = []
            for diameter in ("auto", at_96):
                result = Predictor(device="cpu", precision="fp32", diameter=diameter).predict(
                    model, image
                )
                row.append((result.zoom, _dice(result.labels, mask)))
            rows.append(row)
            print(f"{path.name[:12]} {image.shape[:2]}: auto zoom {row[0][0]:.3f} Dice "
                  f"{row[0][1]:.3f}; at 96² zoom {row[1][0]:.3f} Dice {row[1][1]:.3f}", flush=True)
        means = np.mean([[r[0][1], r[1][1]] for r in rows], axis=0)
        print(f"{spec}: {len(rows)} images, mean Dice auto {means[0]:.3f}, at 96² {means[1]:.3f}")


def cost(models: list[str], repeats: int = 3) -> None:
    """Seconds per 512² image (the nuclei sample tiled), best of ``repeats``, 2 threads."""
    import torch

    torch.set_num_threads(2)
    sample = read_image(ROOT / "src" / "napari_attnseg" / "samples" / "nuclei.tif")
    image = np.tile(sample, (2, 2) + (1,) * (sample.ndim - 2))[:512, :512]
    for spec in models:
        model = load(spec, device="cpu")
        for diameter in (None, "auto"):
            predictor = Predictor(device="cpu", diameter=diameter, instances=True)
            predictor.predict(model, image)  # warm-up
            best = min(_timed(predictor, model, image) for _ in range(repeats))
            print(f"{spec}: diameter {diameter or 'none'}: {best:.2f} s", flush=True)
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


def _timed(predictor, model, image) -> float:
    start = time.perf_counter()
    predictor.predict(model, image)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument(
        "--stardist", type=Path, required=True,
        help="the unpacked stardist wheel's package folder (the one holding data/images)",
    )
    r = sub.add_parser("run")
    r.add_argument("--model", action="append", default=None)
    r.add_argument("--json", type=Path, default=None)
    c = sub.add_parser("check")
    c.add_argument("--model", action="append", default=None)
    c.add_argument("--every", type=int, default=10)
    t = sub.add_parser("cost")
    t.add_argument("--model", action="append", default=None)
    args = parser.parse_args()
    if args.cmd == "make":
        make(args.stardist)
    elif args.cmd == "check":
        check(args.model or ["nuclei"], args.every)
    elif args.cmd == "cost":
        cost(args.model or ["nuclei"])
    else:
        run(args.model or ["nuclei"], args.json)


if __name__ == "__main__":
    main()
