"""``attnseg bench``: inference and training speed and memory, beside MONAI references.

In one run on one device: throughput (ms/image, images/s, peak memory) of every
architecture at its compact default size and of MONAI's AttentionUnet and
BasicUNet at equal stage widths, for each --sizes × --batch-sizes and each
execution variant (--variants: fp32, fp32 channels-last, and the precision
`auto` resolves to, by default), all timed round-robin; ours / MONAI ratios;
one training step per architecture and precision (--train-variants); the
end-to-end time of one RGB image through the Predictor; one fine-tune round
per architecture; and the 4096² sliding window (through the Predictor and as
each --window-variants), with its peak memory growth.

Real image (--real-images DIR, its own Markdown section `real`): a 2048² RGB
mosaic of the fluorescence-like DSB2018 images of DIR (file names dsb_*, at
native resolution, pasted row by row in sorted order) and their instance labels
(--real-labels DIR, same file stems; default: the sibling folder labels/),
timed round-robin: the Predictor at its defaults with instance labels through
the task's default model (--real-model, default nuclei: what `attnseg predict
--model nuclei --instances` does), scored by pixel Dice, instance AP@0.5 and
mean AP; MONAI's sliding_window_inference over its AttentionUnet (network
only) on the same image; the Predictor on uniform noise of that size (time,
objects found); and on a 512² crop (target ≤ 0.6 s on 2 idle cores). The
images are research data, never committed: on our machines
runs/data/nuclei_native/val/images and .../labels. Without --real-images the
section is skipped with a note; --no-real turns it off, --only-real measures
it alone.

Variant specs: a precision (auto, fp32, bf16, fp16) then +flags: cl
(channels-last), no_grad (instead of inference_mode), compile (torch.compile),
fuse (conv+batch-norm folding), e.g. "auto+cl" or "fp32+cl+compile".

Prints tables (progress goes to stderr); --json writes the report, --markdown
puts its tables into a page between <!-- bench:SECTION:begin/end --> markers
(docs/benchmarks.md is made so; the real-image tables go to their own section
`real`), and --from-json re-renders a saved report without measuring. The full
run takes ~20–30 min on a 2-core CPU (the real-image section adds several
minutes); --quick is a smoke run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ._common import PRECISIONS, add_device, add_quiet

#: the MONAI reference networks ``--reference`` accepts
REFERENCE_CHOICES = ("monai.AttentionUnet", "monai.BasicUNet")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark inference and fine-tuning", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(p)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="what `auto` in the variants stands for, and the Predictor runs' "
                        "precision (default auto: bf16 where the hardware has it and it is faster,"
                        " else fp32)")
    p.add_argument("--variants", nargs="+", default=None, metavar="SPEC",
                   help="how to run each network for throughput (default: fp32 fp32+cl auto "
                        "auto+cl); the first is the baseline of the ratios")
    p.add_argument("--train-variants", nargs="+", default=None, metavar="SPEC",
                   help="training-step variants (default: fp32 auto)")
    p.add_argument("--train-batch", type=int, default=None, metavar="N",
                   help="training-step batch (default 8)")
    p.add_argument("--train-patch-size", type=int, default=None, metavar="N",
                   help="training-step patch edge (default 128)")
    p.add_argument("--no-train-steps", action="store_true", help="skip the training steps")
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
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end image")
    p.add_argument("--no-ops", action="store_true", help="skip the single-operation timings")
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
    p.add_argument("--window-variants", nargs="*", default=None, metavar="SPEC",
                   help="also run the sliding window through the benchmark's own MONAI call "
                        "as each of these (default: auto+cl; none: skip)")
    p.add_argument("--no-window-predictor", action="store_true",
                   help="skip the sliding window through the Predictor")
    p.add_argument("--real-images", default=None, metavar="DIR",
                   help="folder of RGB nuclei images for the real-image section: a mosaic of "
                        "its fluorescence-like dsb_* images (e.g. "
                        "runs/data/nuclei_native/val/images; never committed)")
    p.add_argument("--real-labels", default=None, metavar="DIR",
                   help="their instance labels (uint16 ids, same file stems; default: the "
                        "sibling folder labels/ of --real-images)")
    p.add_argument("--real-size", type=int, default=None, metavar="N",
                   help="real-image mosaic edge (default 2048)")
    p.add_argument("--real-crop", type=int, default=None, metavar="N",
                   help="edge of the crop of the mosaic timed on its own (default 512)")
    p.add_argument("--real-repeats", type=int, default=None, metavar="N",
                   help="round-robin rounds of the real-image section (default 3)")
    p.add_argument("--real-model", default=None, metavar="MODEL",
                   help="model of the real-image section (default nuclei: the task's default "
                        "zoo model, as `attnseg predict --model nuclei` resolves it)")
    p.add_argument("--no-real", action="store_true",
                   help="skip the real-image section even with --real-images")
    p.add_argument("--only-real", action="store_true",
                   help="measure the real-image section alone (needs --real-images); with "
                        "--markdown it fills only the page's `real` section")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 128² batch 1, 2 repeats, 256² end to end, 1024² sliding "
                        "window, 1024² real mosaic timed once (explicit options still win)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    p.add_argument("--markdown", default=None, metavar="PAGE",
                   help="write the tables into this Markdown page (between its markers)")
    p.add_argument("--section", default="main", metavar="NAME",
                   help="which marked section of --markdown to fill (default main)")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="measure nothing: render this saved report (tables, --markdown)")
    add_quiet(p)
    p.set_defaults(run=run)


#: CLI option -> BenchSettings field, for options given as plain values
OPTION_FIELDS = {
    "precision": "precision", "arch": "archs", "sizes": "sizes", "batch_sizes": "batch_sizes",
    "warmup": "warmup", "repeats": "repeats", "min_time": "min_time", "threads": "threads",
    "e2e_size": "e2e_size", "e2e_model": "e2e_model", "finetune_patches": "finetune_patches",
    "patch_size": "finetune_patch_size", "finetune_batch": "finetune_batch",
    "large_size": "large_size", "tile_size": "tile_size", "overlap": "overlap",
    "tile_batch": "tile_batch", "variants": "variants", "train_variants": "train_variants",
    "train_batch": "train_batch", "train_patch_size": "train_patch_size",
    "window_variants": "window_variants", "real_images": "real_images",
    "real_labels": "real_labels", "real_size": "real_size", "real_crop": "real_crop",
    "real_repeats": "real_repeats", "real_model": "real_model",
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
    if args.no_ops:
        overrides["ops"] = False
    if args.no_e2e:
        overrides["e2e_size"] = None
    if args.no_train_steps:
        overrides["train_steps"] = False
    if args.no_window_predictor:
        overrides["window_predictor"] = False
    if args.no_real:
        if args.only_real:
            raise ValueError("--only-real and --no-real contradict each other; give one")
        overrides["real"] = False
    if args.only_real:
        if not args.real_images:
            raise ValueError("--only-real needs --real-images DIR (the folder of the images "
                             "to tile into the mosaic)")
        overrides.update(throughput=False, ops=False, train_steps=False, finetune=False,
                         e2e_size=None, large_size=None)
    return BenchSettings.quick(**overrides) if args.quick else BenchSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import format_report, read_json, run_benchmark, write_json, write_markdown

    if args.from_json:
        report = read_json(args.from_json)
        print(format_report(report))
        if args.markdown:
            print(f"\nwrote {write_markdown(report, args.markdown, args.section)}")
        return 0
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
    if args.markdown:
        print(f"wrote {write_markdown(report, args.markdown, args.section)}")
    return 0


def _given(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` rebuilt as command-line words (when not run as ``attnseg``)."""
    words: list[str] = []
    for key, value in vars(args).items():
        default = value in (None, False) or (key == "device" and value == "auto") or (
            key == "section" and value == "main")
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
