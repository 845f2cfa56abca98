"""``attnseg predict``: segment images; one TIFF mask per input (same H×W).

Masks hold class indices (binary models: 0 background, 1 foreground) as
uint8 TIFF named ``<input stem>.tif`` in ``--out``. With ``--instances`` the
TIFF holds instance labels instead: 0 background, 1..N one id per object,
touching objects split (binary models only). Models whose card makes
instances (nuclei) still write class masks unless ``--instances`` is given.
``--table`` writes ``<stem>.csv`` beside each mask, one row per object
(label, area, centroid, equivalent diameter, perimeter, eccentricity,
solidity, bounding box, and mean/min/max intensity of the image; per colour
channel for RGB; for a stack also the plane of the object's largest section,
its first and last plane and its volume; and the image's confidence, the same
on every row, as the ``note:`` line says it); it implies ``--instances``. A
stack's objects are found plane by plane and linked from one plane to the
next where they overlap by an IoU of at least ``--stitch`` (default 0.25),
so that a nucleus spanning five planes is one object; ``--stitch 0`` or
``--no-stitch`` counts them plane by plane. ``--overlay`` writes
``<stem>_overlay.png``, the image contrast-stretched with the mask (or every
object) outlined, for a quick look. ``--probabilities`` writes the foreground
probability (float32) to ``--out/probabilities/<stem>.tif``.

Object size: for models whose card records the diameter of the objects they
were trained on (nuclei), ``--diameter auto`` (the default) measures the
objects on a first pass and resamples the image so they match that size,
then maps the result back; ``--diameter PX`` gives the size instead, and
``--diameter none`` predicts at the trained scale. Field of view: fundus
models (vessels) record the diameter of their training photographs' field of
view; ``--fov-diameter auto`` (the default) measures the photograph's and
resamples it to match (a camera with more pixels across the retina shows
vessels wider than the model learned), ``--fov-diameter PX`` gives it,
``--fov-diameter none`` predicts at the trained scale. A ``note:`` says when an
image was resampled. Region of interest: ``--roi auto`` (the default) uses
the model's own (the field of view of a fundus photograph for the vessels
models), ``--roi none`` the whole image, ``--roi FILE`` one mask for every
input and ``--roi DIR`` one mask per input matched by file stem; nothing is
predicted outside it.

Inputs may be files or folders; a 3D TIFF is treated as a stack of slices
unless ``--channel-axis`` names its channel axis (a ``(2, H, W)`` two-channel
image). NaN/Inf pixels are replaced by their channel's median, with a note
saying how many; images smaller than the network's minimum are padded.

Nothing is written until every input and region of interest has been
checked (it exists, reads as an image whose channels the model accepts, the
ROI has the image's height and width) and the model has loaded, and
``--out`` is created only when the first mask is written, so a failed run
leaves no files and no empty folder behind. Every file is written atomically.
An output never replaces an input (an image or an ROI mask): such an output
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

import numpy as np

from ._common import (
    PRECISIONS,
    ROI_WORDS,
    ProgressBar,
    add_device,
    add_quiet,
    diameter,
    expand_inputs,
    ignored_stitch,
    inference_settings,
    integer,
    number,
    refuse_overwrite,
    refuse_shared_stems,
    wants_instances,
)
from ._distributed import add_distributed_options, run_distributed, wants_distributed

#: inputs smaller than this (bytes, all together) are read once and kept between check and use
_KEEP_BYTES = 256 * 2**20


def add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="zoo name (focal_use_net.nuclei), task (nuclei), user model or path",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average over horizontal/vertical flips (4x the work); default: as the model's "
        "card recommends (models trained and scored with flip TTA)",
    )
    add_device(p)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="autocast precision of the network (default auto: bf16 on GPUs that support it "
        "and on CPUs where it is measured faster, fp16 on other CUDA GPUs, else fp32)",
    )
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
    p.add_argument(
        "--diameter",
        type=diameter,
        default="auto",
        metavar="auto|none|PX",
        help="the objects' diameter in pixels, for models whose card records the object size "
        "they were trained on (nuclei): auto (default) measures it on a first pass and "
        "resamples the image so objects match the trained size; none predicts at the trained "
        "scale; other models ignore it",
    )
    p.add_argument(
        "--fov-diameter",
        type=diameter,
        default="auto",
        metavar="auto|none|PX",
        help="fundus models (vessels): the diameter in pixels of the photograph's field of "
        "view (the bright disc of the retina); auto (default) measures it and resamples the "
        "photograph so that it matches the training photographs' (a note says the zoom); none "
        "predicts at the trained scale; other models ignore it",
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
    p.add_argument(
        "--roi",
        default="auto",
        metavar="auto|none|FILE|DIR",
        help="where to segment (nothing is predicted outside): auto (default) = the model's "
        "own region, e.g. the field of view of a fundus photograph for the vessels models; "
        "none = the whole image; FILE = one mask (nonzero = inside) with the height and width "
        "of every input; DIR = one mask per input, matched by file stem (x.png <-> x.tif or "
        "x_roi.png)",
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="write instance labels (0 = background, 1..N one id per object, touching objects "
        "split) instead of class masks; binary models only. Without it every model writes "
        "class masks, even one whose card makes instances",
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="also write <stem>.csv beside each mask: one row per object (label, area, "
        "centroid, equivalent diameter, shape, bounding box, mean/min/max intensity; for a "
        "stack also its planes z_min..z_max and volume); implies --instances",
    )
    p.add_argument(
        "--stitch",
        type=number(0, 1, below_high=True),
        default=None,
        metavar="IOU",
        help="stacks, with --instances or --table: objects are found plane by plane, then an "
        "object takes the id of the object in the plane before it that it overlaps by at "
        "least this intersection over union, so an object spanning planes is counted once "
        "(as Cellpose's stitch threshold; default 0.25); 0 counts objects plane by plane",
    )
    p.add_argument(
        "--no-stitch",
        dest="stitch",
        action="store_const",
        const=0.0,
        help="count a stack's objects plane by plane (the same as --stitch 0)",
    )
    p.add_argument(
        "--overlay",
        action="store_true",
        help="also write <stem>_overlay.png: the image, contrast-stretched, with the mask "
        "(with --instances, every object) outlined; a stack shows its middle plane",
    )
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also write the foreground probability (float32) to probabilities/<stem>.tif",
    )
    add_distributed_options(p)
    p.set_defaults(run=run)


def make_predictor(args: argparse.Namespace):
    """The model the arguments name, and a predictor with the arguments' settings."""
    from ..inference import Predictor
    from ..zoo import load

    predictor = Predictor(inference_settings(args))
    model = load(args.model, device=predictor.device)
    check_model(model, args)
    return model, predictor


