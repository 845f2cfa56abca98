"""Choosing a compute device: ``auto | cuda[:N] | mps | cpu``."""

from __future__ import annotations

import os

import torch

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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), per PyTorch.

    The answer comes from PyTorch's own CPU capability queries (the ones its
    oneDNN kernels dispatch on), not from a list of CPU names. Without native
    support bfloat16 is emulated and slower than fp32, so ``auto`` keeps fp32.
    ``$NAPARI_ATTNSEG_CPU_BF16`` (0/1) overrides the detection.
    """
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if not torch.backends.mkldnn.is_available():
        return False
    queries = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in queries)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision a job really runs at on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 on CUDA GPUs that support it (else fp16) and on CPUs with
    native bf16, fp32 everywhere else (other CPUs, MPS). An explicit choice is
    honoured as given. Weights stay fp32 either way: only the autocast
    regions (convolutions, matrix products) run at the lower precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: run in fp32)."""
    resolved = resolve_precision(device, precision)
    if resolved == "fp32" or device.type not in ("cuda", "cpu"):
        return None
    return torch.bfloat16 if resolved == "bf16" else torch.float16
