"""``attnseg predict``: segment images; one TIFF mask per input (same H×W).

Masks hold class indices (binary models: 0 background, 1 foreground) as
uint8 TIFF named ``<input stem>.tif`` in ``--out``; with ``--probabilities``
the foreground probability (float32) goes to ``--out/probabilities/``.
Inputs may be files or folders; a 3D TIFF is treated as a stack of slices.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import ProgressBar, add_device, add_quiet, expand_inputs
from ._distributed import add_distributed_options, run_distributed, wants_distributed


def add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="zoo name (focal_use_net.nuclei), task (nuclei), user model or path",
    )
    p.add_argument("--tta", action="store_true", help="average over horizontal/vertical flips")
    add_device(p)
    p.add_argument("--tile-size", type=int, default=512, help="tile edge for large images")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="foreground threshold (default: the model card's, usually 0.5)",
    )
    add_quiet(p)


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="segment images and write masks", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_inference_options(p)
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    add_distributed_options(p)
    p.set_defaults(run=run)


def make_predictor(args: argparse.Namespace):
    """The model the arguments name, and a predictor with the arguments' settings."""
    from ..inference import Predictor
    from ..zoo import load

    predictor = Predictor(
        device=args.device,
        tta=args.tta,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        threshold=args.threshold,
    )
    return load(args.model, device=predictor.device), predictor


def run(args: argparse.Namespace) -> int:
    if wants_distributed(args):
        return run_distributed(args)
    from ..data.io import read_image, write_image, write_mask

    inputs = expand_inputs(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, predictor = make_predictor(args)
    notes = []
    for path in inputs:
        with ProgressBar(path.name, disable=args.quiet, unit="tile") as bar:
            prediction = predictor.predict(model, read_image(path), progress=bar)
        notes += prediction.messages
        write_mask(out / f"{path.stem}.tif", prediction.labels)
        if args.probabilities:
            (out / "probabilities").mkdir(exist_ok=True)
            write_image(out / "probabilities" / f"{path.stem}.tif", prediction.foreground)
        if not args.quiet:
            print(f"{path} -> {out / (path.stem + '.tif')}")
    for message in dict.fromkeys(notes):
        print(f"note: {message}")
    return 0
