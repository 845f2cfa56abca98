"""Compare ways of making nuclei instances on the native-resolution validation split (issue 22).

    python scripts/nuclei_heads.py --model runs/zoo3/focal_attention_unet.nuclei.safetensors \
        [--baseline OLD.safetensors] [--data runs/data/nuclei_native/val] [--json OUT.json]

For every validation image (``<data>/images/*.png`` with instance labels in ``<data>/labels``,
modality from ``<data>/../modality.json``, written by scripts/nuclei_native_data.py) the model
is run once as ``attnseg predict --instances`` runs it (default settings: auto size, no TTA),
and its separation head is decoded every way :func:`napari_attnseg.objects.instances_from_head`
knows — ``centre`` (seeds: centre blobs), ``boundary`` (seeds: inside beats boundary) and
``foreground`` (the head's foreground split by the distance-transform watershed, what binary
models do). ``--baseline`` adds a binary model run with its own defaults (the 96-px default
this replaces: working scale 2, distance-transform watershed). Prints, per method and
modality, the mean over images of AP@0.5, mean AP over IoU 0.5:0.95 (DSB 2018), PQ and pixel
Dice, and the decoding / whole-prediction time per megapixel, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_attnseg.data.io import read_image, read_mask  # noqa: E402
from napari_attnseg.inference import Predictor  # noqa: E402
from napari_attnseg.models import load_model  # noqa: E402
from napari_attnseg.objects import DECODERS, instance_metrics, instances_from_head  # noqa: E402

KEYS = ("ap50", "mean_ap", "pq", "dice")


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    t, p = truth > 0, pred > 0
    total = t.sum() + p.sum()
    return 1.0 if total == 0 else float(2 * (t & p).sum() / total)


def score(truth: np.ndarray, pred: np.ndarray) -> dict:
    m = instance_metrics(truth, pred)
    return {"ap50": m["ap50"], "mean_ap": m["mean_ap"], "pq": m["pq"], "dice": dice(truth, pred)}


def summarise(rows: list[dict], modality: dict[str, str]) -> dict:
    out = {}
    groups = {"all": rows}
    for row in rows:
        groups.setdefault(modality.get(row["name"], "?"), []).append(row)
    for group, members in groups.items():
        out[group] = {"n": len(members)}
        for key in (*KEYS, "s_per_mpx"):
            out[group][key] = round(float(np.mean([r[key] for r in members])), 4)
    return out


def negatives() -> dict[str, np.ndarray]:
    """Images unlike the training data: the per-image confidence should flag them."""
    from skimage import data

    rng = np.random.default_rng(0)
    return {
        "noise 512²": rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
        "blank 512²": np.full((512, 512), 40, np.uint8),
        "skimage cell() (phase contrast)": data.cell(),
        "skimage immunohistochemistry()": data.immunohistochemistry(),
    }


def _by_modality(values: dict[str, float], modality: dict[str, str]) -> dict[str, np.ndarray]:
    groups: dict[str, list[float]] = {"all": list(values.values())}
    for name, value in values.items():
        groups.setdefault(modality.get(name, "?"), []).append(value)
    return {g: np.asarray(v) for g, v in groups.items()}


LABELS = {
    "centre": "bands head, centre seeds (shipped)",
    "boundary": "bands head, boundary decoding",
    "foreground": "bands head's foreground, distance-transform watershed",
    "baseline": "previous default (96-px model, scale 2), distance-transform watershed",
    "model": "model",
}


def markdown(report: dict) -> str:
    """The comparison as a markdown table (docs/objects.md)."""
    lines = ["| method | images | n | AP@0.5 | mean AP | PQ | Dice | s / Mpx |",
             "|---|---|---|---|---|---|---|---|"]
    for name, groups in report["methods"].items():
        for group in ("all", "fluorescence", "stained", "brightfield"):
            g = groups.get(group)
            if g:
                lines.append(f"| {LABELS.get(name, name)} | {group} | {g['n']} | {g['ap50']:.3f} "
                             f"| {g['mean_ap']:.3f} | {g['pq']:.3f} | {g['dice']:.3f} "
                             f"| {g['s_per_mpx']:.2f} |")
    return "\n".join(lines)


def confidence_markdown(report: dict) -> str:
    """The confidence calibration as a markdown table (docs/objects.md)."""
    c = report["confidence"]
    lines = [f"| images | n | min | 5th pct | median | below {c['threshold']:g} |",
             "|---|---|---|---|---|---|"]
    for group, g in c["validation"].items():
        lines.append(f"| validation, {group} | {g['n']} | {g['min']:.2f} | {g['p05']:.2f} "
                     f"| {g['median']:.2f} | {g['below_threshold']} |")
    for name, q in c["unlike_the_training_data"].items():
        if q is not None:
            lines.append(f"| {name} | 1 | {q['confidence']:.2f} | | "
                         f"| {'flagged' if q['warning'] else 'not flagged'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--baseline")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/data/nuclei_native/val")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--limit", type=int, help="only the first N images (smoke runs)")
    args = parser.parse_args(argv)
    modality = json.loads((args.data.parent / "modality.json").read_text())
    images = sorted((args.data / "images").glob("*.png"))[: args.limit]
    load = [round(x, 2) for x in os.getloadavg()]
    predictor = Predictor(device="cpu", precision="fp32")
    model = load_model(args.model)
    head = model.card.separation_head
    rows: dict[str, list[dict]] = {d: [] for d in DECODERS} if head else {"model": []}
    baseline = load_model(args.baseline) if args.baseline else None
    if baseline is not None:
        rows["baseline"] = []
    confidence: dict[str, float] = {}
    for n, path in enumerate(images):
        image = read_image(path)
        truth = read_mask(args.data / "labels" / path.name, binary=False)
        mpx = truth.size / 1e6
        start = time.perf_counter()
        prediction = predictor.predict(model, image)
        predicted = time.perf_counter() - start
        if prediction.quality is not None:
            confidence[path.stem] = prediction.quality.confidence
        if head:
            for decode in DECODERS:
                start = time.perf_counter()
                labels = instances_from_head(
                    prediction.head, head=head, decode=decode, diameter=prediction.diameter
                )
                spent = time.perf_counter() - start
                rows[decode].append({"name": path.stem, **score(truth, labels),
                                     "s_per_mpx": (predicted + spent) / mpx,
                                     "decode_s_per_mpx": spent / mpx})
        else:
            rows["model"].append({"name": path.stem, **score(truth, prediction.instances),
                                  "s_per_mpx": predicted / mpx})
        if baseline is not None:
            start = time.perf_counter()
            old = predictor.predict(baseline, image)
            spent = time.perf_counter() - start
            rows["baseline"].append({"name": path.stem, **score(truth, old.instances),
                                     "s_per_mpx": spent / mpx})
        print(f"{n + 1}/{len(images)} {path.name}", file=sys.stderr)
    unlike = {}
    for name, image in negatives().items():
        quality = predictor.predict(model, image).quality
        unlike[name] = None if quality is None else quality.as_dict()
    values = np.asarray(list(confidence.values()))
    from napari_attnseg.inference.objects import confidence_threshold

    threshold = confidence_threshold(model.card)
    report = {
        "confidence": {
            "validation": {
                group: {"n": int(v.size), "min": round(float(v.min()), 4),
                        "p05": round(float(np.percentile(v, 5)), 4),
                        "median": round(float(np.median(v)), 4),
                        "below_threshold": int((v < threshold).sum())}
                for group, v in _by_modality(confidence, modality).items()
            } if values.size else {},
            "unlike_the_training_data": unlike,
            "threshold": threshold,
        },
        "command": "python scripts/nuclei_heads.py " + " ".join(argv or sys.argv[1:]),
        "images": len(images),
        "load_average_start": load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "methods": {name: summarise(r, modality) for name, r in rows.items()},
        "decode_s_per_mpx": {
            name: round(float(np.mean([x["decode_s_per_mpx"] for x in r])), 4)
            for name, r in rows.items() if r and "decode_s_per_mpx" in r[0]
        },
    }
    text = json.dumps(report, indent=1)
    print(text)
    print(markdown(report))
    print(confidence_markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
