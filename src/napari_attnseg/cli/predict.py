"""``attnseg predict``: segment images; one TIFF mask per input (same H×W).

Masks hold class indices (binary models: 0 background, 1 foreground) as
uint8 TIFF named ``<input stem>.tif`` in ``--out``; with ``--probabilities``
the foreground probability (float32) goes to ``--out/probabilities/``.
Inputs may be files or folders; a 3D TIFF is treated as a stack of slices
unless ``--channel-axis`` names its channel axis (a ``(2, H, W)`` two-channel
image). NaN/Inf pixels are replaced by their channel's median, with a note
saying how many; images smaller than the network's minimum are padded.

Nothing is written until every input has been checked (it exists, reads as
an image whose channels the model accepts) and the model has loaded, and
``--out`` is created only when the first mask is written, so a failed run
leaves no files and no empty folder behind. Every file is written atomically.
A mask never replaces an input: an output that would land on an input file
is refused. Inputs that share a stem (``a/x.png b/x.png``, or ``x.png`` and
``x.tif``) are refused too, with a message listing them, rather than given
made-up names (``x-1.tif``): masks are paired with their images by stem
everywhere else (``attnseg evaluate``, ``train --masks``), so a renamed
output would silently pair with the wrong image later.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (
    ProgressBar,
    add_device,
    add_quiet,
    expand_inputs,
    integer,
    number,
    refuse_overwrite,
    refuse_shared_stems,
)

#: inputs smaller than this (bytes, all together) are read once and kept between check and use
_KEEP_BYTES = 256 * 2**20


def add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="zoo name (focal_use_net.nuclei), task (nuclei), user model or path",
    )
    p.add_argument("--tta", action="store_true", help="average over horizontal/vertical flips")
    add_device(p)
    p.add_argument(
        "--tile-size",
        type=integer(16),
        default=512,
        metavar="N",
        help="tile edge for large images, at least 16 (default 512)",
    )
    p.add_argument(
        "--overlap",
        type=number(0, 1, below_high=True),
        default=0.25,
        help="tile overlap fraction in [0, 1) (default 0.25)",
    )
    p.add_argument(
        "--batch-size",
        type=integer(1),
        default=4,
        metavar="N",
        help="tiles per forward pass, at least 1 (default 4)",
    )
    p.add_argument(
        "--threshold",
        type=number(0, 1),
        default=None,
        help="foreground probability threshold in [0, 1] (default: the model card's, usually 0.5)",
    )
    add_quiet(p)


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="segment images and write masks", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_inference_options(p)
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        metavar="AXIS",
        help="the axis that holds channels when it is not a trailing RGB(A) axis, e.g. 0 for "
        "a (2, H, W) two-channel image (default: none; leading axes are a stack)",
    )
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
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


def check_image(model, image, path: Path, channel_axis: int | None) -> list[str]:
    """Notes on how ``image`` will be read; ``ValueError`` naming ``path`` if ``model`` cannot
    segment it as laid out (an axis that does not exist, a channel count the model rejects)."""
    from ..data.input_spec import InputSpec, canonical

    maybe_channels = channel_axis is None and image.ndim == 3 and image.shape[0] <= 4
    hint = f"if its first axis of {image.shape[0]} holds channels, add --channel-axis 0"
    try:
        canon, layout = canonical(image, channel_axis=channel_axis)
        corner = canon[(0,) * len(layout.stack_shape)][:1, :1]
        InputSpec.of(model).channels(corner, rgb=layout.rgb)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}" + (f" ({hint})" if maybe_channels else "")) from None
    if maybe_channels and not layout.rgb:
        shape = "×".join(map(str, image.shape))
        return [f"{shape} is segmented as a stack of {image.shape[0]} planes; {hint}"]
    return []


def output_paths(path: Path, out: Path, probabilities: bool) -> list[Path]:
    """Where the outputs of input ``path`` go."""
    paths = [out / f"{path.stem}.tif"]
    if probabilities:
        paths.append(out / "probabilities" / f"{path.stem}.tif")
    return paths


def run(args: argparse.Namespace) -> int:
    from ..data.io import read_image, write_image, write_mask

    inputs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the masks")
    refuse_shared_stems(inputs)
    refuse_overwrite(
        [target for path in inputs for target in output_paths(path, out, args.probabilities)],
        inputs,
        what="--out folder",
    )
    model, predictor = make_predictor(args)

    # every input is read and checked before anything is written
    kept: dict[Path, object] = {}
    notes: dict[Path, list[str]] = {}
    problems: list[str] = []
    budget = _KEEP_BYTES
    for path in inputs:
        try:
            image = read_image(path)
            notes[path] = check_image(model, image, path, args.channel_axis)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if image.nbytes <= budget:
            kept[path], budget = image, budget - image.nbytes
    if problems:
        count = f"{len(problems)} of {len(inputs)} inputs" if len(inputs) > 1 else "the input"
        raise ValueError(f"nothing written: {count} cannot be segmented: " + "; ".join(problems))

    written = 0
    try:
        for path in inputs:
            image = kept.pop(path, None)
            image = read_image(path) if image is None else image
            with ProgressBar(path.name, disable=args.quiet, unit="tile") as bar:
                prediction = predictor.predict(
                    model, image, channel_axis=args.channel_axis, progress=bar
                )
            mask_path, *prob_path = output_paths(path, out, args.probabilities)
            write_mask(mask_path, prediction.labels)
            if prob_path:
                write_image(prob_path[0], prediction.foreground)
            written += 1
            for message in [*notes[path], *prediction.messages]:
                print(f"note: {path.name}: {message}", file=sys.stderr)
            if not args.quiet:
                print(f"{path} -> {mask_path}")
    except BaseException:
        if written:
            print(
                f"attnseg predict: {written} of {len(inputs)} mask(s) were written to {out} "
                "before the error below (each complete)",
                file=sys.stderr,
            )
        raise
    return 0
