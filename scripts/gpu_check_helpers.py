#!/usr/bin/env python
"""Helpers of ``scripts/gpu_check.sh``: a generated toy training set, and the summary JSON.

    python scripts/gpu_check_helpers.py machine [--device D]
    python scripts/gpu_check_helpers.py toy-data OUT [--count N] [--size S]
    python scripts/gpu_check_helpers.py summary OUT [--device D] [--dry-run 0|1] [--data DIR]

``machine`` prints torch, CUDA and the GPUs as JSON, and fails when ``--device``
asks for CUDA that PyTorch does not see. ``toy-data`` writes N RGB images of
bright discs on noise and their masks as PNG files in ``OUT/images`` and
``OUT/masks`` (what ``attnseg train`` reads).
``summary`` gathers ``OUT/steps.tsv`` (one line per step: name, exit code,
milliseconds, command), the JUnit XML of the tests and the bench report into
``OUT/gpu_check.json``, prints a short verdict, and exits 1 if a step failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


def machine(device: str) -> int:
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    print(json.dumps(info))
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "PyTorch sees no CUDA GPU: install a CUDA build of torch (pip install torch)",
            file=sys.stderr,
        )
        return 1
    return 0


def toy_data(out: Path, count: int, size: int, seed: int = 0) -> None:
    from napari_attnseg.data.io import write_image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(max(2, size // 16)):
            cy, cx = rng.integers(4, size - 4, 2)
            r = rng.integers(3, max(4, size // 8))
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 255
        grey = np.clip(rng.normal(50, 15, (size, size)) + (mask > 0) * 120, 0, 255)
        image = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
        write_image(out / "images" / f"toy{i:03d}.png", image)
        write_image(out / "masks" / f"toy{i:03d}.png", mask)
    print(f"toy data: {count} images of {size}² in {out}")


def _tests(path: Path) -> dict | None:
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {**counts, "failed": failed}


def _bench(path: Path) -> dict | None:
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        "file": str(path),
        "device_name": report["machine"].get("device_name"),
        "precision": report.get("precision"),
        "seconds": report.get("seconds"),
        "ratios": [
            {
                k: r[k]
                for k in (
                    "ours",
                    "reference",
                    "size",
                    "batch",
                    "variant",
                    "reference_variant",
                    "ratio",
                )
            }
            for r in report.get("ratios", [])
        ],
        "train_speedups": report.get("train_speedups", []),
        "targets": report.get("targets", []),
    }


def summary(out: Path, device: str, dry_run: bool, data: str) -> int:
    steps = []
    tsv = out / "steps.tsv"
    for line in tsv.read_text(encoding="utf-8").splitlines() if tsv.exists() else []:
        name, rc, ms, command = line.split("\t", 3)
        steps.append(
            {"step": name, "exit_code": int(rc), "seconds": int(ms) / 1000, "command": command}
        )
    result = {
        "written": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "device": device,
        "dry_run": dry_run,
        "training_data": data,
        "steps": steps,
        "cuda_tests": _tests(out / "cuda_tests.xml"),
        "bench": _bench(out / "bench.json"),
        "ok": bool(steps) and all(s["exit_code"] == 0 for s in steps),
        "log": str(out / "gpu_check.log"),
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    for s in steps:
        print(f"{s['step']:12s} exit {s['exit_code']:3d}  {s['seconds']:7.1f} s")
    tests = result["cuda_tests"]
    if tests:
        print(
            f"tests: {tests['tests']} run, {tests['skipped']} skipped, "
            f"{tests['failures'] + tests['errors']} failed"
        )
    print("gpu_check: " + ("all steps passed" if result["ok"] else "SOME STEPS FAILED"))
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("machine").add_argument("--device", default="cuda")
    toy = sub.add_parser("toy-data")
    toy.add_argument("out", type=Path)
    toy.add_argument("--count", type=int, default=16)
    toy.add_argument("--size", type=int, default=96)
    summ = sub.add_parser("summary")
    summ.add_argument("out", type=Path)
    summ.add_argument("--device", default="cuda")
    summ.add_argument("--dry-run", default="0")
    summ.add_argument("--data", default="")
    args = parser.parse_args(argv)
    if args.command == "machine":
        return machine(args.device)
    if args.command == "toy-data":
        toy_data(args.out, args.count, args.size)
        return 0
    return summary(args.out, args.device, args.dry_run == "1", args.data)


if __name__ == "__main__":
    sys.exit(main())
