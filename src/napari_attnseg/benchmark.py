"""Speed and memory of the engine, measured in one run beside MONAI reference networks.

``run_benchmark(BenchSettings(...))`` measures, on one device and in one process:

1. **inference throughput** (ms/image, images/s, peak memory) of every
   architecture at its *compact default* size (:data:`COMPACT_DEFAULTS`, the
   widths the zoo ships) and of MONAI's ``AttentionUnet`` and ``BasicUNet`` at
   the same stage widths, for each input size and batch size — eval mode,
   ``torch.inference_mode``, fp16 autocast on CUDA, warm-up then the median of
   timed repeats;
2. the **end-to-end** time of one RGB image through :class:`Predictor`
   (normalisation, prediction, labels) for the default compact model;
3. one **fine-tune round**: a fixed small workload through :class:`Trainer`
   (one epoch of 16 random 128² patches of synthetic data, batch 4) per architecture;
4. **sliding-window** inference on a large synthetic image (4096² by default)
   with the Predictor's tiling, with its peak memory growth.

Everything is measured in the same run so that the ratios (ours / MONAI) are
meaningful even on a noisy, shared machine, where absolute figures drift.

Memory is the peak *growth* during the measured block — activations and
workspace, beyond the weights and input already allocated. On CUDA it is
``torch.cuda.max_memory_allocated`` minus the allocation at the block's start.
On the CPU PyTorch's allocations are invisible to ``tracemalloc``, so the
process's resident set size is sampled every few milliseconds from a thread
(corrected upwards by ``getrusage``'s max RSS when that rose during the block),
after handing freed heap back to the OS so that reused memory is not missed.

This module never imports napari or Qt; ``attnseg bench`` is a thin wrapper.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

#: architecture -> the options of its compact default (the size the zoo ships);
#: architectures not listed here are benchmarked at their registered defaults
COMPACT_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"width": 16},
    "use_net": {"width": 16},
    "attention_unet": {"width": 16},
    "focal_use_net": {"width": 16},
    "focal_attention_unet": {"width": 16},
    "focusnet": {"width_multiplier": 0.25},
    "afnet": {"width": 16},
    "denseunet": {},
}
#: registered names that are paper-size presets of another architecture: left out unless asked for
PAPER_SIZE_PRESETS = {"denseunet161": "denseunet"}
#: the model the end-to-end and sliding-window measurements use (fresh weights)
DEFAULT_MODEL = "focal_use_net"
MONAI_ATTENTION_UNET = "monai.AttentionUnet"
MONAI_BASIC_UNET = "monai.BasicUNet"
MONAI_REFERENCES = (MONAI_ATTENTION_UNET, MONAI_BASIC_UNET)
#: (ours, MONAI reference) pairs whose per-image time ratio is reported
RATIO_PAIRS = (("attention_unet", MONAI_ATTENTION_UNET), ("unet", MONAI_BASIC_UNET))

# targets of issue 3
E2E_TARGET_S = 1.5
GPU_THROUGHPUT_TARGET = 200.0
ATTENTION_RATIO_TARGET = 1.5
LARGE_MEMORY_TARGET_MB = 2048.0

Log = Callable[[str], None]


@dataclass
class BenchSettings:
    """What to measure; :meth:`quick` gives a smoke-test sized variant."""

    device: str = "auto"
    #: auto (fp16 autocast on CUDA, fp32 elsewhere), fp32, fp16, bf16
    precision: str = "auto"
    #: architectures; None = every registered one but the paper-size presets
    archs: list[str] | None = None
    #: MONAI reference networks (names from MONAI_REFERENCES)
    references: list[str] = field(default_factory=lambda: list(MONAI_REFERENCES))
    sizes: list[int] = field(default_factory=lambda: [256, 512])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    in_channels: int = 3
    warmup: int = 1
    #: at least this many timed repeats ...
    repeats: int = 3
    #: ... and more (up to max_repeats) until this many seconds have been timed
    min_time: float = 1.0
    max_repeats: int = 200
    #: torch CPU threads (None: PyTorch's default)
    threads: int | None = None
    #: end-to-end image edge; None skips it
    e2e_size: int | None = 512
    #: a zoo/user model or path for the end-to-end and sliding-window runs (None: DEFAULT_MODEL)
    e2e_model: str | None = None
    finetune: bool = True
    finetune_patches: int = 16
    finetune_patch_size: int = 128
    finetune_batch: int = 4
    #: sliding-window image edge; None skips it
    large_size: int | None = 4096
    tile_size: int = 512
    overlap: float = 0.25
    tile_batch: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for label, values in (("sizes", self.sizes), ("batch_sizes", self.batch_sizes)):
            if not values or any(int(v) < 1 for v in values):
                raise ValueError(
                    f"{label} must be a non-empty list of positive integers, got {values}"
                )
        unknown = sorted(set(self.references) - set(MONAI_REFERENCES))
        if unknown:
            raise ValueError(
                f"unknown reference network(s) {unknown}; choose from {MONAI_REFERENCES}"
            )
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}"
            )
        for label, value in (("e2e_size", self.e2e_size), ("large_size", self.large_size)):
            if value is not None and value < 16:
                raise ValueError(f"{label} must be >= 16 pixels or None, got {value}")
        if self.finetune_patches < 1 or self.finetune_batch < 1 or self.finetune_patch_size < 16:
            raise ValueError("finetune_patches and finetune_batch must be >= 1, "
                             f"finetune_patch_size >= 16; got {self.finetune_patches}, "
                             f"{self.finetune_batch}, {self.finetune_patch_size}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchSettings:
        """A smoke run: small sizes, one batch size, few repeats, a 1024² sliding window."""
        small = dict(
            sizes=[128], batch_sizes=[1], repeats=2, min_time=0.0, e2e_size=256,
            finetune_patches=8, finetune_patch_size=64, large_size=1024, tile_size=256,
        )
        return cls(**{**small, **overrides})


# -- models --------------------------------------------------------------------
def default_architectures() -> list[str]:
    """Every registered architecture except the paper-size presets."""
    from .models import list_models

    return [name for name in list_models() if name not in PAPER_SIZE_PRESETS]


def compact_options(arch: str) -> dict[str, Any]:
    return dict(COMPACT_DEFAULTS.get(arch, {}))


def reference_width(arch: str) -> int:
    """First-stage width of our compact U-Net variant that a MONAI reference is matched to."""
    return int(COMPACT_DEFAULTS.get(arch, {}).get("width", 16))


def build_network(name: str, in_channels: int = 3) -> tuple[nn.Module, dict[str, Any]]:
    """``(network, how it was built)`` for an architecture name or a MONAI reference name.

    MONAI references get the stage widths of our compact U-Net (w, 2w, 4w, 8w, 16w),
    so that the comparison is at equal width.
    """
    if name == MONAI_ATTENTION_UNET:
        from monai.networks.nets import AttentionUnet

        w = reference_width("attention_unet")
        options = dict(spatial_dims=2, in_channels=in_channels, out_channels=1,
                       channels=[w, 2 * w, 4 * w, 8 * w, 16 * w], strides=[2, 2, 2, 2])
        return AttentionUnet(**options), options
    if name == MONAI_BASIC_UNET:
        from monai.networks.nets import BasicUNet

        w = reference_width("unet")
        options = dict(spatial_dims=2, in_channels=in_channels, out_channels=1,
                       features=[w, 2 * w, 4 * w, 8 * w, 16 * w, w])
        return BasicUNet(**options), options
    from .models import create_model

    options = compact_options(name)
    return create_model(name, in_channels=in_channels, n_classes=1, **options), options


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_gflops(model: nn.Module, in_channels: int, size: int, device: torch.device) -> float:
    """Forward GFLOPs for one image (PyTorch's counter: a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, in_channels, size, size, device=device))
    return counter.get_total_flops() / 1e9


# -- measuring -------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_repeats(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    warmup: int = 1,
    repeats: int = 3,
    min_time: float = 0.0,
    max_repeats: int = 200,
) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones.

    At least ``repeats`` calls, more until ``min_time`` seconds were timed
    (at most ``max_repeats``), so fast GPU kernels get enough samples.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _rss_reader() -> Callable[[], int] | None:
    """A cheap 'current resident set size in bytes' function, if this platform has one."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def from_proc() -> int:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * page

    try:
        from_proc()
        return from_proc
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    process = psutil.Process()
    return lambda: process.memory_info().rss


def _release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc), so RSS growth is not hidden by reuse."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _max_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


class MemoryMeter:
    """Peak memory of a block: CUDA allocator peak and/or host RSS growth.

    ``with MemoryMeter(device) as meter: ...`` then ``meter.device_peak_mb``
    (CUDA: max allocated minus allocated at the start; elsewhere: host RSS
    growth) and ``meter.host_growth_mb`` (None when host sampling was off or
    impossible).
    """

    def __init__(self, device: torch.device, *, host: bool = True, interval: float = 0.005) -> None:
        self.device = device
        self.host = host
        self.interval = interval
        self.read_rss = _rss_reader() if host else None
        self.device_peak_mb: float | None = None
        self.host_growth_mb: float | None = None
        self._stop = threading.Event()
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self.read_rss())

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._allocated = torch.cuda.memory_allocated(self.device)
        if self.read_rss is not None:
            gc.collect()  # a steadier baseline
            _release_free_heap()
            self._base = self._peak = self.read_rss()
            self._max_before = _max_rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        if self.read_rss is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self.read_rss())
            max_after = _max_rss_bytes()
            before = self._max_before
            if before is not None and max_after is not None and max_after > before:
                peak = max(peak, max_after)  # a spike between samples set a new lifetime peak
            self.host_growth_mb = max(0, peak - self._base) / 2**20
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) - self._allocated
            self.device_peak_mb = peak / 2**20
        else:
            self.device_peak_mb = self.host_growth_mb


def memory_measure(device: torch.device) -> str:
    if device.type == "cuda":
        return ("peak growth of torch.cuda.max_memory_allocated over the block "
                "(activations + workspace; weights and input excluded), MiB")
    return ("peak growth of the process RSS over the block (sampled every 5 ms; "
            "weights and input excluded), MiB")


# -- synthetic data ----------------------------------------------------------------
def synthetic_image(size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, C) noise image (C = 1 gives (H, W)); content does not affect timing."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def synthetic_samples(n: int, size: int, channels: int, seed: int = 0) -> list:
    """``n`` normalised training samples: bright discs on noise, with their masks."""
    from skimage.draw import disk

    from .data.datasets import Sample

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        mask = np.zeros((size, size), np.int64)
        for _ in range(max(2, size // 32)):
            centre = rng.integers(size // 8, size - size // 8, size=2)
            radius = rng.integers(size // 16 + 2, size // 8 + 3)
            mask[disk(tuple(centre), radius, shape=mask.shape)] = 1
        image = mask[None] * 1.5 + rng.normal(0.0, 1.0, (channels, size, size))
        image = (image - image.mean()) / image.std()
        samples.append(Sample(f"synthetic{i}", image.astype(np.float32), mask))
    return samples


# -- the measurements ------------------------------------------------------------------
def measure_throughput(
    names: list[str], settings: BenchSettings, device: torch.device, dtype: torch.dtype | None,
    log: Log,
) -> list[dict[str, Any]]:
    """One record per (network, size, batch).

    For each (size, batch) the networks are timed *round-robin* — one call of
    each in turn, repeated — so that load from other processes falls on all
    of them alike and the ours/MONAI ratios stay meaningful on a busy machine.
    """
    networks, infos = {}, {}
    gflops_size = min(settings.sizes)
    for name in names:
        torch.manual_seed(settings.seed)
        model, options = build_network(name, settings.in_channels)
        networks[name] = model.to(device).eval()
        infos[name] = {
            "model": name,
            "source": "monai" if name in MONAI_REFERENCES else "napari_attnseg",
            "options": options,
            "params": parameter_count(model),
            f"gflops_{gflops_size}": round(
                forward_gflops(model, settings.in_channels, gflops_size, device), 3
            ),
        }
    records = []
    for size in settings.sizes:
        for batch in settings.batch_sizes:
            log(f"throughput {size}x{size} batch {batch}: {', '.join(networks)}")
            x = torch.randn(batch, settings.in_channels, size, size, device=device)
            results = _round_robin(networks, x, settings, device, dtype)
            for name, result in results.items():
                record = {**infos[name], "size": size, "batch": batch}
                if isinstance(result, str):
                    record["error"] = result
                    log(f"  {name} failed: {result}")
                else:
                    times, peak = result
                    median = statistics.median(times)
                    record.update(
                        ms_per_image=1000.0 * median / batch, images_per_s=batch / median,
                        peak_memory_mb=peak, repeats=len(times),
                        times_s=[round(t, 6) for t in times],
                    )
                records.append(record)
            del x
    networks.clear()
    gc.collect()
    return records


def _round_robin(
    networks: dict[str, nn.Module], x: torch.Tensor, settings: BenchSettings,
    device: torch.device, dtype: torch.dtype | None,
) -> dict[str, tuple[list[float], float | None] | str]:
    """``{name: (seconds of each timed call, peak memory MiB) or an error message}``."""

    @torch.inference_mode()
    def forward(model: nn.Module) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    def measured(model: nn.Module) -> tuple[float, float | None]:
        # a sampling thread would contend for the GIL with GPU kernel launches: CPU only
        with MemoryMeter(device, host=device.type == "cpu") as meter:
            start = time.perf_counter()
            forward(model)
            synchronize(device)
            seconds = time.perf_counter() - start
        return seconds, meter.device_peak_mb

    errors: dict[str, str] = {}
    for name, model in networks.items():
        try:
            for _ in range(settings.warmup):
                forward(model)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            errors[name] = str(exc)[:300]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    live = {n: m for n, m in networks.items() if n not in errors}
    times: dict[str, list[float]] = {n: [] for n in live}
    peaks: dict[str, list[float]] = {n: [] for n in live}
    rounds = 0
    while live and (rounds < settings.repeats or (
            min(sum(t) for t in times.values()) < settings.min_time
            and rounds < settings.max_repeats)):
        for name, model in list(live.items()):
            try:
                seconds, peak = measured(model)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                errors[name] = str(exc)[:300]
                del live[name], times[name]
                continue
            times[name].append(seconds)
            if peak is not None:
                peaks[name].append(peak)
        rounds += 1
    results: dict[str, tuple[list[float], float | None] | str] = dict(errors)
    for name, t in times.items():
        results[name] = (t, max(peaks[name]) if peaks[name] else None)
    return {name: results[name] for name in networks}


def throughput_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-image time of ours / MONAI reference for each :data:`RATIO_PAIRS` pair and setting."""
    index = {(r["model"], r["size"], r["batch"]): r for r in records if "ms_per_image" in r}
    ratios = []
    for ours, reference in RATIO_PAIRS:
        for (model, size, batch), record in index.items():
            other = index.get((reference, size, batch))
            if model != ours or other is None:
                continue
            ratios.append({
                "ours": ours, "reference": reference, "size": size, "batch": batch,
                "ours_ms_per_image": record["ms_per_image"],
                "reference_ms_per_image": other["ms_per_image"],
                "ratio": record["ms_per_image"] / other["ms_per_image"],
            })
    return ratios


