"""``attnseg predict`` on Dask: ``--workers N``, ``--scheduler``, and block-wise zarr outputs.

``cli/predict.py`` adds these options with :func:`add_distributed_options` and
hands over to :func:`run_distributed` when :func:`wants_distributed` says so;
without any of them (and no zarr input) ``attnseg predict`` runs in one
process as before and Dask is never imported. The engine lives in
:mod:`napari_attnseg.inference.distributed` (one task per file) and
:mod:`napari_attnseg.inference.blockwise` (one large image, block by block).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.io import IMAGE_SUFFIXES
from ..data.lazy import is_lazy_readable, is_zarr
from ._common import (
    ROI_WORDS,
    ProgressBar,
    ignored_stitch,
    inference_settings,
    refuse_overwrite,
    refuse_shared_stems,
    wants_instances,
)

DISTRIBUTED_HELP = """\
Scale out (Dask). With --workers N the inputs are predicted on a local Dask cluster
of N worker processes; with --scheduler/--scheduler-file on a running cluster (the
workers must see the model, inputs and output folder at the same paths). Zarr /
OME-Zarr inputs, and TIFFs with --blockwise, are predicted block by block into
OUT/<name>.zarr (arrays labels, probabilities, done). Every run resumes: finished
files and blocks are skipped. Needs: pip install 'napari-attnseg[distributed]'."""


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale out (Dask)", DISTRIBUTED_HELP)
    g.add_argument(
        "--workers", type=int, metavar="N", help="local Dask cluster of N worker processes"
    )
    g.add_argument(
        "--threads-per-worker", type=int, default=1, metavar="N", help="Dask threads per worker"
    )
    g.add_argument(
        "--torch-threads",
        type=int,
        metavar="N",
        help="PyTorch threads per worker (default: 1 on a local cluster, unchanged on another)",
    )
    g.add_argument(
        "--memory-limit",
        default="auto",
        metavar="SIZE",
        help="memory limit per local worker, e.g. 4GB (default: RAM / workers)",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786"
    )
    g.add_argument("--scheduler-file", metavar="FILE", help="a running Dask scheduler's file")
    g.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the scheduler",
    )
    g.add_argument(
        "--dashboard-address",
        default=":8787",
        metavar="ADDR",
        help="dashboard of the local cluster (a free port is chosen if taken)",
    )
    g.add_argument(
        "--blockwise",
        action="store_true",
        help="predict TIFF inputs block by block into OUT/<name>.zarr (zarr inputs always are)",
    )
    g.add_argument(
        "--chunk",
        type=int,
        default=2048,
        metavar="PX",
        help="block edge for block-wise prediction (also the zarr chunk)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace block-wise outputs made with another model or settings",
    )


def wants_distributed(args: argparse.Namespace) -> bool:
    """Whether the arguments ask for Dask: a cluster option, --blockwise or a zarr input."""
    return bool(
        getattr(args, "workers", None) is not None
        or getattr(args, "scheduler", None)
        or getattr(args, "scheduler_file", None)
        or getattr(args, "blockwise", False)
        or any(is_zarr(item) for item in getattr(args, "inputs", []))
    )


def refuse_single_process_options(args: argparse.Namespace) -> None:
    """Options only the single-process path has: named, never silently dropped."""
    missing = [flag for flag, given in (
        ("--table", getattr(args, "table", False)),
        ("--overlay", getattr(args, "overlay", False)),
        ("--roi FILE|DIR", getattr(args, "roi", "auto") not in ROI_WORDS),
    ) if given]  # fmt: skip
    if missing:
        raise ValueError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not available with "
            "Dask (--workers, --scheduler, --blockwise or zarr inputs); run without "
            f"{'it' if len(missing) == 1 else 'them'} or predict in one process"
        )


def split_inputs(inputs: list[str], blockwise: bool) -> tuple[list[Path], list[Path]]:
    """``(files predicted whole, images predicted block by block)`` from files and folders."""
    files: list[Path] = []
    blocks: list[Path] = []
    for item in inputs:
        path = Path(item)
        if is_zarr(path):
            blocks.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            for p in found:
                (blocks if blockwise and is_lazy_readable(p) else files).append(p)
        elif path.exists():
            (blocks if blockwise and is_lazy_readable(path) else files).append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not files and not blocks:
        raise ValueError("no input images found")
    return files, blocks


def run_distributed(args: argparse.Namespace) -> int:
    """``attnseg predict`` with Dask (see the module docstring)."""
    from contextlib import nullcontext

    from ..inference.blockwise import predict_blockwise
    from ..inference.distributed import (
        DASK_PROGRESS,
        ModelRef,
        connect,
        local_client,
        predict_files,
    )

    if args.workers is not None and (args.scheduler or args.scheduler_file):
        raise ValueError("give either --workers (a local cluster) or --scheduler/--scheduler-file")
    if args.scheduler and args.scheduler_file:
        raise ValueError("give either --scheduler or --scheduler-file, not both")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    refuse_single_process_options(args)
    note = ignored_stitch(args)
    if note:
        print(f"note: {note}", file=sys.stderr)
    files, blocks = split_inputs(args.inputs, args.blockwise)
    if blocks and wants_instances(args):
        raise ValueError(
            "--instances needs whole images: block-wise prediction (zarr inputs, --blockwise) "
            "writes class labels; drop --instances or predict those images without Dask"
        )
    out = Path(args.out)
    # the single-process path's rules: no two outputs share a name, none lands on an input
    refuse_shared_stems([*files, *blocks])
    outputs = [out / f"{p.stem}.tif" for p in files] + [out / f"{_name(p)}.zarr" for p in blocks]
    if args.probabilities:
        outputs += [out / "probabilities" / f"{p.stem}.tif" for p in files]
    refuse_overwrite(outputs, [*files, *blocks])
    settings = inference_settings(args)  # --roi FILE|DIR was refused above
    model = ModelRef.resolve(args.model)
    torch_threads = args.torch_threads
    if args.workers is not None:
        torch_threads = torch_threads or 1
        cluster = local_client(
            args.workers,
            threads_per_worker=args.threads_per_worker,
            memory_limit=args.memory_limit,
            dashboard_address=args.dashboard_address,
        )
    elif args.scheduler or args.scheduler_file:
        cluster = connect(
            args.scheduler, scheduler_file=args.scheduler_file, timeout=args.connect_timeout
        )
    else:
        cluster = nullcontext(None)  # zarr / --blockwise inputs in this process
    notes: list[str] = []
    with cluster as client:
        dask_bar = DASK_PROGRESS if client is not None and not args.quiet else None
        if client is not None and not args.quiet:
            workers = len(client.scheduler_info().get("workers", {}))
            print(f"Dask cluster: {client.scheduler.address} ({workers} workers)")
            print(f"dashboard: {client.dashboard_link}")
        if files:
            out.mkdir(parents=True, exist_ok=True)
            with _progress(args, client, "files", "file") as bar:
                result = predict_files(
                    model,
                    files,
                    out,
                    settings,
                    probabilities=args.probabilities,
                    channel_axis=args.channel_axis,
                    client=client,
                    torch_threads=torch_threads,
                    progress=bar or dask_bar,
                )
            notes += result.messages
            if not args.quiet:
                for path in result.skipped:
                    print(f"{path}: already done (skipped)")
                print(f"{len(result.outputs)} mask(s) written to {out}")
        for path in blocks:
            target = out / f"{_name(path)}.zarr"
            with _progress(args, client, path.name, "block") as bar:
                predict_blockwise(
                    model,
                    path,
                    target,
                    settings,
                    chunk=args.chunk,
                    channel_axis=args.channel_axis,
                    probabilities=args.probabilities,
                    overwrite=args.overwrite,
                    client=client,
                    torch_threads=torch_threads,
                    progress=bar or dask_bar,
                    on_message=lambda note, name=path.name: notes.append(f"{name}: {note}"),
                )
            if not args.quiet:
                print(f"{path} -> {target}")
    for message in dict.fromkeys(notes):
        print(f"note: {message}")
    sys.stdout.flush()
    return 0


def _name(path: Path) -> str:
    from ..data.lazy import open_lazy

    return open_lazy(path).name


def _progress(args: argparse.Namespace, client, desc: str, unit: str):
    """A tqdm bar in this process; None (Dask's own bar) on a cluster; nothing when quiet."""
    from contextlib import nullcontext

    if args.quiet or client is not None:
        return nullcontext(None)
    return ProgressBar(desc, unit=unit)
