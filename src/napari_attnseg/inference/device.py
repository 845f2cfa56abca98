"""Choosing a compute device: ``auto | cuda[:N] | mps | cpu``."""

from __future__ import annotations

import functools
import os
import time

import torch
from torch import nn

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a user's choice; ``auto`` prefers CUDA, then MPS, then CPU.

    Asking for a device that is not there is an error that says what is.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but PyTorch sees no CUDA GPU; {_seen()}")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist; {_seen()}")
        return device
    if name == "mps":
        if not mps_available():
            raise ValueError(f"device 'mps' requested but Apple MPS is not available; {_seen()}")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; use one of auto, cuda, cuda:N, mps, cpu")


def available_devices() -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a device picker: auto, each CUDA GPU by name, MPS, CPU."""
    choices = [("auto", "auto")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f"cuda:{i} — {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    if mps_available():
        choices.append(("mps — Apple GPU", "mps"))
    choices.append(("cpu", "cpu"))
    return choices


def _seen() -> str:
    labels = [label for label, value in available_devices() if value != "auto"]
    return "available: " + ", ".join(labels)


#: what ``precision`` may be set to everywhere (inference, training, widgets, bench)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: set to 0 or 1 to override the CPU's detected native-bfloat16 support
CPU_BF16_ENV = "NAPARI_ATTNSEG_CPU_BF16"


def _cpu_bf16_override() -> bool | None:
    """``$NAPARI_ATTNSEG_CPU_BF16`` as set (0/1), else None."""
    value = os.environ.get(CPU_BF16_ENV, "").strip()
    return value == "1" if value in ("0", "1") else None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), per PyTorch.

    The answer comes from PyTorch's own CPU capability queries (the ones its
    oneDNN kernels dispatch on), not from a list of CPU names. Without native
    support bfloat16 is emulated and slower than fp32, so ``auto`` keeps fp32.
    ``$NAPARI_ATTNSEG_CPU_BF16`` (0/1) overrides the detection.
    """
    override = _cpu_bf16_override()
    if override is not None:
        return override
    if not torch.backends.mkldnn.is_available():
        return False
    queries = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in queries)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a job really runs at on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 on CUDA GPUs that support it (else fp16) and on CPUs where
    bf16 is native *and* measured faster (:func:`cpu_auto_bf16`), fp32 everywhere
    else (other CPUs, MPS). An explicit choice is
    honoured as given. Weights stay fp32 either way: only the autocast
    regions (convolutions, matrix products) run at the lower precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_auto_bf16():
        return "bf16"
    return "fp32"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: run in fp32)."""
    resolved = resolve_precision(device, precision)
    if resolved == "fp32" or device.type not in ("cuda", "cpu"):
        return None
    return torch.bfloat16 if resolved == "bf16" else torch.float16


#: ``auto`` picks bf16 on a CPU only when the probe finds it at least this much faster
BF16_MIN_SPEEDUP = 1.1


def _stack(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(2 * width, width, 3, padding=1),
    ).eval()


@torch.inference_mode()
def cpu_bf16_speedup(width: int = 32, size: int = 64, repeats: int = 5) -> float:
    """fp32 seconds / bf16-autocast seconds of a small conv stack on the CPU (> 1: bf16 pays).

    Native bf16 support is not enough to make it pay: on Intel Xeons whose AMX
    units are hidden by a hypervisor, oneDNN's ``avx512_core_bf16`` convolutions
    run *slower* than its fp32 ones (0.79–0.86× on our 2-core CI-like machine),
    while on AMD Zen 4 or Intel with AMX they are faster. So this times a small
    stack of the convolutions our U-Nets are made of, fp32 against bf16
    autocast, both channels-last on one thread; each is the best of ``repeats``
    interleaved calls after a warm-up, so a busy machine biases neither.
    Takes ~0.1–0.3 s.
    """
    torch.manual_seed(0)
    model = _stack(width).to(memory_format=torch.channels_last)
    x = torch.randn(1, width, size, size).contiguous(memory_format=torch.channels_last)

    def run(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the per-core arithmetic is the question; one thread is steadier
    try:
        for _ in range(2):  # one-off costs: kernels generated, weights reordered
            run(False), run(True)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeats):
            for bf16 in (False, True):
                best[bf16] = min(best[bf16], run(bf16))
    finally:
        torch.set_num_threads(threads)
    return best[False] / best[True]


@functools.cache
def _measured_cpu_bf16_speedup() -> float:
    return cpu_bf16_speedup()


def cpu_auto_bf16() -> bool:
    """Whether ``precision="auto"`` runs bf16 autocast on this CPU.

    ``$NAPARI_ATTNSEG_CPU_BF16`` (0/1) decides if set. Otherwise bf16 needs
    native support (:func:`cpu_has_native_bf16`) and a measured speed-up of at
    least :data:`BF16_MIN_SPEEDUP` (:func:`cpu_bf16_speedup`, run once per
    process, ~0.2 s), so ``auto`` never picks the slower of the two.
    """
    override = _cpu_bf16_override()
    if override is not None:
        return override
    return cpu_has_native_bf16() and _measured_cpu_bf16_speedup() >= BF16_MIN_SPEEDUP
