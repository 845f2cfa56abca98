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
How memory is measured is told in :mod:`.measure`.

Modules: ``settings`` (what to measure), ``networks`` (which networks, at what
size), ``measure`` (timing loops, memory sampling), ``synthetic`` (inputs),
``throughput`` (1), ``workflows`` (2–4), ``machine`` (device, versions, load),
``targets`` (issue 3's targets), ``runner`` (the run), ``report`` (tables, JSON).
This package never imports napari or Qt; ``attnseg bench`` is a thin wrapper.
"""

from .machine import busy_note, cpu_name, load_average, machine_info
from .measure import (
    MemoryMeter,
    measure_once,
    memory_measure,
    synchronize,
    time_repeats,
    timing_fields,
    wants_more,
)
from .networks import (
    COMPACT_DEFAULTS,
    DEFAULT_MODEL,
    MONAI_ATTENTION_UNET,
    MONAI_BASIC_UNET,
    MONAI_REFERENCES,
    RATIO_PAIRS,
    build_network,
    compact_options,
    default_architectures,
    forward_gflops,
    parameter_count,
    reference_width,
    resolve_architectures,
)
from .report import format_report, write_json
from .runner import run_benchmark
from .settings import BenchSettings, Log
from .synthetic import synthetic_image, synthetic_samples
from .targets import (
    ATTENTION_RATIO_TARGET,
    E2E_TARGET_S,
    GPU_THROUGHPUT_TARGET,
    LARGE_MEMORY_TARGET_MB,
    evaluate_targets,
)
from .throughput import measure_throughput, throughput_ratios
from .workflows import (
    measure_end_to_end,
    measure_finetune,
    measure_sliding_window,
    tiles_per_axis,
)

__all__ = [
    "ATTENTION_RATIO_TARGET",
    "COMPACT_DEFAULTS",
    "DEFAULT_MODEL",
    "E2E_TARGET_S",
    "GPU_THROUGHPUT_TARGET",
    "LARGE_MEMORY_TARGET_MB",
    "MONAI_ATTENTION_UNET",
    "MONAI_BASIC_UNET",
    "MONAI_REFERENCES",
    "RATIO_PAIRS",
    "BenchSettings",
    "Log",
    "MemoryMeter",
    "build_network",
    "busy_note",
    "compact_options",
    "cpu_name",
    "default_architectures",
    "evaluate_targets",
    "format_report",
    "forward_gflops",
    "load_average",
    "machine_info",
    "measure_end_to_end",
    "measure_finetune",
    "measure_once",
    "measure_sliding_window",
    "measure_throughput",
    "memory_measure",
    "parameter_count",
    "reference_width",
    "resolve_architectures",
    "run_benchmark",
    "synchronize",
    "synthetic_image",
    "synthetic_samples",
    "throughput_ratios",
    "tiles_per_axis",
    "time_repeats",
    "timing_fields",
    "wants_more",
    "write_json",
]
