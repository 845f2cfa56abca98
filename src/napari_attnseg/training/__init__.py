"""Training: one trainer for the command line, the Fine-tune widget and the zoo recipes."""

from .config import TrainConfig
from .optim import build_optimizer, build_scheduler, parameter_groups
from .trainer import History, Trainer, seed_everything
from .workflows import (
    DataSpec,
    PruneResult,
    finetune,
    load_folder_data,
    prune_workflow,
    train_new,
)

__all__ = [
    "DataSpec",
    "History",
    "PruneResult",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "finetune",
    "load_folder_data",
    "parameter_groups",
    "prune_workflow",
    "seed_everything",
    "train_new",
]

from .interactive import (  # noqa: E402
    AnnotatedImage,
    build_samples,
    finetune_config,
    hold_out_tiles,
    samples_for_model,
)

__all__ += [
    "AnnotatedImage",
    "build_samples",
    "finetune_config",
    "hold_out_tiles",
    "samples_for_model",
]
