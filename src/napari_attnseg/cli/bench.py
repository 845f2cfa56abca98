"""``attnseg bench``: inference and fine-tuning speed and memory, beside MONAI references.

In one run on one device: throughput (ms/image, images/s, peak memory) of every
architecture at its compact default size and of MONAI's AttentionUnet and
BasicUNet at equal stage widths, for each --sizes × --batch-sizes (eval mode,
inference_mode, fp16 autocast on CUDA, median of timed repeats after warm-up);
the end-to-end time of one RGB image through the Predictor; one fine-tune round
per architecture (1 epoch of 16 random 128² patches of synthetic data, batch 4);
and sliding-window inference on a 4096² image with its peak memory growth.
Prints tables (progress goes to stderr) and, with --json, writes the report.
The full run takes ~15–25 min on a 2-core CPU; --quick is a smoke run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._common import add_device, add_quiet

#: the MONAI reference networks ``--reference`` accepts
REFERENCE_CHOICES = ("monai.AttentionUnet", "monai.BasicUNet")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark inference and fine-tuning", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(p)
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default=None,
                   help="autocast on CUDA (auto = fp16); the CPU always runs fp32")
    p.add_argument("--arch", action="append", default=None, metavar="NAME",
                   help="architecture to measure, repeatable (default: every registered one "
                        "but the paper-size presets)")
    # the names of benchmark.MONAI_REFERENCES, spelt out so that building the parser does not
    # import torch (a test checks that they agree)
    p.add_argument("--reference", action="append", default=None, metavar="NAME",
                   choices=REFERENCE_CHOICES,
                   help="MONAI reference network, repeatable (default: both)")
    p.add_argument("--no-references", action="store_true", help="skip the MONAI references")
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="N",
                   help="square input sizes for throughput (default 256 512)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, metavar="N",
                   help="batch sizes for throughput (default 1 8)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="at least this many timed calls "
                   "(default 3)")
    p.add_argument("--min-time", type=float, default=None, metavar="S",
                   help="keep repeating until this many seconds were timed (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--e2e-size", type=int, default=None, metavar="N",
                   help="end-to-end image edge (default 512)")
    p.add_argument("--e2e-model", default=None, metavar="MODEL",
                   help="zoo/user model or path for the end-to-end and sliding-window runs "
                        "(default: the compact focal_use_net with fresh weights)")
    p.add_argument("--no-finetune", action="store_true", help="skip the fine-tune rounds")
    p.add_argument("--finetune-patches", type=int, default=None, metavar="N",
                   help="patches in the fine-tune round (default 16)")
    p.add_argument("--patch-size", type=int, default=None, metavar="N",
                   help="fine-tune patch edge (default 128)")
    p.add_argument("--finetune-batch", type=int, default=None, metavar="N",
                   help="fine-tune batch size (default 4)")
    p.add_argument("--skip-large", action="store_true", help="skip the sliding-window run")
    p.add_argument("--large-size", type=int, default=None, metavar="N",
                   help="sliding-window image edge (default 4096)")
    p.add_argument("--tile-size", type=int, default=None, metavar="N",
                   help="sliding-window tile edge (default 512)")
    p.add_argument("--overlap", type=float, default=None, help="tile overlap (default 0.25)")
    p.add_argument("--tile-batch", type=int, default=None, metavar="N",
                   help="tiles per forward pass (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 128² batch 1, 2 repeats, 256² end to end, 1024² sliding "
                        "window (explicit options still win)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    add_quiet(p)
    p.set_defaults(run=run)


#: CLI option -> BenchSettings field, for options given as plain values
OPTION_FIELDS = {
    "precision": "precision", "arch": "archs", "sizes": "sizes", "batch_sizes": "batch_sizes",
    "warmup": "warmup", "repeats": "repeats", "min_time": "min_time", "threads": "threads",
    "e2e_size": "e2e_size", "e2e_model": "e2e_model", "finetune_patches": "finetune_patches",
    "patch_size": "finetune_patch_size", "finetune_batch": "finetune_batch",
    "large_size": "large_size", "tile_size": "tile_size", "overlap": "overlap",
    "tile_batch": "tile_batch",
}


def settings_from_args(args: argparse.Namespace):
    """The :class:`BenchSettings` the parsed options ask for (unset ones keep their defaults)."""
    from ..benchmark import BenchSettings

    overrides = {field: getattr(args, option) for option, field in OPTION_FIELDS.items()
                 if getattr(args, option) is not None}
    overrides["device"] = args.device
    if args.no_references:
        overrides["references"] = []
    elif args.reference:
        overrides["references"] = list(dict.fromkeys(args.reference))
    if args.no_finetune:
        overrides["finetune"] = False
    if args.skip_large:
        overrides["large_size"] = None
    return BenchSettings.quick(**overrides) if args.quick else BenchSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import format_report, run_benchmark, write_json

    settings = settings_from_args(args)
    command = shlex.join(["attnseg", *sys.argv[1:]]) if Path(sys.argv[0]).name == "attnseg" \
        else shlex.join(["attnseg", "bench", *_given(args)])

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    report = run_benchmark(settings, command=command, log=log)
    print(format_report(report))
    if args.json:
        print(f"\nwrote {write_json(report, args.json)}")
    return 0


def _given(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` rebuilt as command-line words (when not run as ``attnseg``)."""
    words: list[str] = []
    for key, value in vars(args).items():
        default = value in (None, False) or (key == "device" and value == "auto")
        if key in ("run", "command") or default:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            if key in ("arch", "reference"):
                for item in value:
                    words += [flag, str(item)]
            else:
                words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return words
