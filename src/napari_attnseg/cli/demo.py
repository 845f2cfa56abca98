"""``attnseg demo``: segment the bundled nuclei sample with the default nuclei model.

Writes the mask (TIFF) and an overlay (PNG: the sample with every nucleus
outlined) to ``--out`` (created when they are written, each file atomically)
and prints the Dice score against the sample's bundled ground truth. Runs offline on the CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import ProgressBar, add_device, files_in, refuse_overwrite, write_overlay


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="segment the bundled nuclei sample", description=__doc__)
    p.add_argument(
        "--model",
        default="nuclei",
        metavar="MODEL",
        help="the model to segment the sample with: zoo name, task, user model or path "
        "(default: nuclei)",
    )
    p.add_argument(
        "--out",
        default="out/demo",
        metavar="DIR",
        help="folder for nuclei_mask.tif and nuclei_overlay.png (default: out/demo)",
    )
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
    objects = prediction.instances
    if objects is None:
        write_overlay(targets[1], image, prediction.labels)
    else:
        write_overlay(targets[1], image, objects, instances=True)
    scores = binary_metrics(prediction.foreground, truth > 0)
    print(
        f"model {args.model} ({model.name}) on {predictor.device}: "
        f"{image.shape[1]}x{image.shape[0]} image in {seconds:.2f} s"
    )
    print(
        f"Dice {scores['dice']:.4f}  Jaccard {scores['jaccard']:.4f}  "
        f"precision {scores['precision']:.4f}  recall {scores['sensitivity']:.4f}"
    )
    if objects is not None:
        found = np.count_nonzero(np.unique(objects))
        truth_ids = np.count_nonzero(np.unique(truth))
        print(f"{found} nuclei found (outlined in the overlay); the ground truth has {truth_ids}")
        if truth_ids > 1:  # the bundled truth holds one id per nucleus
            from ..objects import instance_metrics

            m = instance_metrics(truth, objects)
            print(f"objects: AP@0.5 {m['ap50']:.4f}  mean AP 0.5:0.95 {m['mean_ap']:.4f}  "
                  f"PQ {m['pq']:.4f}")
    print(f"wrote {out / 'nuclei_mask.tif'} and {out / 'nuclei_overlay.png'}")
    return 0 if np.isfinite(scores["dice"]) else 1