def _e2e_model(settings: BenchSettings):
    if settings.e2e_model:
        from .zoo import load

        return load(settings.e2e_model), settings.e2e_model
    torch.manual_seed(settings.seed)
    model, _ = build_network(DEFAULT_MODEL, settings.in_channels)
    return model, f"{DEFAULT_MODEL} {compact_options(DEFAULT_MODEL)} (fresh weights)"


def measure_end_to_end(settings: BenchSettings, device: torch.device, log: Log) -> dict[str, Any]:
    """Seconds for one RGB image through ``Predictor.predict`` (normalise, predict, label)."""
    from .inference import Predictor

    model, label = _e2e_model(settings)
    size = settings.e2e_size
    predictor = Predictor(model, device=str(device), precision=settings.precision,
                          tile_size=max(size, settings.tile_size), batch_size=1)
    image = synthetic_image(size, 3, settings.seed)
    log(f"end to end {label} {size}x{size} RGB")
    times = time_repeats(lambda: predictor.predict(image), device, warmup=settings.warmup,
                         repeats=settings.repeats, min_time=settings.min_time,
                         max_repeats=settings.max_repeats)
    return {
        "model": label, "image": [size, size, 3], "dtype": "uint8",
        "seconds": statistics.median(times), "repeats": len(times),
        "times_s": [round(t, 6) for t in times],
    }


