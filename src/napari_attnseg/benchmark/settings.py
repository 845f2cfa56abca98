"""What one benchmark run measures: :class:`BenchSettings`, checked on construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .execution import check_spec
from .networks import MONAI_REFERENCES

#: throughput variants by default: plain fp32 (how MONAI's users run it), fp32 channels-last,
#: and the precision ``auto`` resolves to, contiguous and channels-last
DEFAULT_VARIANTS = ("fp32", "fp32+cl", "auto", "auto+cl")

#: where progress messages go (``attnseg bench`` prints them to stderr)
Log = Callable[[str], None]


@dataclass
class BenchSettings:
    """What to measure; :meth:`quick` gives a smoke-test sized variant."""

    device: str = "auto"
    #: the precision ``auto`` in variant specs stands for, and the Predictor runs use:
    #: auto (see ``inference.resolve_precision``), fp32, bf16 or fp16
    precision: str = "auto"
    #: how each network is run for throughput (``execution`` specs), timed side by side;
    #: variants that resolve to the same one (auto = fp32 on some devices) are measured once
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
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
    #: single-operation timings (norms, pooling, convolution formats and precisions)
    ops: bool = True
    #: training-step table: variants (their precision and channels-last flag), batch, patch
    train_steps: bool = True
    train_variants: list[str] = field(default_factory=lambda: ["fp32", "auto"])
    train_batch: int = 8
    train_patch_size: int = 128
    finetune: bool = True
    finetune_patches: int = 16
    finetune_patch_size: int = 128
    finetune_batch: int = 4
    #: sliding-window image edge; None skips it
    large_size: int | None = 4096
    tile_size: int = 512
    overlap: float = 0.25
    tile_batch: int = 4
    #: the sliding window through the Predictor (what ships), and through the benchmark's
    #: own MONAI sliding-window call run as each of these variants
    window_predictor: bool = True
    window_variants: list[str] = field(default_factory=lambda: ["auto+cl"])
    #: the throughput table (and its ours / MONAI ratios)
    throughput: bool = True
    #: the real-image section (:mod:`.real`): a folder of RGB images (None skips it) and
    #: one of their instance labels (None: the images folder's sibling ``labels``)
    real_images: str | None = None
    real_labels: str | None = None
    #: False turns the real-image section off even with a folder given
    real: bool = True
    #: mosaic edge, the crop's edge, round-robin rounds, and the model (a task name means
    #: its default zoo model, as ``attnseg predict --model`` resolves it)
    real_size: int = 2048
    real_crop: int = 512
    real_repeats: int = 3
    real_model: str = "nuclei"
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
        from ..inference import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for spec in [*self.variants, *self.train_variants, *self.window_variants]:
            check_spec(spec)
        if not self.variants:
            raise ValueError("variants must list at least one way of running the networks")
        if self.train_batch < 1 or self.train_patch_size < 16 or self.tile_batch < 1:
            raise ValueError("train_batch and tile_batch must be >= 1 and train_patch_size "
                             f">= 16; got {self.train_batch}, {self.tile_batch}, "
                             f"{self.train_patch_size}")
        if self.real_size < 16 or self.real_crop < 16 or self.real_repeats < 1:
            raise ValueError("real_size and real_crop must be >= 16 pixels and real_repeats "
                             f">= 1; got {self.real_size}, {self.real_crop}, "
                             f"{self.real_repeats}")
        if self.finetune_patches < 1 or self.finetune_batch < 1 or self.finetune_patch_size < 16:
            raise ValueError("finetune_patches and finetune_batch must be >= 1, "
                             f"finetune_patch_size >= 16; got {self.finetune_patches}, "
                             f"{self.finetune_batch}, {self.finetune_patch_size}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchSettings:
        """A smoke run: small sizes, one batch size, few repeats, a 1024² sliding window,
        a 1024² real-image mosaic timed once."""
        small = dict(
            sizes=[128], batch_sizes=[1], repeats=2, min_time=0.0, e2e_size=256,
            finetune_patches=8, finetune_patch_size=64, large_size=1024, tile_size=256,
            train_batch=2, train_patch_size=64, real_size=1024, real_repeats=1,
        )
        return cls(**{**small, **overrides})

    @property
    def repetition(self) -> dict[str, Any]:
        """The warm-up and repeat options of :func:`~.measure.time_repeats`, from these settings."""
        return dict(warmup=self.warmup, repeats=self.repeats, min_time=self.min_time,
                    max_repeats=self.max_repeats)
