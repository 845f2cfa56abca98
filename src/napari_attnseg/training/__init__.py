"""Training: one trainer for the command line, the Fine-tune widget and the zoo recipes."""

from .config import TrainConfig, default_patch_size
from .interactive import (
    AnnotatedImage,
    build_samples,
    class_warnings,
    finetune_config,
    hold_out_tiles,
    samples_for_model,
    validation_kind,
)
from .optim import build_optimizer, build_scheduler, parameter_groups
from .recipe import (
    Recipe,
    RunResult,
    RunSpec,
    default_run_dir,
    finetune_recipe,
    run_training,
    start_run,
)
from .trainer import History, Trainer, seed_everything
from .workflows import (
    DataSpec,
    PruneResult,
    finetune,
    finetune_metrics,
    initial_weights,
    load_folder_data,
    prune_workflow,
    train_new,
    trained_before,
)

__all__ = [
    "AnnotatedImage",
    "DataSpec",
    "History",
    "PruneResult",
    "Recipe",
    "RunResult",
    "RunSpec",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_samples",
    "build_scheduler",
    "class_warnings",
    "default_patch_size",
    "default_run_dir",
    "finetune",
    "finetune_config",
    "finetune_metrics",
    "initial_weights",
    "trained_before",
    "finetune_recipe",
    "hold_out_tiles",
    "load_folder_data",
    "parameter_groups",
    "prune_workflow",
    "run_training",
    "samples_for_model",
    "seed_everything",
    "start_run",
    "train_new",
    "validation_kind",
]
