"""Timing loops and memory sampling: the instruments every measurement uses.

Memory is the peak *growth* during the measured block — activations and
workspace, beyond the weights and input already allocated. On CUDA it is
``torch.cuda.max_memory_allocated`` minus the allocation at the block's start.
On the CPU PyTorch's allocations are invisible to ``tracemalloc``, so the
process's resident set size is sampled every few milliseconds from a thread
(corrected upwards by ``getrusage``'s max RSS when that rose during the block),
after handing freed heap back to the OS so that reused memory is not missed.
"""

from __future__ import annotations

import gc
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def wants_more(done: int, timed: float, *, repeats: int, min_time: float,
               max_repeats: int) -> bool:
    """Whether to time another call after ``done`` calls that took ``timed`` seconds in all.

    At least ``repeats`` calls, more until ``min_time`` seconds were timed
    (at most ``max_repeats``), so fast GPU kernels get enough samples.
    """
    return done < repeats or (timed < min_time and done < max_repeats)


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

    How many calls are timed is :func:`wants_more`'s rule.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    while wants_more(len(times), sum(times), repeats=repeats, min_time=min_time,
                     max_repeats=max_repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timing_fields(times: list[float]) -> dict[str, Any]:
    """The repeat count and the rounded seconds of each call, as a report records them."""
    return {"repeats": len(times), "times_s": [round(t, 6) for t in times]}


def measure_once(
    fn: Callable[[], Any], device: torch.device, *, host: bool = True
) -> tuple[Any, float, MemoryMeter]:
    """``(fn's result, its seconds, the MemoryMeter of the call)`` for one call of ``fn``."""
    with MemoryMeter(device, host=host) as meter:
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        seconds = time.perf_counter() - start
    return result, seconds, meter


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
    """The process's lifetime peak RSS (``getrusage``), in bytes on every platform."""
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
    """What :class:`MemoryMeter`'s peak means on ``device``, in words for the report."""
    if device.type == "cuda":
        return ("peak growth of torch.cuda.max_memory_allocated over the block "
                "(activations + workspace; weights and input excluded), MiB")
    return ("peak growth of the process RSS over the block (sampled every 5 ms; "
            "weights and input excluded), MiB")
