#!/usr/bin/env python
"""Make the zoo's train/validation splits and lay them out as folders of links.

    python scripts/make_splits.py --data ../shared/data --out runs/data

writes ``recipes/splits/<task>.json`` (file names only — never the data) and,
under ``--out``, ``<task>/{train,val}/{images,masks[,fov]}`` folders of
symbolic links into ``--data`` that ``attnseg train`` / ``evaluate`` read.

Splits (seeded, reproducible):
* nuclei — DSB2018_96: a random 20 % (seed 0) for validation (80/20);
* vessels — DRIVE/train: 4 of the 20 images (seed 0), 16 for training;
* polyp — Kvasir-SEG by its own split lists (880/120) plus CVC-ClinicDB split
  by whole video sequences: frames 384–478 (the last five sequences, about
  20 %) for validation, never single frames, since consecutive frames are
  near-duplicates. Sequence starts: the published CVC-ClinicDB boundaries,
  which coincide with the largest frame-to-frame changes in the images;
* membranes — ISBI2012_EM: the last 6 of 30 slices (a contiguous block, since
  neighbouring slices are correlated) for validation.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from napari_attnseg.data.pairing import pair_folder
from napari_attnseg.data.splits import split_by_groups, split_from_lists, split_indices

ROOT = Path(__file__).resolve().parents[1]
CVC_SEQUENCE_STARTS = [
    1,
    26,
    51,
    68,
    79,
    104,
    127,
    152,
    178,
    200,
    206,
    228,
    253,
    278,
    298,
    318,
    343,
    364,
    384,
    409,
    429,
    448,
    467,
]
CVC_VAL_FROM = 384


def cvc_sequence(frame: int) -> int:
    return max(i for i, start in enumerate(CVC_SEQUENCE_STARTS) if start <= frame)


def make_splits(data: Path) -> dict[str, dict[str, list[list[str | None]]]]:
    def rel(pairs):
        return [[str(Path(p).relative_to(data)) if p else None for p in pair] for pair in pairs]

    splits = {}
    pairs = pair_folder(data / "DSB2018_96/images", data / "DSB2018_96/masks")
    train, val = split_indices(len(pairs), 0.2, seed=0)
    splits["nuclei"] = {
        "train": rel([pairs[i] for i in train]),
        "val": rel([pairs[i] for i in val]),
    }

    pairs = pair_folder(
        data / "DRIVE/train/images", data / "DRIVE/train/masks", fov_dir=data / "DRIVE/train/fov"
    )
    train, val = split_indices(len(pairs), 0.2, seed=0)
    splits["vessels"] = {
        "train": rel([pairs[i] for i in train]),
        "val": rel([pairs[i] for i in val]),
    }

    kvasir = pair_folder(data / "Kvasir-SEG/images", data / "Kvasir-SEG/masks")
    k_train, k_val = split_from_lists(
        [Path(p[0]).name for p in kvasir],
        data / "Kvasir-SEG/split_train.txt",
        data / "Kvasir-SEG/split_val.txt",
    )
    cvc = pair_folder(data / "CVC-ClinicDB/images", data / "CVC-ClinicDB/masks")
    groups = [cvc_sequence(int(Path(p[0]).stem)) for p in cvc]
    val_groups = {cvc_sequence(f) for f in range(CVC_VAL_FROM, 479)}
    c_train, c_val = split_by_groups(groups, val_groups=sorted(val_groups))
    splits["polyp"] = {
        "train": rel([kvasir[i] for i in k_train] + [cvc[i] for i in c_train]),
        "val": rel([kvasir[i] for i in k_val] + [cvc[i] for i in c_val]),
    }

    pairs = pair_folder(data / "ISBI2012_EM/images", data / "ISBI2012_EM/masks")
    splits["membranes"] = {"train": rel(pairs[:24]), "val": rel(pairs[24:])}
    return splits


def link_name(path: str) -> str:
    """Polyp sources share a folder: prefix by dataset so stems stay unique and readable."""
    source = path.split("/")[0]
    prefix = {"CVC-ClinicDB": "cvc_", "Kvasir-SEG": "kvasir_"}.get(source, "")
    return prefix + Path(path).name


def materialise(splits: dict, data: Path, out: Path) -> None:
    for task, parts in splits.items():
        for part, pairs in parts.items():
            for kind, index in (("images", 0), ("masks", 1), ("fov", 2)):
                files = [p[index] for p in pairs if len(p) > index and p[index]]
                if not files:
                    continue
                folder = out / task / part / kind
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.iterdir():
                    old.unlink()
                for f in files:
                    os.symlink((data / f).resolve(), folder / link_name(f))
    print(f"linked split folders under {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "data")
    args = parser.parse_args()
    splits = make_splits(args.data.resolve())
    target = ROOT / "recipes" / "splits"
    target.mkdir(parents=True, exist_ok=True)
    for task, parts in splits.items():
        (target / f"{task}.json").write_text(json.dumps(parts, indent=1) + "\n")
        print(f"{task}: {len(parts['train'])} train / {len(parts['val'])} val")
    materialise(splits, args.data.resolve(), args.out)


if __name__ == "__main__":
    main()
