"""The napari loop, measured headless: segment H&E images, "correct" three of them (their
ground truth stands in for the user's brush), fine-tune as the Fine-tune dock does (same
settings as its defaults, dense labels), and score held-out slides before and after.

    python scripts/finetune_loop.py --data runs/data/nuclei_native/val --model nuclei \\
        --modality runs/data/nuclei_native/modality.json

The corrected images are the first three MoNuSeg quarters of one validation slide; the
scored images are the quarters of the other validation slides (never trained on, never
corrected). Prints Dice, AP@0.5 and PQ before and after, and the time the round took.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_attnseg.data.io import read_image, read_mask
from napari_attnseg.inference import InferenceSettings, Predictor
from napari_attnseg.inference.evaluate import evaluate_folder
from napari_attnseg.models import load_model
from napari_attnseg.training import AnnotatedImage, finetune, finetune_config, samples_for_model
from napari_attnseg.zoo import resolve


def slides(folder: Path) -> dict[str, list[Path]]:
    """MoNuSeg quarter images of ``folder``, by slide (``monuseg_<slide>_q<k>.png``)."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("monuseg_*_q*.png")):
        found[path.stem.rsplit("_q", 1)[0]].append(path)
    return dict(found)


def score(model, images: list[Path], labels: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            os.symlink(path.resolve(), Path(tmp) / path.name)
        summary = evaluate_folder(model, tmp, labels, instances=True,
                                  predictor=Predictor(InferenceSettings(device="cpu")))
    objects = summary.get("instances", {}).get("mean", {})
    return {"dice": summary["mean"]["dice"], "ap50": objects.get("ap50", float("nan")),
            "pq": objects.get("pq", float("nan")), "n": summary["n_images"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with images/ and labels/ (instance labels)")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--epochs", type=int, default=20, help="the dock's default: 20")
    parser.add_argument("--lr", type=float, default=1e-4, help="the dock's default: 1e-4")
    args = parser.parse_args(argv)
    by_slide = slides(args.data / "images")
    if len(by_slide) < 2:
        raise SystemExit(f"need MoNuSeg quarters of at least two slides in {args.data}/images")
    corrected_slide, *held_out = sorted(by_slide)
    corrected = by_slide[corrected_slide][:3]
    scored = [p for s in held_out for p in by_slide[s]]
    base = load_model(resolve(args.model))
    before = score(base, scored, args.data / "labels")
    pairs = []
    for path in corrected:
        labels = read_mask(next((args.data / "labels").glob(path.stem + ".*")))
        pairs.append(AnnotatedImage(path.stem, read_image(path), np.asarray(labels), rgb=True))
    train, val = samples_for_model(base, pairs, mode="dense", val_fraction=0.2)
    config = finetune_config(train, epochs=args.epochs, lr=args.lr, device="cpu",
                             has_validation=bool(val))
    start = time.perf_counter()
    tuned, history = finetune(base, train, val, config, base_name=args.model)
    seconds = time.perf_counter() - start
    after = score(tuned.eval(), scored, args.data / "labels")
    print(f"corrected: {', '.join(p.name for p in corrected)}; scored: {len(scored)} images "
          f"of {len(held_out)} other slide(s); round: {len(history.epochs)} epochs in "
          f"{seconds:.0f} s (load {os.getloadavg()[0]:.1f})")
    print("| | Dice | AP@0.5 | PQ |\n|---|---|---|---|")
    for name, row in (("before", before), ("after", after)):
        print(f"| {name} | {row['dice']:.3f} | {row['ap50']:.3f} | {row['pq']:.3f} |")
    print(f"| gain | {after['dice'] - before['dice']:+.3f} | {after['ap50'] - before['ap50']:+.3f} "
          f"| {after['pq'] - before['pq']:+.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
