"""``attnseg demo``: segment the bundled nuclei sample with the default nuclei model.

Writes the mask (TIFF) and an overlay (PNG) to ``--out`` (created when they are
written, each file atomically) and prints the Dice score against the sample's
bundled ground truth. Runs offline on the CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import ProgressBar, add_device, files_in, refuse_overwrite


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="segment the bundled nuclei sample", description=__doc__)
    p.add_argument("--model", default="nuclei", metavar="MODEL", help="default: nuclei")
    p.add_argument("--out", default="out/demo", metavar="DIR", help="default: out/demo")
    add_device(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from .._sample_data import SAMPLES, load_sample
    from ..data.io import write_mask
    from ..inference import Predictor
    from ..metrics import binary_metrics
    from ..zoo import load

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    targets = [out / "nuclei_mask.tif", out / "nuclei_overlay.png"]
    refuse_overwrite(targets, files_in(SAMPLES), what="--out folder")
    image, truth = load_sample("nuclei")
    t0 = time.perf_counter()
    predictor = Predictor(device=args.device)
    model = load(args.model, device=predictor.device)
    with ProgressBar("segmenting", unit="tile") as bar:
        prediction = predictor.predict(model, image, progress=bar)
    seconds = time.perf_counter() - t0
    write_mask(targets[0], prediction.labels)
    _overlay(image, prediction.labels, targets[1])
    scores = binary_metrics(prediction.foreground, truth > 0)
    print(
        f"model {args.model} ({model.config['name']}) on {predictor.device}: "
        f"{image.shape[1]}x{image.shape[0]} image in {seconds:.2f} s"
    )
    print(
        f"Dice {scores['dice']:.4f}  Jaccard {scores['jaccard']:.4f}  "
        f"precision {scores['precision']:.4f}  recall {scores['sensitivity']:.4f}"
    )
    print(f"wrote {out / 'nuclei_mask.tif'} and {out / 'nuclei_overlay.png'}")
    return 0 if np.isfinite(scores["dice"]) else 1


def _overlay(image, labels, path: Path) -> None:
    import numpy as np
    from skimage.segmentation import find_boundaries

    from ..data.io import write_image

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    rgb = rgb[..., :3].astype(np.float32)
    rgb = (255 * (rgb - rgb.min()) / max(1e-6, float(np.ptp(rgb)))).astype(np.uint8)
    edges = find_boundaries(labels > 0, mode="outer")
    rgb[edges] = (255, 200, 0)
    write_image(path, rgb)
