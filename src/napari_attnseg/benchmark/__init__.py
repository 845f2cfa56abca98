"""Speed and memory of the engine, measured in one run beside MONAI reference networks.

``run_benchmark(BenchSettings(...))`` measures, on one device and in one process:

1. **inference throughput** (ms/image, images/s, peak memory) of every
   architecture at its *compact default* size (:data:`COMPACT_DEFAULTS`, the
   widths the zoo ships) and of MONAI's ``AttentionUnet`` and ``BasicUNet`` at
   the same stage widths, for each input size and batch size and each
   execution *variant* (:mod:`.execution`: precision, channels-last,
   ``inference_mode`` / ``no_grad``, ``torch.compile``, conv+BN fusion) —
   all (network, variant) pairs timed round-robin, warm-up then the median of
   timed repeats — with ours / MONAI ratios;
2. the **training step** (forward, loss, backward, Adam) of each architecture
   per precision, round-robin;
3. the **end-to-end** time of one RGB image through :class:`Predictor`
   (normalisation, prediction, labels) for the default compact model;
4. one **fine-tune round**: a fixed small workload through :class:`Trainer`
   (one epoch of 16 random 128² patches of synthetic data, batch 4) per architecture;
5. **sliding-window** inference on a large synthetic image (4096² by default),
   through the Predictor and through the benchmark's own MONAI call per
   variant, with peak memory growth and progress counted in tiles;
6. with a folder of real images (``real_images``), **end to end on a real
   image** (:mod:`.real`): a 2048² mosaic of DSB2018 fluorescence images
   through the Predictor at its defaults with instance labels (scored against
   the labels: Dice, AP@0.5, mean AP), beside MONAI's sliding window over its
   AttentionUnet, the same Predictor on noise, and on a 512² crop — round-robin.

Everything is measured in the same run so that the ratios (ours / MONAI,
variant / fp32) are meaningful even on a noisy, shared machine, where
absolute figures drift. How memory is measured is told in :mod:`.measure`.

Modules: ``settings`` (what to measure), ``execution`` (variants),
``networks`` (which networks, at what size), ``measure`` (timing loops,
memory sampling), ``synthetic`` (inputs), ``throughput`` (1), ``train_step``
(2), ``workflows`` (3–5), ``real`` (6), ``ops`` (single operations), ``probe`` (does bf16
pay on this CPU), ``machine`` (device, versions, load), ``targets`` (issues 3,
13 and 22), ``runner`` (the run), ``report`` (tables, Markdown, JSON).
This package never imports napari or Qt; ``attnseg bench`` is a thin wrapper.
"""

from ..inference.device import cpu_bf16_speedup
from .execution import (
    FLAGS,
    Variant,
    library_default_spec,
    parse_variant,
    parse_variants,
    prepare_input,
    prepare_model,
    running,
)
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
from .ops import measure_ops
from .real import Mosaic, build_mosaic, fluorescence_like, measure_real, real_folders
from .report import (
    REAL_SECTION,
    format_markdown,
    format_report,
    read_json,
    write_json,
    write_markdown,
)
from .runner import run_benchmark
from .settings import DEFAULT_VARIANTS, BenchSettings, Log
from .synthetic import synthetic_image, synthetic_samples
from .targets import (
    ATTENTION_RATIO_TARGET,
    AUTO_SPEEDUP_TARGET,
    CPU_ATTENTION_RATIO_TARGET,
    E2E_TARGET_S,
    GPU_THROUGHPUT_TARGET,
    LARGE_MEMORY_TARGET_MB,
    LARGE_SECONDS_TARGET,
    REAL_CROP_TARGET_S,
    evaluate_targets,
)
from .throughput import measure_throughput, throughput_ratios
from .train_step import measure_train_steps, train_step_speedups
from .workflows import (
    measure_end_to_end,
    measure_finetune,
    measure_sliding_window,
    measure_window_variant,
    tiles_per_axis,
)

__all__ = [
    "ATTENTION_RATIO_TARGET",
    "AUTO_SPEEDUP_TARGET",
    "COMPACT_DEFAULTS",
    "CPU_ATTENTION_RATIO_TARGET",
    "DEFAULT_MODEL",
    "DEFAULT_VARIANTS",
    "E2E_TARGET_S",
    "FLAGS",
    "GPU_THROUGHPUT_TARGET",
    "LARGE_MEMORY_TARGET_MB",
    "LARGE_SECONDS_TARGET",
    "MONAI_ATTENTION_UNET",
    "MONAI_BASIC_UNET",
    "MONAI_REFERENCES",
    "RATIO_PAIRS",
    "REAL_CROP_TARGET_S",
    "REAL_SECTION",
    "BenchSettings",
    "Log",
    "MemoryMeter",
    "Mosaic",
    "Variant",
    "build_mosaic",
    "build_network",
    "cpu_bf16_speedup",
    "busy_note",
    "compact_options",
    "cpu_name",
    "default_architectures",
    "evaluate_targets",
    "fluorescence_like",
    "format_markdown",
    "format_report",
    "forward_gflops",
    "library_default_spec",
    "load_average",
    "machine_info",
    "measure_end_to_end",
    "measure_finetune",
    "measure_once",
    "measure_ops",
    "measure_real",
    "measure_sliding_window",
    "measure_throughput",
    "measure_train_steps",
    "measure_window_variant",
    "memory_measure",
    "parameter_count",
    "parse_variant",
    "parse_variants",
    "prepare_input",
    "prepare_model",
    "read_json",
    "real_folders",
    "reference_width",
    "resolve_architectures",
    "run_benchmark",
    "running",
    "synchronize",
    "synthetic_image",
    "synthetic_samples",
    "throughput_ratios",
    "tiles_per_axis",
    "time_repeats",
    "timing_fields",
    "train_step_speedups",
    "wants_more",
    "write_json",
    "write_markdown",
]
