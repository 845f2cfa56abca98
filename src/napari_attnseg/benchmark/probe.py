"""Does bf16 autocast actually pay on this CPU? A measured answer in ~0.1 s.

``cpu_has_native_bf16()`` says whether the CPU *can* compute bfloat16
(AVX-512 BF16 or AMX); it cannot say whether that is *faster* than fp32. It
is on CPUs whose bf16 dot-product units outrun their fp32 FMAs (AMD Zen 4,
Intel with AMX), but not on, e.g., Intel Xeons whose AMX units are hidden by
the hypervisor: there oneDNN's ``avx512_core_bf16`` convolutions run *slower*
than its fp32 ones. :func:`cpu_bf16_speedup` times a small stack of the
convolutions our U-Nets are made of, fp32 against bf16 autocast, both
channels-last and in inference mode, interleaved, best of a few calls each.
"""

from __future__ import annotations

import time

import torch
from torch import nn


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

    Both run channels-last on one thread; each is the best of ``repeats``
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