def measure_sliding_window(
    settings: BenchSettings, device: torch.device, log: Log
) -> dict[str, Any]:
    """One tiled prediction of a large synthetic RGB image, with peak memory growth."""
    from .inference import Predictor

    model, label = _e2e_model(settings)
    size, tile = settings.large_size, settings.tile_size
    predictor = Predictor(model, device=str(device), precision=settings.precision, tile_size=tile,
                          overlap=settings.overlap, batch_size=settings.tile_batch)
    warm = synthetic_image(tile, 3, settings.seed + 1)
    predictor.predict(warm)  # one-off start-up costs (thread pools, kernels) stay out
    image = synthetic_image(size, 3, settings.seed)
    step = max(1, int(tile * (1.0 - settings.overlap)))
    per_axis = 1 if size <= tile else math.ceil((size - tile) / step) + 1
    log(f"sliding window {size}x{size} RGB, {per_axis ** 2} tiles of {tile}")
    with MemoryMeter(device) as meter:
        start = time.perf_counter()
        prediction = predictor.predict(image)
        seconds = time.perf_counter() - start
    if prediction.labels.shape != (size, size):
        raise RuntimeError(
            f"sliding window returned labels {prediction.labels.shape}, not {size}²"
        )
    return {
        "model": label, "image": [size, size, 3], "tile_size": tile, "overlap": settings.overlap,
        "tile_batch": settings.tile_batch, "tiles": per_axis**2, "seconds": seconds,
        "megapixels_per_s": size * size / 1e6 / seconds,
        "peak_memory_mb": meter.device_peak_mb,
        "host_rss_growth_mb": meter.host_growth_mb,
        "input_mb": image.nbytes / 2**20,
    }


