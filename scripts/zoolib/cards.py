"""Shipped cards: what each must say, reading them, and each task's default (``index.json``)."""

from __future__ import annotations

from typing import Any

from . import paths

#: what every shipped card must say (dotted paths into the card document)
CARD_REQUIRED = (
    "license",  # the weights' and the training data's terms
    "training.dataset",  # the data
    "metadata.recipe",  # recipes/<name>.json
    "training.command",  # the exact attnseg train command
    "training.environment.device",
    "training.precision",  # autocast precision of the training forward pass
    "training.threads",
    "training.wall_time_s",
    "training.epochs_run",
    "metrics.validation.n_images",  # scored again on the shipped fp16 file:
    "metrics.validation.mean.dice",
    "metrics.measured_by",  # the attnseg evaluate command
    "metrics.weights",  # "fp16 as shipped"
)


def card_value(card: dict, key: str) -> Any:
    value: Any = card
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def legacy_precision(training: dict) -> str | None:
    """The precision a card written before ``training.precision`` existed was trained at:
    its trainer autocast only on CUDA (``config.amp``, fp16), so CPU runs were fp32."""
    config, device = training.get("config", {}), training.get("environment", {}).get("device")
    if "precision" in training or device is None or "amp" not in config:
        return training.get("precision")
    return "fp16" if config["amp"] and str(device).startswith("cuda") else "fp32"


def missing_card_keys(card: dict, *, legacy: bool = False) -> list[str]:
    """The :data:`CARD_REQUIRED` keys a card lacks; ``legacy`` accepts a precision that
    :func:`legacy_precision` derives (``zoo.py complete`` writes it into the card)."""
    missing = [k for k in CARD_REQUIRED if card_value(card, k) in (None, "", [], {})]
    if legacy and "training.precision" in missing and legacy_precision(card.get("training", {})):
        missing.remove("training.precision")
    return missing


def _dice(card: dict) -> float:
    return float(card_value(card, "metrics.validation.mean.dice") or 0.0)


def shipped_cards() -> dict[str, dict]:
    """``{name: card document}`` of every model in the weights folder."""
    cards = {}
    for path in sorted(paths.WEIGHTS.glob("*.safetensors")):
        card = paths.read_json(path.with_suffix(".json"))
        if card:
            cards[path.stem] = card
    return cards


def _task(name: str, card: dict) -> str:
    return card.get("metadata", {}).get("task") or name.partition(".")[2]


def _split_of(card: dict) -> str:
    """The validation images a card was scored on (its ``measured_by`` command's --images)."""
    words = str(card.get("metrics", {}).get("measured_by", "")).split()
    return words[words.index("--images") + 1] if "--images" in words[:-1] else ""


def task_defaults(cards: dict[str, dict]) -> dict[str, str]:
    """Each task's default: its shipped model with the highest validation Dice.

    Dice compares only on the same images: when a model with a recipe of its own
    (``metadata.own_recipe``) was scored on other validation images than its task's
    other models, the task's models scored on those images compete (the nuclei default
    is scored on native-resolution images, the other nuclei models on 96-px thumbnails)."""
    own = {
        _task(n, c): _split_of(c)
        for n, c in cards.items()
        if c.get("metadata", {}).get("own_recipe")
    }
    best: dict[str, tuple[float, str]] = {}
    for name, card in sorted(cards.items()):
        task = _task(name, card)
        if task in own and _split_of(card) != own[task]:
            continue
        if task and (task not in best or _dice(card) > best[task][0]):
            best[task] = (_dice(card), name)
    return {task: name for task, (_, name) in sorted(best.items())}


def write_index() -> dict[str, str]:
    defaults = task_defaults(shipped_cards())
    index = {
        "defaults": defaults,
        "note": "task defaults are the shipped models with the highest mean validation Dice, "
        "measured on the shipped fp16 files (attnseg evaluate on the splits in "
        "recipes/splits), among those scored on the same images as a model with a recipe of "
        "its own (nuclei: native resolution); written by scripts/zoo.py from the cards in "
        "this folder",
    }
    paths.WEIGHTS.mkdir(parents=True, exist_ok=True)
    paths.write_json(paths.WEIGHTS / "index.json", index)
    return defaults
