"""``attnseg prune``: remove the Focal attention modules whose w is below a threshold.

Yeung et al. train with every Focal w initialised to 0, then drop the
modules whose w stays below 0.2 and retrain. This command does the middle
step on a trained model; ``attnseg train --prune-workflow`` runs all three.
"""

from __future__ import annotations

import argparse

from ..models import PRUNE_THRESHOLD
from ._common import number


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prune", help="drop Focal attention modules with w below a threshold", description=__doc__
    )
    p.add_argument("--model", required=True, metavar="MODEL")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="where to save the pruned model (never the model it was pruned from)",
    )
    p.add_argument(
        "--threshold",
        type=number(0),
        default=PRUNE_THRESHOLD,
        help=f"prune modules with w < this, at least 0 (default {PRUNE_THRESHOLD:g})",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import focal_weights, prune, save_model
    from ..zoo import load

    model = load(args.model)
    weights = focal_weights(model)
    pruned = prune(model, threshold=args.threshold)
    card = model.card
    card.metadata = {
        **card.metadata,
        "pruned_from": args.model,
        "prune_threshold": args.threshold,
        "focal_weights_before_pruning": weights,
    }
    path = save_model(pruned, args.out, card=card)
    for name, w in weights.items():
        print(f"  {name:36} w = {w:.4f}  {'pruned' if w < args.threshold else 'kept'}")
    print(f"saved {path} ({len(pruned.config['pruned'])} module(s) pruned)")
    return 0
