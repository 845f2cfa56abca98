"""Prepare the native-resolution nuclei training data (issue 22) under runs/data/.

    python scripts/nuclei_native_data.py [--shared ../shared/data] [--out runs/data/nuclei_native]

Reads ``DSB2018_native`` (images/<id>.png RGB, labels/<id>.png uint16 instances) and
``MoNuSeg2018_train`` (1000² H&E tiles, cut into four 500² quarters so that each weighs
about as much as a DSB image in the patch sampling) and writes

    <out>/{train,val}/images/<name>.png     the image as it is
    <out>/{train,val}/labels/<name>.png     instance labels (uint16)
    <out>/{train,val}/masks/<name>.png      the "bands" classes (0 bg, 1 interior, 2 boundary,
                                            3 centre) of napari_attnseg.data.targets
    <out>/valsub/{images,masks}/            crops of at most 320² of the validation images,
                                            for the trainer's per-epoch validation

The split is by image, stratified by modality (fluorescence: grey on a dark background;
brightfield: grey on a light one; stained: colour, H&E and the like), seeded, and written
to ``recipes/splits/nuclei_native.json`` (names only: the data is never committed). A
MoNuSeg tile's four quarters go to the same side of the split. Re-running with the same
split file reproduces the same folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_attnseg.data.targets import band_targets  # noqa: E402

SPLIT_FILE = ROOT / "recipes" / "splits" / "nuclei_native.json"
VAL_FRACTION = 0.15
MONUSEG_VAL = 5
VALSUB_SIDE = 320


def modality(rgb: np.ndarray) -> str:
    """"fluorescence", "brightfield" or "stained" from the pixel values of an RGB image."""
    rgb = rgb[..., :3].astype(np.float32)
    colour = float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])))
    if colour > 6.0:
        return "stained"
    return "fluorescence" if float(np.median(rgb)) < 100 else "brightfield"


def read_rgb(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path))
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def make_split(shared: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    dsb = sorted((shared / "DSB2018_native" / "images").glob("*.png"))
    groups: dict[str, list[str]] = {}
    for path in dsb:
        groups.setdefault(modality(read_rgb(path)), []).append(path.stem)
    split = {"seed": seed, "modality": {}, "train": [], "val": []}
    for name, stems in sorted(groups.items()):
        stems = sorted(stems)
        order = rng.permutation(len(stems))
        n_val = max(1, round(VAL_FRACTION * len(stems)))
        val = sorted(stems[i] for i in order[:n_val])
        split["val"] += [f"dsb/{s}" for s in val]
        split["train"] += [f"dsb/{s}" for s in stems if s not in val]
        for s in stems:
            split["modality"][f"dsb/{s}"] = name
    tiles = sorted(p.stem for p in (shared / "MoNuSeg2018_train" / "images").glob("*.png"))
    order = rng.permutation(len(tiles))
    val = sorted(tiles[i] for i in order[:MONUSEG_VAL])
    split["val"] += [f"monuseg/{s}" for s in val]
    split["train"] += [f"monuseg/{s}" for s in tiles if s not in val]
    for s in tiles:
        split["modality"][f"monuseg/{s}"] = "stained"
    split["train"].sort()
    split["val"].sort()
    return split


def items(shared: Path, key: str):
    """``(name, image, labels)`` of one split entry (four quarters for a MoNuSeg tile)."""
    source, stem = key.split("/", 1)
    folder = shared / ("DSB2018_native" if source == "dsb" else "MoNuSeg2018_train")
    image = read_rgb(folder / "images" / f"{stem}.png")
    labels = np.asarray(Image.open(folder / "labels" / f"{stem}.png")).astype(np.int64)
    if source == "dsb":
        yield f"dsb_{stem[:16]}", image, labels
        return
    h, w = labels.shape
    for i, (y, x) in enumerate([(0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2)]):
        window = (slice(y, y + h // 2), slice(x, x + w // 2))
        yield f"monuseg_{stem}_q{i}", image[window], labels[window]


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "data" / "nuclei_native")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if SPLIT_FILE.is_file():
        split = json.loads(SPLIT_FILE.read_text())
    else:
        split = make_split(args.shared, args.seed)
        SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
        SPLIT_FILE.write_text(json.dumps(split, indent=1) + "\n")
    modalities = {}
    for side in ("train", "val"):
        for key in split[side]:
            for name, image, labels in items(args.shared, key):
                modalities[name] = split["modality"][key]
                base = args.out / side
                write(base / "images" / f"{name}.png", image)
                write(base / "labels" / f"{name}.png", labels.astype(np.uint16))
                write(base / "masks" / f"{name}.png", band_targets(labels).astype(np.uint8))
                if side == "val":
                    h, w = labels.shape
                    y, x = max(0, (h - VALSUB_SIDE) // 2), max(0, (w - VALSUB_SIDE) // 2)
                    crop = (slice(y, y + VALSUB_SIDE), slice(x, x + VALSUB_SIDE))
                    write(args.out / "valsub" / "images" / f"{name}.png", image[crop])
                    classes = band_targets(labels[crop]).astype(np.uint8)
                    write(args.out / "valsub" / "masks" / f"{name}.png", classes)
    (args.out / "modality.json").write_text(json.dumps(modalities, indent=1) + "\n")
    counts = {}
    for key in split["val"]:
        counts[split["modality"][key]] = counts.get(split["modality"][key], 0) + 1
    print(f"train {len(split['train'])} / val {len(split['val'])} entries; val by modality {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
