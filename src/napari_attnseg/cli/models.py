"""``attnseg models``: list the zoo and the user's models.

Files in the user model folder that are not readable models (a truncated
download, a pickle renamed ``.safetensors``, a card of a newer format) are
not listed; a ``note:`` on stderr names each with the reason. A model that
disappears while the list is made is left out the same way.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list zoo and user models", description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import ModelFileError, read_card
    from ..zoo import available_models, task_defaults, user_model_dir

    rows = []
    listed = set()
    for info in available_models():
        try:
            card = read_card(info.path)
        except ModelFileError as exc:  # changed or removed since it was listed
            print(f"note: skipped {info.path}: {exc}", file=sys.stderr)
            continue
        listed.add(info.path)
        dice = card.get("metrics", {}).get("validation", {}).get("mean", {}).get("dice")
        rows.append(
            {
                "name": info.name,
                "source": info.source,
                "task": info.task,
                "arch": info.arch,
                "default": info.is_default,
                "val_dice": dice,
                "path": str(info.path),
            }
        )
    folder = user_model_dir()
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        if path not in listed:
            try:
                read_card(path)
            except ModelFileError as exc:
                print(f"note: skipped {path.name}: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({"models": rows, "defaults": task_defaults()}, indent=2))
        return 0
    if not rows:
        print("no models found")
    else:
        header = f"{'name':34} {'source':6} {'task':10} {'arch':22} {'val dice':>8}"
        print(header)
        print("-" * len(header))
        for r in rows:
            dice = "" if r["val_dice"] is None else f"{r['val_dice']:.4f}"
            mark = " *" if r["default"] else ""
            print(f"{r['name']:34} {r['source']:6} {r['task']:10} {r['arch']:22} {dice:>8}{mark}")
    defaults = task_defaults()
    if defaults:
        print(
            "\n* task default; a bare task name selects it: "
            + ", ".join(f"{t} -> {n}" for t, n in sorted(defaults.items()))
        )
    print(f"user models folder: {user_model_dir()}")
    return 0