def check_model(model, args: argparse.Namespace) -> None:
    """``ValueError`` if the options ask for what ``model`` cannot do; notes on what it ignores."""
    from ..inference.fov_scale import uses_fov
    from ..inference.objects import uses_diameter
    from ..models import ModelCard

    card = model.card or ModelCard(name=model.name)
    if wants_instances(args) and card.predicted_classes(model.n_classes) != 2:
        flag = "--instances" if getattr(args, "instances", False) else "--table (instances)"
        raise ValueError(
            f"{flag} needs a binary (foreground/background) model; {args.model} has "
            f"{model.n_classes} classes"
        )
    note = ignored_stitch(args)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if isinstance(getattr(args, "diameter", None), float) and not uses_diameter(card):
        print(
            f"note: --diameter is ignored: {args.model} records no object size "
            "(it segments at the scale it was trained on)",
            file=sys.stderr,
        )
    if isinstance(getattr(args, "fov_diameter", None), float) and not uses_fov(card):
        print(
            f"note: --fov-diameter is ignored: {args.model} records no field of view "
            "(it is not a fundus model)",
            file=sys.stderr,
        )


def check_image(model, image, path: Path, channel_axis: int | None) -> list[str]:
    """Notes on how ``image`` will be read; ``ValueError`` naming ``path`` if ``model`` cannot
    segment it as laid out (an axis that does not exist, a channel count the model rejects,
    more than one stack axis)."""
    from ..data.input_spec import InputSpec, canonical

    maybe_channels = channel_axis is None and image.ndim == 3 and image.shape[0] <= 4
    hint = f"if its first axis of {image.shape[0]} holds channels, add --channel-axis 0"
    try:
        canon, layout = canonical(image, channel_axis=channel_axis)
        corner = canon[(0,) * len(layout.stack_shape)][:1, :1]
        InputSpec.of(model).channels(corner, rgb=layout.rgb)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}" + (f" ({hint})" if maybe_channels else "")) from None
    shape = "×".join(map(str, image.shape))
    if len(layout.stack_shape) > 1:
        raise ValueError(
            f"{path}: a {shape} image is a stack over {len(layout.stack_shape)} axes; masks are "
            "written as one image or one (Z, H, W) stack (split it, or name its channel axis "
            "with --channel-axis)"
        )
    if maybe_channels and not layout.rgb:
        return [f"{shape} is segmented as a stack of {image.shape[0]} planes; {hint}"]
    return []


