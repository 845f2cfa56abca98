"""Compare instance post-processing methods with the shipped models; print markdown tables.

Sections (all by default; pick with ``--sections``):

- ``dsb``: the default ``nuclei`` model on the DSB2018_96 validation split
  (``recipes/splits/nuclei.json``, key ``val``). Instance truth = connected
  components of each binary mask, so nuclei that touch are ONE object in
  the truth: this favours methods that do not split.
- ``stardist``: the 2-D nuclei image with real instance labels shipped in the
  ``stardist`` wheel (a DSB2018 image, validation only, never bundled), at
  native size and downscaled so that its median nucleus diameter matches
  the training masks'. The foreground predicted at the small size is
  resized back (bilinear) and post-processed at native size, as a
  rescaling predictor would; "at working size" post-processes first and
  resizes the labels (nearest).
- ``timing``: instance post-processing of a 1024² foreground vs the
  prediction of that 1024² image (the nuclei sample mosaic tiled), CPU.
- ``sweep``: AP@0.5 of the watershed for several ``split`` values.
- ``membranes``: cells from the ``membranes`` model on the ISBI 2012
  validation slices (``recipes/splits/membranes.json``); truth = 4-connected
  components of the cell interior (mask 255).
- ``fov``: ``field_of_view`` against DRIVE's FOV masks (20 training images),
  and the vessels model's foreground outside the FOV on the fundus sample.

Usage::

    PYTHONPATH=src python scripts/instance_study.py \\
        --data DIR [--stardist DIR] [--sections dsb,stardist,...]

``--data`` is the folder holding the datasets (``DSB2018_96``, ``ISBI2012``,
``DRIVE``, ...); ``--stardist`` the ``data/images`` folder of the unpacked
``stardist`` wheel. Each is required only by the sections that read it.

Numbers are from one run on the CPU; timings are noisy on a shared machine,
so the script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage.filters import threshold_otsu
from skimage.transform import resize

from napari_attnseg._sample_data import load_sample
from napari_attnseg.data.io import read_image, read_mask
from napari_attnseg.inference import Predictor
from napari_attnseg.metrics import binary_metrics
from napari_attnseg.objects import (
    InstanceAccumulator,
    cells_from_membranes,
    field_of_view,
    instances_from_foreground,
    median_diameter,
    object_table,
    training_diameter,
)
from napari_attnseg.zoo import load

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("dsb", "stardist", "timing", "sweep", "membranes", "fov")
METRIC_COLUMNS = ("ap50", "mean_ap", "f1", "pq")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def split(task: str, key: str, data: Path) -> list[tuple[Path, Path]]:
    pairs = json.loads((ROOT / "recipes" / "splits" / f"{task}.json").read_text())[key]
    return [(data / image, data / mask) for image, mask, *_ in pairs]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def score_row(
    name: str, truths: list[np.ndarray], preds: list[np.ndarray], dice: float
) -> list[str]:
    acc = InstanceAccumulator()
    for i, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
        acc.add(str(i), truth, pred)
    summary = acc.summary()
    mean = summary["mean"]
    pooled = summary["pooled"]
    cells = [f"{mean[k]:.3f}" for k in METRIC_COLUMNS]
    return [name, f"{dice:.3f}", *cells, f"{pooled['n_pred']} / {pooled['n_true']}"]


HEADER = ["method", "pixel Dice", "AP@0.5", "mean AP 0.5:0.95", "F1@0.5", "PQ", "objects / truth"]


def methods(diameter: float | None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    found = {
        "connected components": lambda f: instances_from_foreground(f, method="components"),
        "watershed (default)": lambda f: instances_from_foreground(f),
    }
    if diameter is not None:
        found[f"watershed, diameter {diameter:.1f}"] = lambda f: instances_from_foreground(
            f, diameter=diameter
        )
        found[f"watershed, diameter {diameter:.1f}, threshold 0.7"] = lambda f: (
            instances_from_foreground(f, diameter=diameter, threshold=0.7)
        )
    return found


# -- sections ----------------------------------------------------------------------
def section_dsb(predictor: Predictor, data: Path, train_d: float) -> None:
    pairs = split("nuclei", "val", data)
    foregrounds, truths, dice = [], [], []
    for image_path, mask_path in pairs:
        foreground = predictor.predict(read_image(image_path)).foreground
        mask = read_mask(mask_path)
        foregrounds.append(foreground)
        truths.append(instances_from_foreground(mask, method="components", min_size=0))
        dice.append(binary_metrics(foreground, mask)["dice"])
    rows = [
        score_row(name, truths, [fn(f) for f in foregrounds], float(np.mean(dice)))
        for name, fn in methods(train_d).items()
    ]
    print(f"\n### DSB2018_96 validation ({len(pairs)} images, 96², truth = connected components)\n")
    print("Metrics are means over images; pixel Dice is the same for every method.\n")
    print(table(HEADER, rows))


def section_stardist(predictor: Predictor, folder: Path, train_d: float) -> None:
    image = tifffile.imread(folder / "img2d.tif").astype(np.float32)
    truth = tifffile.imread(folder / "mask2d.tif")
    truth_d = median_diameter(truth)
    n_true = len(np.unique(truth)) - 1
    shape = truth.shape
    print(
        f"\n### StarDist `img2d.tif` ({shape[0]}×{shape[1]}, {n_true} nuclei, median diameter "
        f"{truth_d:.1f} px; training masks' median {train_d:.2f} px)\n"
    )
    rows, scale_rows = [], []
    scales = {"native": 1.0, "matched": train_d / truth_d, "2× matched": 2 * train_d / truth_d}
    for label, scale in scales.items():
        size = tuple(max(16, round(s * scale)) for s in shape)
        small = resize(image, size, order=1, anti_aliasing=scale < 1) if scale != 1 else image
        foreground_small = predictor.predict(small).foreground
        foreground = np.clip(resize(foreground_small, shape, order=1), 0.0, 1.0)
        dice = binary_metrics(foreground, truth > 0)["dice"]
        first_pass = median_diameter(foreground_small)
        scale_rows.append(
            [
                label,
                f"×{scale:.3f} ({size[0]}²)",
                f"{dice:.3f}",
                "-" if first_pass is None else f"{first_pass:.1f} ({first_pass / scale:.1f})",
            ]
        )
        for name, fn in methods(truth_d if scale != 1 else None).items():
            rows.append([label, *score_row(name, [truth], [fn(foreground)], dice)])
        if scale != 1:
            at_working = resize(
                instances_from_foreground(foreground_small),
                shape,
                order=0,
                preserve_range=True,
                anti_aliasing=False,
            ).astype(np.uint32)
            name = "watershed at working size, labels resized"
            rows.append([label, *score_row(name, [truth], [at_working], dice)])
    scale_header = ["scale", "factor (working size)", "pixel Dice", "first-pass median diameter"]
    print(table(scale_header, scale_rows))
    print(
        "\nFirst-pass median diameter: `median_diameter` of the foreground at working size "
        "(in brackets: in native pixels). Below, the foreground is resized to native size "
        "and post-processed there (except the last row of each scale); watershed with a "
        "diameter uses the truth's median diameter.\n"
    )
    print(table(["scale", *HEADER], rows))


def section_timing(predictor: Predictor) -> None:
    image, _ = load_sample("nuclei")
    big = np.tile(image, (3, 3))[:1024, :1024]
    predictor.predict(big[:128, :128])  # warm up
    start = time.perf_counter()
    foreground = predictor.predict(big).foreground
    predict_s = time.perf_counter() - start
    rows = []
    for name, fn in methods(None).items():
        fn(foreground)  # warm up
        start = time.perf_counter()
        labels = fn(foreground)
        seconds = time.perf_counter() - start
        rows.append(
            [
                name,
                f"{seconds:.3f}",
                f"{predict_s:.2f}",
                f"{seconds / predict_s:.1%}",
                str(labels.max()),
            ]
        )
    print(
        f"\n### Post-processing time, 1024² (nuclei sample tiled), CPU, {torch.get_num_threads()} "
        f"torch threads, load average {loadavg()}\n"
    )
    print(table(["method", "post-processing s", "prediction s", "ratio", "objects"], rows))
    labels = instances_from_foreground(foreground)
    cpu, wall = time.process_time(), time.perf_counter()
    object_table(labels, big)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"\n`object_table` of those {labels.max()} objects with the image: {cpu:.2f} s CPU "
        f"({wall:.2f} s wall)."
    )


def section_sweep(predictor: Predictor, data: Path, folder: Path, train_d: float) -> None:
    """AP@0.5 of the watershed for several ``split`` values."""
    image = tifffile.imread(folder / "img2d.tif").astype(np.float32)
    truth = tifffile.imread(folder / "mask2d.tif")
    truth_d = median_diameter(truth)
    cases = {}
    for label, scale in {"matched": train_d / truth_d, "2× matched": 2 * train_d / truth_d}.items():
        size = tuple(round(s * scale) for s in truth.shape)
        small = resize(image, size, order=1, anti_aliasing=True)
        foreground = resize(predictor.predict(small).foreground, truth.shape, order=1)
        cases[f"StarDist img2d, {label}"] = ([np.clip(foreground, 0, 1)], [truth])
    pairs = split("nuclei", "val", data)
    cases["DSB2018_96 val (merged truth)"] = (
        [predictor.predict(read_image(i)).foreground for i, _ in pairs],
        [
            instances_from_foreground(read_mask(m), method="components", min_size=0)
            for _, m in pairs
        ],
    )
    splits = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
    rows = []
    for name, (foregrounds, truths) in cases.items():
        cells = []
        for value in splits:
            acc = InstanceAccumulator()
            for i, (f, t) in enumerate(zip(foregrounds, truths, strict=True)):
                acc.add(str(i), t, instances_from_foreground(f, split=value))
            cells.append(f"{acc.summary()['mean']['ap50']:.3f}")
        rows.append([name, *cells])
    print("\n### Watershed `split` sweep: AP@0.5 (mean over images)\n")
    print(table(["data", *(f"split {v}" for v in splits)], rows))


def section_membranes(data: Path) -> None:
    predictor = Predictor(load("membranes"), device="cpu")
    train = split("membranes", "train", data)
    cell_d = training_diameter(cells_from_membranes(read_mask(m)) for _, m in train)
    foregrounds, truths, dice = [], [], []
    for image_path, mask_path in split("membranes", "val", data):
        interior = read_mask(mask_path)
        foreground = predictor.predict(read_image(image_path)).foreground  # P(cell interior)
        foregrounds.append(foreground)
        truths.append(cells_from_membranes(interior, min_size=0))
        dice.append(binary_metrics(foreground, interior)["dice"])
    variants = {
        "components (default)": {},
        f"components, diameter {cell_d:.1f} (min_size from it)": {"diameter": cell_d},
        "watershed": {"method": "watershed"},
        f"watershed, diameter {cell_d:.1f}": {"method": "watershed", "diameter": cell_d},
    }
    rows = [
        score_row(name, truths, [cells_from_membranes(f, **kw) for f in foregrounds], np.mean(dice))
        for name, kw in variants.items()
    ]
    print(
        f"\n### Cells from membranes: ISBI 2012 validation slices ({len(truths)} × 512²), "
        f"training cells' median diameter {cell_d:.1f} px\n"
    )
    print("Pixel Dice of the cell-interior class.\n")
    print(table(HEADER, rows))


def section_fov(data: Path) -> None:
    images = sorted((data / "DRIVE" / "train" / "images").glob("*.png"))
    fovs = {p.stem: p for p in (data / "DRIVE" / "train" / "fov").glob("*.png")}

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / (a | b).sum())

    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"fraction={f}: red > min + {f}·(p99 − min), closing, fill, largest": (
            lambda im, f=f: field_of_view(im, fraction=f)
        )
        for f in (0.05, 0.1, 0.15, 0.2, 0.3)
    }
    variants["Otsu of red, no post-processing"] = lambda im: im[..., 0] > threshold_otsu(im[..., 0])
    rows = []
    for name, fn in variants.items():
        scores = [iou(fn(read_image(p)), read_mask(fovs[p.stem]).astype(bool)) for p in images]
        rows.append([name, f"{np.mean(scores):.4f}", f"{np.min(scores):.4f}"])
    print(f"\n### Field of view vs DRIVE's FOV masks ({len(images)} training images)\n")
    print(table(["method", "mean IoU", "worst IoU"], rows))
    fundus, _ = load_sample("fundus")
    vessels = Predictor(load("vessels"), device="cpu").predict(fundus).labels > 0
    fov = field_of_view(fundus)
    outside = (vessels & ~fov).sum() / max(1, vessels.sum())
    print(
        f"\nVessels model on the fundus sample ({fundus.shape[0]}×{fundus.shape[1]}): "
        f"{outside:.1%} of the predicted vessel pixels lie outside `field_of_view`."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None,
        help="folder holding the datasets (DSB2018_96, ...); needed by every section but timing",
    )
    parser.add_argument(
        "--stardist", type=Path, default=None,
        help="data/images folder of the unpacked stardist wheel; needed by stardist and sweep",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    need_data = sorted(set(sections) - {"timing"})
    if need_data and args.data is None:
        parser.error(f"--data DIR is required by the sections {need_data}")
    need_stardist = sorted({"stardist", "sweep"} & set(sections))
    if need_stardist and args.stardist is None:
        parser.error(f"--stardist DIR is required by the sections {need_stardist}")
    torch.manual_seed(0)
    print(f"<!-- scripts/instance_study.py --sections {','.join(sections)}; cpu -->")
    train_d = None
    if {"dsb", "stardist", "sweep"} & set(sections):
        train_d = training_diameter(m for _, m in split("nuclei", "train", args.data))
        print(f"\nDSB2018_96 training masks: median object diameter {train_d:.2f} px")
    nuclei = Predictor(load("nuclei"), device="cpu")
    if "dsb" in sections:
        section_dsb(nuclei, args.data, train_d)
    if "stardist" in sections:
        section_stardist(nuclei, args.stardist, train_d)
    if "timing" in sections:
        section_timing(nuclei)
    if "sweep" in sections:
        section_sweep(nuclei, args.data, args.stardist, train_d)
    if "membranes" in sections:
        section_membranes(args.data)
    if "fov" in sections:
        section_fov(args.data)
    print(f"\n<!-- load average at the end: {loadavg()}; pid {os.getpid()} -->")


if __name__ == "__main__":
    main()
