"""Single operations the U-Nets spend their time in, each timed the ways it can be run.

Why the U-Nets are built the way they are (``models/blocks/layers.py``,
``models/architectures/unet.py``) rests on these timings: PyTorch's instance
norm against the same function as a group norm; ``max_pool2d`` against two
strided maxima; convolutions contiguous against channels-last, fp32 against
bf16 autocast. All run on one feature map of the first stage (16 channels,
``size``², batch ``batch``), in inference mode, round-robin, so that their
ratios hold on a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .measure import synchronize, wants_more
from .settings import BenchSettings, Log


def _operations(
    batch: int, size: int, device: torch.device
) -> dict[str, tuple[str, Callable[[], Any]]]:
    """``{name: (group, callable)}``: the variants of each operation, grouped for the table."""
    from ..models.architectures.unet import MaxPool2x2
    from ..models.blocks.layers import InstanceNorm2d

    torch.manual_seed(0)
    channels = 16
    cl = torch.channels_last
    x = torch.relu(torch.randn(batch, channels, size, size, device=device))
    x_cl = x.contiguous(memory_format=cl)
    torch_norm = nn.InstanceNorm2d(channels, affine=True).to(device)
    group_norm = InstanceNorm2d(channels, affine=True).to(device)
    pool = MaxPool2x2()
    ops: dict[str, tuple[str, Callable[[], Any]]] = {
        "nn.InstanceNorm2d": ("instance norm", lambda: torch_norm(x)),
        "nn.InstanceNorm2d, channels-last": ("instance norm", lambda: torch_norm(x_cl)),
        "group-norm InstanceNorm2d": ("instance norm", lambda: group_norm(x)),
        "group-norm InstanceNorm2d, channels-last": ("instance norm", lambda: group_norm(x_cl)),
        "F.max_pool2d": ("2×2 max-pool", lambda: F.max_pool2d(x, 2)),
        "F.max_pool2d, channels-last": ("2×2 max-pool", lambda: F.max_pool2d(x_cl, 2)),
        "MaxPool2x2": ("2×2 max-pool", lambda: pool(x)),
        "MaxPool2x2, channels-last": ("2×2 max-pool", lambda: pool(x_cl)),
    }
    for cin in (3, 16, 32):
        conv = nn.Conv2d(cin, channels, 3, padding=1).to(device).eval()
        conv_cl = nn.Conv2d(cin, channels, 3, padding=1).to(device, memory_format=cl).eval()
        inp = torch.randn(batch, cin, size, size, device=device)
        inp_cl = inp.contiguous(memory_format=cl)
        group = f"conv 3×3 {cin}→{channels}"

        def autocast(conv=conv_cl, inp=inp_cl):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return conv(inp)

        ops[f"{group}, fp32"] = (group, lambda conv=conv, inp=inp: conv(inp))
        ops[f"{group}, fp32 channels-last"] = (group, lambda c=conv_cl, i=inp_cl: c(i))
        ops[f"{group}, bf16 autocast channels-last"] = (group, autocast)
    return ops


@torch.inference_mode()
def measure_ops(settings: BenchSettings, device: torch.device, log: Log) -> list[dict[str, Any]]:
    """One record per operation variant: median and best milliseconds, round-robin."""
    batch, size = 1, max(settings.sizes)
    ops = _operations(batch, size, device)
    log(f"operations on a {batch}×16×{size}² feature: {len(ops)} variants")
    for _, fn in ops.values():
        fn(), fn()  # one-off costs: kernels chosen, weights reordered
    times: dict[str, list[float]] = {name: [] for name in ops}
    rounds = 0
    while wants_more(rounds, min(sum(t) for t in times.values()), repeats=max(5, settings.repeats),
                     min_time=settings.min_time / 4, max_repeats=settings.max_repeats):
        for name, (_, fn) in ops.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
        rounds += 1
    return [
        {"operation": name, "group": group, "shape": [batch, 16, size, size],
         "ms": 1000 * statistics.median(times[name]), "min_ms": 1000 * min(times[name]),
         "repeats": len(times[name])}
        for name, (group, _) in ops.items()
    ]
