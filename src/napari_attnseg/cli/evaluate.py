"""``attnseg evaluate``: predict a folder and score it against ground-truth masks.

Images and masks are paired by file stem; any nonzero mask value is
foreground. ``--fov`` gives region-of-interest masks (e.g. DRIVE's field of
view): every metric is then computed inside them. Metrics are computed per
image and averaged ("mean"), and from counts summed over all images
("pooled"); AUC is the pixel ROC-AUC of the foreground probability.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .predict import add_inference_options, predict_file


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model on images with masks", description=__doc__)
    add_inference_options(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    p.add_argument("--masks", required=True, metavar="DIR", help="folder of masks (same stems)")
    p.add_argument("--fov", metavar="DIR", default=None, help="folder of region-of-interest masks")
    p.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON")
    p.add_argument(
        "--save-predictions",
        metavar="DIR",
        default=None,
        help="also write the predicted masks here",
    )
    p.set_defaults(run=run)


def evaluate_folder(predictor, images, masks, fov=None, *, quiet=False, save_dir=None, name=""):

    from ..data.datasets import pair_folder
    from ..data.io import read_mask, write_mask
    from ..metrics import MetricAccumulator

    pairs = pair_folder(images, masks, fov_dir=fov)
    acc = MetricAccumulator()
    for image_path, mask_path, fov_path in pairs:
        prediction = predict_file(predictor, Path(image_path), quiet=True)
        truth = read_mask(mask_path) > 0
        roi = read_mask(fov_path) > 0 if fov_path is not None else None
        if prediction.foreground.shape != truth.shape:
            raise ValueError(
                f"{Path(image_path).name}: prediction {prediction.foreground.shape} and mask "
                f"{truth.shape} differ in shape"
            )
        acc.add(Path(image_path).stem, prediction.foreground, truth, roi=roi)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            write_mask(Path(save_dir) / f"{Path(image_path).stem}.tif", prediction.labels)
        if not quiet:
            dice = acc.summary()["per_image"][-1]["dice"]
            print(f"  {Path(image_path).name}: dice {dice:.4f}", flush=True)
    summary = acc.summary()
    return {"model": name, **summary}


def run(args: argparse.Namespace) -> int:
    from ..metrics import format_table
    from .predict import make_predictor

    predictor = make_predictor(args)
    result = evaluate_folder(
        predictor,
        args.images,
        args.masks,
        args.fov,
        quiet=args.quiet,
        save_dir=args.save_predictions,
        name=args.model,
    )
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0