def roi_files(spec: str, inputs: list[Path]) -> dict[Path, Path]:
    """The region-of-interest mask of every input ``--roi`` names ({}: auto or none).

    A file serves every input; a folder is matched to the inputs by stem as
    ``attnseg evaluate`` matches masks (``x.png`` ↔ ``x.tif``, ``x_roi.png``).
    Inputs without one are a ``ValueError`` listing them.
    """
    from ..data.pairing import _image_files, _match, _stem_index

    if spec in ROI_WORDS:
        return {}
    source = Path(spec)
    if source.is_file():
        return dict.fromkeys(inputs, source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"--roi {spec}: no such file or folder (give a mask, a folder of masks named like "
            "the inputs, auto or none)"
        )
    index = _stem_index(_image_files(source, "region-of-interest"))
    found = {path: _match(path.stem, index) for path in inputs}
    missing = [path.name for path, roi in found.items() if roi is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if missing[5:] else "")
        raise ValueError(
            f"{len(missing)} of {len(inputs)} input(s) have no region-of-interest mask in "
            f"{source}: {shown}"
        )
    return found


def check_roi(roi: np.ndarray, roi_path: Path, image, path: Path, channel_axis) -> list[str]:
    """``ValueError`` unless ``roi`` has the image's height and width; a note if it is empty."""
    from ..data.input_spec import layout_of

    spatial = layout_of(np.shape(image), channel_axis=channel_axis).spatial_shape
    if roi.shape != spatial[-2:]:
        size = "×".join(map(str, roi.shape))
        want = "×".join(map(str, spatial[-2:]))
        raise ValueError(
            f"{path}: the region of interest {roi_path} is {size} but the image is {want} "
            "(height × width)"
        )
    if not roi.any():
        return [f"the region of interest {roi_path.name} is empty: nothing is segmented"]
    return []


def run(args: argparse.Namespace) -> int:
    if wants_distributed(args):
        return run_distributed(args)
    from ..data.io import read_image, read_mask
    from ..inference.files import Item, check_items, outputs_for, predict_item, run_items

    inputs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the masks")
    refuse_shared_stems(inputs)
    rois = roi_files(args.roi, inputs)
    items = [Item.of_file(path) for path in inputs]
    targets = {
        item.name: outputs_for(out, item.stem, probabilities=args.probabilities,
                               table=getattr(args, "table", False),
                               overlay=getattr(args, "overlay", False))
        for item in items
    }
    refuse_overwrite(
        [target for outputs in targets.values() for target in outputs.paths()],
        [*inputs, *set(rois.values())],
        what="--out folder",
    )
    model, predictor = make_predictor(args)

    # every input (and its region of interest) is read and checked before anything is written
    kept: dict[Path, np.ndarray] = {}
    budget = _KEEP_BYTES

    def keep(key: Path, array: np.ndarray) -> None:
        nonlocal budget
        if key not in kept and array.nbytes <= budget:
            kept[key], budget = array, budget - array.nbytes

    def roi_of(path: Path) -> np.ndarray | None:
        if path not in rois:
            return None
        roi = kept.get(rois[path])
        return read_mask(rois[path]) if roi is None else roi

    def check_one(item: Item) -> list[str]:
        image = read_image(item.source)
        notes = check_image(model, image, item.source, args.channel_axis)
        roi = roi_of(item.source)
        if roi is not None:
            notes += check_roi(roi, rois[item.source], image, item.source, args.channel_axis)
            keep(rois[item.source], roi)
        keep(item.source, image)
        return notes

    notes = check_items(items, check_one)

    def segment(item: Item, _progress) -> object:
        with ProgressBar(item.name, disable=args.quiet, unit="tile") as bar:
            return predict_item(
                item, targets[item.name], predictor, model, image=kept.pop(item.source, None),
                roi=roi_of(item.source), channel_axis=args.channel_axis, progress=bar,
            )

    written = 0

    def report(item: Item, done) -> None:
        nonlocal written
        written += 1
        for message in [*notes[item.name], *done.notes]:
            print(f"note: {item.name}: {message}", file=sys.stderr)
        if not args.quiet:
            count = ""
            if wants_instances(args):
                count = f" ({np.count_nonzero(np.unique(done.prediction.instances))} objects)"
            print(f"{item.source} -> {targets[item.name].mask}{count}")

    try:
        run_items(items, segment, on_done=report)
    except BaseException:
        if written:
            print(
                f"attnseg predict: {written} of {len(inputs)} input(s) were written to {out} "
                "before the error below (each complete)",
                file=sys.stderr,
            )
        raise
    return 0
