"""``attnseg info MODEL``: architecture, parameters, FLOPs, attention modules and Focal w.

MODEL is a saved or zoo model, or an architecture name from the registry
(built with fresh weights; pass ``--in-channels``/``--option`` to configure it).
"""

from __future__ import annotations

import argparse
import json

from ..models import PRUNE_THRESHOLD
from ..models.cost import MAX_SIDE
from ._common import check_architecture_options, integer, parse_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info", help="architecture, parameters, FLOPs, attention, Focal w", description=__doc__
    )
    p.add_argument("model", metavar="MODEL", help="zoo/user model, path, or architecture name")
    p.add_argument(
        "--size",
        nargs=2,
        type=integer(1, MAX_SIDE),
        metavar=("H", "W"),
        default=None,
        help=f"input size for the FLOP count, 1 to {MAX_SIDE} pixels a side (default 256 256)",
    )
    p.add_argument(
        "--in-channels",
        type=integer(1),
        default=None,
        help="for an architecture name: input channels, at least 1 (default 3)",
    )
    p.add_argument(
        "--n-classes",
        type=integer(1),
        default=None,
        help="for an architecture name: 1 (binary) or the number of classes >= 2 (default 1)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option (JSON value), repeatable, e.g. --option width=16",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def build(args: argparse.Namespace):
    from ..models import create_model, list_models
    from ..zoo import load

    if args.model in list_models():
        try:
            return load(args.model)  # a user model may shadow an architecture name
        except ValueError:
            pass
        options = parse_options(args.option)
        check_architecture_options(args.model, options)
        try:
            return create_model(
                args.model,
                in_channels=3 if args.in_channels is None else args.in_channels,
                n_classes=1 if args.n_classes is None else args.n_classes,
                **options,
            )
        except (TypeError, ValueError) as exc:
            given = " ".join(f"--option {item}" for item in args.option)
            raise ValueError(
                f"cannot build {args.model}" + (f" with {given}" if given else "") + f": {exc}"
            ) from exc
    if args.option or args.in_channels is not None or args.n_classes is not None:
        raise ValueError(
            "--option/--in-channels/--n-classes apply to architecture names only "
            f"({args.model!r} is a saved or zoo model)"
        )
    return load(args.model)


def run(args: argparse.Namespace) -> int:
    from ..models import attention_modules, focal_weights, model_cost

    model = build(args)
    size = tuple(args.size) if args.size else (256, 256)
    cost = model_cost(model, size)
    kinds = attention_modules(model)
    weights = focal_weights(model)
    card = model.card
    report = {
        "model": args.model,
        "architecture": model.config,
        "params": cost.params,
        "input": [model.in_channels, *size],
        "flops": cost.flops,
        "gflops": round(cost.gflops, 4),
        "gmacs": round(cost.gmacs, 4),
        "attention_modules": kinds,
        "focal_weights": weights,
        "card": card.to_dict() if card is not None else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    cfg = {k: v for k, v in model.config.items() if k not in ("name",)}
    print(f"model:        {args.model}")
    print(f"architecture: {model.config['name']}  {json.dumps(cfg)}")
    print(f"parameters:   {cost.params:,} ({cost.megabytes_fp32:.1f} MB fp32)")
    print(
        f"cost at {model.in_channels}x{size[0]}x{size[1]}: {cost.gflops:.3f} GFLOPs "
        f"({cost.gmacs:.3f} GMACs; PyTorch flop counter, 1 multiply-add = 2 FLOPs)"
    )
    if card is not None and card.normalization:
        print(f"normalisation: {json.dumps(card.normalization)}; input scale {card.input_scale}")
    print(f"attention modules: {len(kinds)}")
    for name, kind in kinds.items():
        w = weights.get(name)
        focal = (
            ""
            if w is None
            else f"  focal w = {w:.4f}"
            + (f"  (w < {PRUNE_THRESHOLD:g}: would prune)" if w < PRUNE_THRESHOLD else "")
        )
        print(f"  {name:36} {kind:8}{focal}")
    return 0