def measure_finetune(
    arch: str, settings: BenchSettings, device: torch.device, samples: list, log: Log
) -> dict[str, Any]:
    """Seconds of one fine-tune round (Trainer set-up + one epoch) for ``arch``."""
    from .training import TrainConfig, Trainer

    torch.manual_seed(settings.seed)
    model, options = build_network(arch, settings.in_channels)
    config = TrainConfig(
        epochs=1, batch_size=settings.finetune_batch, patch_size=settings.finetune_patch_size,
        samples_per_epoch=settings.finetune_patches, schedule="none", early_stopping=None,
        device=str(device), amp=settings.precision != "fp32", seed=settings.seed,
    )
    fresh = [replace(s, dpt=None) for s in samples]  # distance maps are part of the round
    log(f"fine-tune round {arch}")
    start = time.perf_counter()
    trainer = Trainer(model, config, fresh, [])
    history = trainer.fit()
    synchronize(device)
    seconds = time.perf_counter() - start
    epoch = history.epochs[0]
    return {
        "model": arch, "options": options, "seconds": seconds, "epoch_seconds": epoch["seconds"],
        "steps": trainer.steps_per_epoch,
        "seconds_per_step": epoch["seconds"] / trainer.steps_per_epoch,
        "train_loss": epoch["train_loss"], "loss": config.loss,
    }


