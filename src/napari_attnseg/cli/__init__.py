"""The ``attnseg`` command line: one module per subcommand.

``attnseg models | info | predict | evaluate | train | finetune | prune | export | bench | demo``;
every subcommand has ``--help``. MODEL is a zoo name (``focal_use_net.nuclei``),
a task name (``nuclei``), a user model name, or a path to a saved model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import bench, demo, evaluate, export, info, models, predict, prune, train

COMMANDS = (models, info, predict, evaluate, train, prune, export, bench, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnseg",
        description="Attention-based segmentation: pretrained zoo, prediction, evaluation, "
        "training and fine-tuning (the engine behind the napari-attnseg plugin).",
    )
    parser.add_argument("--version", action="version", version=f"napari-attnseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"attnseg {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
