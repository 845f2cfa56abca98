"""The machine a run measured on: device, versions, CPUs, and how busy it was.

Absolute timings mean little without these, so every report carries them.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from ..inference.device import cpu_bf16_speedup
from .measure import memory_measure


def machine_info(device: torch.device) -> dict[str, Any]:
    """Device, CPU, thread and library versions for ``device``; GPU details on CUDA."""
    import monai

    from .. import __version__

    cpu = cpu_name()
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "napari_attnseg": __version__,
        "memory_measure": memory_measure(device),
    }
    if device.type == "cpu":
        from ..inference import cpu_has_native_bf16

        info["cpu_native_bf16"] = cpu_has_native_bf16()
        info["amx"] = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
        info["cpu_bf16_probe_speedup"] = round(cpu_bf16_speedup(), 3)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def cpu_name() -> str:
    """The CPU model (from ``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def busy_note(report: dict[str, Any]) -> str:
    """A warning when other processes loaded the machine during the run ("" when not).

    The load at the end includes the benchmark's own threads (a 2-thread run on an
    idle 2-core machine ends near 2), so those are taken off before judging it.
    """
    machine = report["machine"]
    cpus = machine.get("usable_cpus") or machine.get("cpu_count") or 1
    own = machine.get("torch_threads") or 0
    start, end = (report["load_average"].get(k) for k in ("start", "end"))
    others = [load[0] - (own if key == "end" else 0)
              for key, load in (("start", start), ("end", end)) if load]  # fmt: skip
    if not others or max(others) < 0.5 * cpus:
        return ""
    loads = [v[0] for v in (start, end) if v]
    return (f"note: 1-min load average up to {max(loads):.1f} on {cpus} CPUs (beyond this "
            f"run's {own} thread(s)) — other processes "
            "compete for the CPU, so absolute times are inflated and noisy; ours/MONAI ratios "
            "(measured round-robin) are the steadier figures")
