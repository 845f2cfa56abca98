"""Choosing a compute device: ``auto | cuda[:N] | mps | cpu``."""

from __future__ import annotations

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


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: run in fp32).

    ``auto`` is fp16 on CUDA and fp32 elsewhere; ``bf16`` needs a GPU that supports it.
    """
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16
