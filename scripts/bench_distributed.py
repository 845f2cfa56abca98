"""Benchmark of distributed prediction (the numbers in docs/distributed.md).

Two measurements, each on LocalClusters of worker processes with one Dask
thread and one PyTorch thread each (``attnseg predict --workers N``):

``files``: N images of SIZE² (the shipped nuclei sample tiled and shifted, uint8)
predicted with ``predict_files`` on 1, then 2, … workers. Each cluster is
started and every worker loads the model *before* the clock starts (start-up
is reported apart), so the times compare the prediction itself; the speed-up
is the 1-worker time over the N-worker time, measured in one run. ``--baseline``
also times the same work in N plain processes without Dask right after each
run: on a shared machine, that ratio is what the hardware gave at that moment.

``blockwise``: one SIZE² uint16 image (the nuclei sample tiled) written to a
zarr store chunk by chunk, then predicted block by block into a zarr output
with ``predict_blockwise``. Reported: wall time, and the peak resident memory
(``getrusage`` max RSS) of every worker process after model loading and at
the end, next to the image's own size — memory stays bounded by the block.

The load average (``/proc/loadavg``) is printed before and after each run:
timings on a shared machine are only comparable within one run.

    python scripts/bench_distributed.py files --images 32 --size 512 --workers 1 2
    python scripts/bench_distributed.py blockwise --size 8192 --workers 2 --chunk 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
import zarr

from napari_attnseg.data.io import read_image
from napari_attnseg.inference import InferenceSettings
from napari_attnseg.inference.blockwise import predict_blockwise
from napari_attnseg.inference.distributed import (
    ModelRef,
    cached_model,
    limit_threads,
    local_client,
    predict_files,
)

SAMPLE = Path(__file__).resolve().parents[1] / "src/napari_attnseg/samples/nuclei.tif"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def texture(height: int, width: int, top: int = 0, left: int = 0, shift: int = 0) -> np.ndarray:
    """The nuclei sample tiled over ``[top, top+height) × [left, left+width)`` (uint8)."""
    sample = read_image(SAMPLE)
    sample = sample if sample.ndim == 2 else sample[..., 0]
    sh, sw = sample.shape
    rows = (np.arange(top, top + height) + shift) % sh
    cols = (np.arange(left, left + width) + 3 * shift) % sw
    return sample[np.ix_(rows, cols)]


def warm(ref: ModelRef, threads: int) -> int:
    """Run in each worker: load the model (kept in the worker's cache) and set threads."""
    limit_threads(threads)
    cached_model(ref, torch.device("cpu"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


_POOL_MODEL = {}


def _pool_start(ref: ModelRef) -> None:
    torch.set_num_threads(1)
    _POOL_MODEL["model"] = cached_model(ref, torch.device("cpu"))


def _pool_predict(path: str) -> int:
    from napari_attnseg.inference import Predictor

    prediction = Predictor(device="cpu").predict(_POOL_MODEL["model"], read_image(path))
    return int(prediction.labels.sum())


def plain_processes(ref: ModelRef, files: list[Path], n: int) -> float:
    """The same work in ``n`` plain processes without Dask: this machine's speed-up right now."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(n, initializer=_pool_start, initargs=(ref,)) as pool:
        pool.map(_pool_predict, [str(files[0])] * n)  # start-up and model load off the clock
        began = time.perf_counter()
        pool.map(_pool_predict, [str(f) for f in files], chunksize=1)
        return time.perf_counter() - began


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def bench_files(args, ref: ModelRef, settings: InferenceSettings, work: Path) -> dict:
    folder = work / "images"
    folder.mkdir()
    for i in range(args.images):
        tifffile.imwrite(folder / f"img{i:03d}.tif", texture(args.size, args.size, shift=17 * i))
    files = sorted(folder.glob("*.tif"))
    rows = []
    for n in args.workers:
        print(f"load average before {n} worker(s): {loadavg()}", flush=True)
        started = time.perf_counter()
        with local_client(n, threads_per_worker=1, dashboard_address=None) as client:
            client.run(warm, ref, 1)
            startup = time.perf_counter() - started
            began = time.perf_counter()
            result = predict_files(
                ref, files, work / f"out{n}", settings, client=client, torch_threads=1
            )
            seconds = time.perf_counter() - began
        assert len(result.outputs) == len(files)
        row = {
            "workers": n,
            "seconds": round(seconds, 2),
            "images_per_s": round(len(files) / seconds, 3),
            "startup_s": round(startup, 1),
            "loadavg_after": loadavg(),
        }
        if args.baseline:
            row["plain_processes_seconds"] = round(plain_processes(ref, files, n), 2)
            row["loadavg_after_plain"] = loadavg()
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
        if args.baseline:
            plain = rows[0]["plain_processes_seconds"] / row["plain_processes_seconds"]
            row["plain_processes_speedup"] = round(plain, 2)
    return {"images": len(files), "size": args.size, "runs": rows}


def bench_blockwise(args, ref: ModelRef, settings: InferenceSettings, work: Path) -> dict:
    size, chunk = args.size, args.chunk
    source = zarr.open_array(
        str(work / "big.zarr"),
        mode="w",
        shape=(size, size),
        chunks=(1024, 1024),
        dtype="uint16",
        zarr_format=2,
    )
    for top in range(0, size, 1024):  # written piece by piece: the image never sits in memory
        for left in range(0, size, 1024):
            h, w = min(1024, size - top), min(1024, size - left)
            source[top : top + h, left : left + w] = (
                texture(h, w, top, left).astype(np.uint16) * 200
            )
    n = args.workers[-1]
    print(f"load average before: {loadavg()}", flush=True)
    with local_client(
        n, threads_per_worker=1, memory_limit=args.memory_limit, dashboard_address=None
    ) as client:
        after_load = client.run(warm, ref, 1)
        began = time.perf_counter()
        predict_blockwise(
            ref,
            work / "big.zarr",
            work / "out.zarr",
            settings,
            chunk=chunk,
            client=client,
            torch_threads=1,
        )
        seconds = time.perf_counter() - began
        peaks = client.run(peak_mb)
    done = zarr.open_group(str(work / "out.zarr"), mode="r")["done"][...]
    assert done.all()
    return {
        "size": size,
        "chunk": chunk,
        "blocks": int(done.size),
        "workers": n,
        "seconds": round(seconds, 1),
        "megapixels_per_s": round(size * size / 1e6 / seconds, 3),
        "image_mb_uint16": round(size * size * 2 / 2**20),
        "worker_peak_rss_mb_after_model_load": sorted(after_load.values()),
        "worker_peak_rss_mb": sorted(peaks.values()),
        "client_peak_rss_mb": peak_mb(),
        "loadavg_after": loadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["files", "blockwise"])
    parser.add_argument("--model", default="focal_attention_unet.nuclei")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="files: also time the same work in plain processes without Dask (the machine's "
        "own speed-up at that moment, to tell Dask's overhead from other load)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    ref = ModelRef.resolve(args.model)
    settings = InferenceSettings(device="cpu")  # tile 512, overlap 0.25, precision auto
    with tempfile.TemporaryDirectory() as tmp:
        bench = bench_files if args.what == "files" else bench_blockwise
        result = {
            "what": args.what,
            "model": args.model,
            "torch": torch.__version__,
            "loadavg_before": loadavg(),
            **bench(args, ref, settings, Path(tmp)),
        }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
