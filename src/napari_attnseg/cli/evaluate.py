"""``attnseg evaluate``: predict a folder and score it against ground-truth masks.

Images and masks are paired by file stem. A binary model counts any nonzero
mask value as foreground; a model with more classes reads mask values as
class indices and is scored per class (``dice_per_class``, background first),
the usual metric names then holding the mean over the foreground classes.
``--fov`` gives region-of-interest masks (e.g. DRIVE's field of view): every
metric is then computed inside them. Metrics are computed per image and
averaged ("mean"), and from counts summed over all images ("pooled"); AUC is
the pixel ROC-AUC of the foreground probability.

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
import tempfile
from pathlib import Path

from ._common import refuse_overwrite, refuse_shared_stems
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
        help="also write the predicted masks here (<image stem>.tif)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .._files import atomic_write
    from ..data.pairing import pair_folder
    from ..inference import evaluate_folder
    from ..metrics import format_table
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

    def show(stem: str, metrics: dict) -> None:
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
    if save is not None:
        print(f"wrote {len(pairs)} predicted mask(s) to {save}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"wrote {path}")
    return 0
