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

from .predict import add_inference_options


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


def run(args: argparse.Namespace) -> int:
    from ..inference import evaluate_folder
    from ..metrics import format_table
    from .predict import make_predictor

    model, predictor = make_predictor(args)

    def show(stem: str, metrics: dict) -> None:
        if not args.quiet:
            print(f"  {stem}: dice {metrics['dice']:.4f}", flush=True)

    result = evaluate_folder(
        model,
        args.images,
        args.masks,
        args.fov,
        predictor=predictor,
        name=args.model,
        save_dir=args.save_predictions,
        on_image=show,
    )
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0
