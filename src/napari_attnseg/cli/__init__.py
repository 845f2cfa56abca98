"""The ``attnseg`` command line: one module per subcommand.

``attnseg models | info | predict | evaluate | train | finetune | prune | export | bench | demo``;
every subcommand has ``--help``. MODEL is a zoo name (``focal_use_net.nuclei``),
a task name (``nuclei``), a user model name, or a path to a saved model.

Every failure ends in one line on stderr, ``attnseg <command>: error: <message>``,
and exit status 1 (2 for a malformed command line, as argparse does; 130 for
Ctrl+C), whatever the exception; ``--debug`` (before or after the subcommand)
shows the traceback instead. Commands that write check, before writing
anything, that no output lands on one of their inputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import bench, demo, evaluate, export, info, models, predict, prune, train
from ._common import refuse_model_overwrite

COMMANDS = (models, info, predict, evaluate, train, prune, export, bench, demo)
#: subcommands whose ``--out`` is a model path (checked against their inputs before they run)
MODEL_OUTPUT_COMMANDS = ("train", "finetune", "prune")
DEBUG_HELP = "show the full traceback of an error instead of one line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnseg",
        description="Attention-based segmentation: pretrained zoo, prediction, evaluation, "
        "training and fine-tuning (the engine behind the napari-attnseg plugin).",
    )
    parser.add_argument("--version", action="version", version=f"napari-attnseg {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for subparser in sub.choices.values():  # `attnseg predict ... --debug` works too
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        if args.command in MODEL_OUTPUT_COMMANDS:
            refuse_model_overwrite(args)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"attnseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"attnseg {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 1


def error_message(exc: BaseException) -> str:
    """One line that names the problem, whatever the exception type."""
    from .._extras import missing_extra
    from ..data.io import ImageFileError
    from ..models.persistence import ModelFileError

    text = " ".join(str(exc).split())  # one line
    if (extra := missing_extra(exc)) is not None:
        return extra
    if isinstance(exc, (ImageFileError, ModelFileError)):
        return text
    if isinstance(exc, MemoryError) or _is_out_of_memory(exc):
        return (
            f"out of memory ({text or type(exc).__name__}); try a smaller --tile-size or "
            "--batch-size, or --device cpu"
        )
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if type(exc) in (ValueError, FileNotFoundError) and text:
        return text
    name = type(exc).__name__
    if isinstance(exc, KeyError):
        return f"{name} {text} (an internal error; run with --debug and report it)"
    if not text:
        return f"{name} (run with --debug for the traceback)"
    return f"{name}: {text}"


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