# -- the run ----------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    import monai

    from . import __version__

    info: dict[str, Any] = {
        "device": str(device),
        "device_name": _cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "napari_attnseg": __version__,
        "memory_measure": memory_measure(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_benchmark(
    settings: BenchSettings, *, command: str = "", log: Log | None = None
) -> dict[str, Any]:
    """Run every measurement ``settings`` asks for; returns the JSON-ready report."""
    from .inference import autocast_dtype, resolve_device

    log = log or (lambda message: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    dtype = autocast_dtype(device, settings.precision)
    archs = list(settings.archs) if settings.archs else default_architectures()
    from .models import list_models

    unknown = sorted(set(archs) - set(list_models()))
    if unknown:
        raise ValueError(
            f"unknown architecture(s) {unknown}; available: {', '.join(list_models())}"
        )
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    started = time.time()
    report: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "machine": machine_info(device),
        "precision": "fp32" if dtype is None else str(dtype).replace("torch.", ""),
        "cudnn_benchmark": device.type == "cuda",
        "settings": asdict(settings) | {"archs": archs},
        "compact_defaults": {a: compact_options(a) for a in archs},
        "load_average": {"start": load_average()},
    }
    try:
        # first, while the process is small, so its memory growth is not hidden by earlier work
        if settings.large_size:
            report["sliding_window"] = measure_sliding_window(settings, device, log)
        if settings.e2e_size:
            report["end_to_end"] = measure_end_to_end(settings, device, log)
        records = measure_throughput([*archs, *settings.references], settings, device, dtype, log)
        report["throughput"] = records
        report["ratios"] = throughput_ratios(records)
        if settings.finetune:
            samples = synthetic_samples(4, 2 * settings.finetune_patch_size,
                                        settings.in_channels, settings.seed)
            report["finetune"] = [
                measure_finetune(arch, settings, device, samples, log) for arch in archs
            ]
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    report["load_average"]["end"] = load_average()
    report["seconds"] = time.time() - started
    report["targets"] = evaluate_targets(report, device)
    return report


def evaluate_targets(report: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """Issue 3's targets, each marked as applying to this run's device or not."""
    on_cpu, on_gpu = device.type == "cpu", device.type == "cuda"
    targets = []
    e2e = report.get("end_to_end")
    if e2e:
        targets.append({
            "target": f"end to end {e2e['image'][0]}² RGB <= {E2E_TARGET_S} s (2-core CPU, 512²)",
            "value": e2e["seconds"], "limit": E2E_TARGET_S,
            "applies": on_cpu and e2e["image"][0] == 512, "met": e2e["seconds"] <= E2E_TARGET_S,
        })
    largest = max(report["settings"]["batch_sizes"])
    for r in report.get("throughput", []):
        if r["source"] == "napari_attnseg" and r["size"] == 512 and r["batch"] == largest \
                and "images_per_s" in r:
            targets.append({
                "target": f"{r['model']} >= {GPU_THROUGHPUT_TARGET:.0f} images/s at 512², "
                          f"batch {largest} (H100/H200)",
                "value": r["images_per_s"], "limit": GPU_THROUGHPUT_TARGET,
                "applies": on_gpu, "met": r["images_per_s"] >= GPU_THROUGHPUT_TARGET,
            })
    for r in report.get("ratios", []):
        if r["ours"] == "attention_unet":
            targets.append({
                "target": f"attention_unet / {r['reference']} per-image time <= "
                          f"{ATTENTION_RATIO_TARGET} ({r['size']}², batch {r['batch']}; GPU)",
                "value": r["ratio"], "limit": ATTENTION_RATIO_TARGET,
                "applies": on_gpu, "met": r["ratio"] <= ATTENTION_RATIO_TARGET,
            })
    window = report.get("sliding_window")
    if window and window.get("host_rss_growth_mb") is not None:
        targets.append({
            "target": f"{window['image'][0]}² sliding window: process memory growth < "
                      f"{LARGE_MEMORY_TARGET_MB:.0f} MiB (CPU, 4096²)",
            "value": window["host_rss_growth_mb"], "limit": LARGE_MEMORY_TARGET_MB,
            "applies": on_cpu and window["image"][0] >= 4096,
            "met": window["host_rss_growth_mb"] < LARGE_MEMORY_TARGET_MB,
        })
    return targets


# -- the printed report --------------------------------------------------------------------
def busy_note(report: dict[str, Any]) -> str:
    """A warning when other processes loaded the machine during the run."""
    cpus = report["machine"].get("usable_cpus") or report["machine"].get("cpu_count") or 1
    loads = [v[0] for v in report["load_average"].values() if v]
    if not loads or max(loads) < 0.5 * cpus:
        return ""
    return (f"note: 1-min load average up to {max(loads):.1f} on {cpus} CPUs — other processes "
            "compete for the CPU, so absolute times are inflated and noisy; ours/MONAI ratios "
            "(measured round-robin) are the steadier figures")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        # first column left-aligned, numbers right-aligned
        return "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    head = line(header)
    return [head, "-" * len(head), *(line(row) for row in rows)]


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` report."""
    m = report["machine"]
    lines = [
        f"attnseg bench — {m['device']} ({m['device_name']}), precision {report['precision']}, "
        f"torch {m['torch']}, {m['torch_threads']} threads, {m['cpu_count']} CPUs",
        f"load average at start {report['load_average']['start']}, "
        f"at end {report['load_average'].get('end')}; total {report.get('seconds', 0):.0f} s",
        f"memory: {m['memory_measure']}",
    ]
    busy = busy_note(report)
    if busy:
        lines.append(busy)
    lines.append("")
    records = report.get("throughput", [])
    if records:
        gflops_key = next((k for k in records[0] if k.startswith("gflops_")), None)
        rows = []
        for r in records:
            if "error" in r:
                rows.append([r["model"], f"{r['params'] / 1e6:.2f}M", "", f"{r['size']}",
                             f"{r['batch']}", "error", "", ""])
                continue
            rows.append([
                r["model"], f"{r['params'] / 1e6:.2f}M",
                f"{r[gflops_key]:.2f}" if gflops_key else "", f"{r['size']}", f"{r['batch']}",
                f"{r['ms_per_image']:.1f}", f"{r['images_per_s']:.2f}", _mb(r["peak_memory_mb"]),
            ])
        size = gflops_key.split("_")[1] if gflops_key else "?"
        lines.append("Inference throughput (eval, inference_mode, median of timed repeats)")
        lines += _table(["model", "params", f"GFLOPs@{size}²", "size", "batch", "ms/image",
                         "images/s", "peak MiB"], rows)
        lines.append("")
    for r in report.get("ratios", []):
        lines.append(f"{r['ours']} / {r['reference']} per-image time at {r['size']}² batch "
                     f"{r['batch']}: {r['ratio']:.2f}x ({r['ours_ms_per_image']:.1f} / "
                     f"{r['reference_ms_per_image']:.1f} ms)")
    if report.get("ratios"):
        lines.append("")
    e2e = report.get("end_to_end")
    if e2e:
        h, w, _ = e2e["image"]
        lines.append(f"End to end (Predictor: normalise + predict + labels), {h}x{w} RGB uint8, "
                     f"{e2e['model']}: {e2e['seconds']:.3f} s/image (median of {e2e['repeats']})")
    window = report.get("sliding_window")
    if window:
        h, w, _ = window["image"]
        lines.append(
            f"Sliding window {h}x{w} RGB, {window['tiles']} tiles of {window['tile_size']} "
            f"(overlap {window['overlap']}, {window['tile_batch']} per batch): "
            f"{window['seconds']:.1f} s, {window['megapixels_per_s']:.2f} MP/s, peak memory "
            f"{_mb(window['peak_memory_mb'])} MiB, process RSS growth "
            f"{_mb(window['host_rss_growth_mb'])} MiB (input {window['input_mb']:.0f} MiB)"
        )
    if e2e or window:
        lines.append("")
    tunes = report.get("finetune", [])
    if tunes:
        s = report["settings"]
        lines.append(f"Fine-tune round: 1 epoch of {s['finetune_patches']} patches "
                     f"{s['finetune_patch_size']}², batch {s['finetune_batch']}, synthetic data, "
                     f"loss {tunes[0]['loss']}")
        lines += _table(["model", "round s", "epoch s", "s/step"], [
            [t["model"], f"{t['seconds']:.2f}", f"{t['epoch_seconds']:.2f}",
             f"{t['seconds_per_step']:.3f}"] for t in tunes
        ])
        lines.append("")
    if report.get("targets"):
        lines.append("Targets (issue 3)")
        for t in report["targets"]:
            verdict = ("met" if t["met"] else "NOT met") if t["applies"] else \
                f"for reference only on this device ({'would be met' if t['met'] else 'not met'})"
            lines.append(f"  {t['target']}: {t['value']:.3g} — {verdict}")
    return "\n".join(lines)
