"""``attnseg evaluate``: predict a folder and score it against ground-truth masks.

Images and masks are paired by file stem. A binary model counts any nonzero
mask value as foreground; a model with more classes reads mask values as
class indices and is scored per class (``dice_per_class``, background first),
the usual metric names then holding the mean over the foreground classes.
``--fov`` gives region-of-interest masks (e.g. DRIVE's field of view): every
metric is then computed inside them. Metrics are computed per image and
averaged ("mean"), and from counts summed over all images ("pooled"); AUC is
the pixel ROC-AUC of the foreground probability.

With ``--instances`` the masks are instance label images (0 = background,
one id per object; a mask with a single foreground value is taken to hold
one object per connected component) and every image is also scored object
by object: average precision at IoU 0.5 and 0.75, the mean AP over IoU
0.5:0.05:0.95 (the 2018 Data Science Bowl score), object precision, recall
and F1 at IoU 0.5, and panoptic quality (with its segmentation and
recognition parts). A second table shows them, and ``--json`` puts them
under ``"instances"`` beside the pixel metrics; ``--save-predictions`` then
saves instance labels. Binary models only.

``--diameter`` and ``--roi`` act as in ``attnseg predict``: the object size
(auto: measured on a first pass) and where to predict (auto: the model's own
region, e.g. a fundus photograph's field of view; none: everywhere). ``--fov``
restricts the scoring, not the prediction.

Nothing is written until every image has been scored: ``--save-predictions``
masks are collected in a temporary folder and moved into place (each file
atomically) only when the whole folder was scored, and the ``--json`` report
is written atomically after that. An output that would land on one of the
input images or masks is refused before anything runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ._common import ROI_WORDS, refuse_overwrite, refuse_shared_stems
from .predict import add_inference_options


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model on images with masks", description=__doc__)
    add_inference_options(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    p.add_argument(
        "--masks",
        required=True,
        metavar="DIR",
        help="folder of ground-truth masks, paired with the images by file stem",
    )
    p.add_argument(
        "--fov",
        metavar="DIR",
        default=None,
        help="folder of region-of-interest masks (same stems): every metric is computed inside "
        "them",
    )
    p.add_argument(
        "--roi",
        choices=ROI_WORDS,
        default="auto",
        help="where to predict: auto (default) = the model's own region, e.g. the field of view "
        "of a fundus photograph for the vessels models; none = the whole image",
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="the masks are instance labels (one id per object; a mask with one foreground "
        "value counts its connected components): also score objects (AP at IoU 0.5 and 0.75, "
        "mean AP over IoU 0.5:0.95, precision, recall, F1, panoptic quality); binary models",
    )
    p.add_argument(
        "--json", metavar="FILE", default=None, help="write the results as JSON (atomically)"
    )
    p.add_argument(
        "--save-predictions",
        metavar="DIR",
        default=None,
        help="also write the predicted masks here (<image stem>.tif; instance labels with "
        "--instances)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._files import atomic_write
    from ..data.pairing import pair_folder
    from ..inference import evaluate_folder
    from ..metrics import format_table
    from ..objects import format_instance_table
    from .predict import make_predictor

    pairs = pair_folder(args.images, args.masks, fov_dir=args.fov)
    inputs = [path for pair in pairs for path in pair if path is not None]
    save = Path(args.save_predictions) if args.save_predictions else None
    outputs = []
    if save is not None:
        if save.exists() and not save.is_dir():
            raise ValueError(f"--save-predictions {save} is a file; give a folder")
        refuse_shared_stems([image for image, _, _ in pairs])
        outputs += [save / f"{image.stem}.tif" for image, _, _ in pairs]
    if args.json:
        if Path(args.json).is_dir():
            raise ValueError(f"--json {args.json} is a folder; give a file name")
        outputs.append(Path(args.json))
    refuse_overwrite(outputs, inputs, what="output path")
    model, predictor = make_predictor(args)

    messages: list[str] = []
    predictor.on_message = messages.append

    def show(stem: str, metrics: dict) -> None:
        for message in messages:
            print(f"note: {stem}: {message}", file=sys.stderr)
        messages.clear()
        if not args.quiet:
            print(f"  {stem}: dice {metrics['dice']:.4f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="attnseg-evaluate-") as staging:
        result = evaluate_folder(
            model,
            args.images,
            args.masks,
            args.fov,
            predictor=predictor,
            name=args.model,
            save_dir=staging if save is not None else None,
            on_image=show,
            instances=args.instances,
        )
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            for staged in sorted(Path(staging).iterdir()):
                atomic_write(save / staged.name, lambda tmp, src=staged: shutil.copyfile(src, tmp))
    print(format_table(result))
    per_class = result.get("mean", {}).get("dice_per_class")
    if per_class is not None:
        names = list(model.card.class_names) if model.card is not None else []
        names += [f"class {c}" for c in range(len(names), len(per_class))]
        print(
            "Dice per class (mean over images): "
            + ", ".join(f"{name} {dice:.4f}" for name, dice in zip(names, per_class, strict=False))
        )
    if "instances" in result:
        print("\nObjects (matched at IoU >= 0.5; mean AP over IoU 0.5:0.95):")
        print(format_instance_table(result["instances"]))
    if save is not None:
        what = "instance label image(s)" if args.instances else "predicted mask(s)"
        print(f"wrote {len(pairs)} {what} to {save}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"wrote {path}")
    return 0
