"""The text of a bioimage.io package: preprocessing, tensor and class names, README, details.

:func:`preprocessing_steps` translates the card's normalisation (the one
:class:`~napari_attnseg.data.input_spec.InputSpec` applies) into bioimage.io
preprocessing: ``zscore`` → ``zero_mean_unit_variance`` over (y, x) per image
and channel; ``dataset`` → ``fixed_zero_mean_unit_variance`` (per channel);
``percentile`` → ``scale_range`` + ``clip`` to [0, 1]; ``minmax`` →
``scale_range`` 0–100 %; ``none`` → nothing; CLAHE → refused.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import __version__
from ..models.base import SegmentationModel
from ..models.persistence import card_of
from .citations import Citation
from .errors import ExportError


def preprocessing_steps(
    normalization: Mapping[str, Any] | None, in_channels: int
) -> tuple[list[dict[str, Any]], str]:
    """bioimage.io preprocessing (as plain dicts) for a card's normalisation, and its description.

    Raises :class:`ExportError` for what bioimage.io cannot express (CLAHE).
    """
    spec = dict(normalization or {"mode": "zscore"})
    mode = spec.get("mode", "zscore")
    if spec.get("clahe", False):
        raise ExportError(
            "the model card normalises with CLAHE (contrast-limited adaptive histogram "
            "equalisation), which bioimage.io preprocessing cannot express; consumers would "
            "feed the network inputs it was never trained on, so the model is not exported. "
            "Fine-tune or train a copy without CLAHE to export it"
        )
    space = ["y", "x"]
    if mode == "zscore":
        step = {"id": "zero_mean_unit_variance", "kwargs": {"axes": space, "eps": 1e-6}}
        return [step], "zero mean, unit variance per image and channel (z-score)"
    if mode == "dataset":
        mean = [float(v) for v in np.atleast_1d(spec.get("mean", []))]
        std = [float(v) for v in np.atleast_1d(spec.get("std", []))]
        if not mean or len(mean) != len(std) or len(mean) not in (1, in_channels):
            raise ExportError(
                f"the card's dataset normalisation needs one mean and std per channel "
                f"({in_channels}), got mean={mean}, std={std}"
            )
        if min(std) < 1e-6:
            raise ExportError(
                f"the card's dataset std {std} has a value below 1e-6, which bioimage.io's "
                "fixed_zero_mean_unit_variance does not allow"
            )
        if len(mean) == 1:
            kwargs: dict[str, Any] = {"mean": mean[0], "std": std[0]}
        else:
            kwargs = {"mean": mean, "std": std, "axis": "channel"}
        step = {"id": "fixed_zero_mean_unit_variance", "kwargs": kwargs}
        return [step], f"(x - mean) / std with the training set's mean {mean} and std {std}"
    if mode == "percentile":
        low, high = float(spec.get("low", 1.0)), float(spec.get("high", 99.8))
        if high <= 1.0:
            raise ExportError(
                f"percentile normalisation up to the {high}th percentile cannot be expressed: "
                "bioimage.io's scale_range needs max_percentile > 1"
            )
        steps = [
            {
                "id": "scale_range",
                "kwargs": {
                    "axes": space,
                    "min_percentile": low,
                    "max_percentile": high,
                    "eps": 1e-6,
                },
            },
            {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
        ]
        return steps, f"percentiles {low}–{high} per image and channel mapped to [0, 1], clipped"
    if mode == "minmax":
        step = {
            "id": "scale_range",
            "kwargs": {"axes": space, "min_percentile": 0.0, "max_percentile": 100.0, "eps": 1e-6},
        }
        return [step], "minimum–maximum per image and channel mapped to [0, 1]"
    if mode == "none":
        return [], "none (raw intensities)"
    raise ExportError(f"unknown normalisation mode {mode!r} in the model card")



def _identifier(text: str, fallback: str) -> str:
    ident = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    if not ident or not ident[0].isalpha():
        ident = f"{fallback}_{ident}".strip("_")
    return ident


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def class_names(model: SegmentationModel) -> list[str]:
    k = max(2, model.n_classes)
    names = list(card_of(model).class_names or [])
    if len(names) != k:
        names = ["background", "foreground"] if k == 2 else [f"class{i}" for i in range(k)]
    return _unique([_identifier(n, "class") for n in names])


def channel_names(in_channels: int) -> list[str]:
    if in_channels == 1:
        return ["grey"]
    if in_channels == 3:
        return ["red", "green", "blue"]
    return [f"channel{i}" for i in range(in_channels)]


def package_name(card_name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", card_name.replace(".", " ")).strip()
    name = re.sub(r"\s+", " ", f"napari-attnseg {text}".strip())
    return name[:128]



def _format_metrics(metrics: Mapping[str, Any]) -> str:
    validation = metrics.get("validation") or {}
    mean = validation.get("mean") if isinstance(validation, Mapping) else None
    if not isinstance(mean, Mapping) or not mean:
        return "The model card holds no validation metrics."
    rows = "\n".join(
        f"| {key} | {value:.4f} |" for key, value in mean.items() if isinstance(value, int | float)
    )
    lines = [
        f"Mean over {validation.get('n_images', '?')} validation images:",
        "",
        "| metric | value |",
        "|---|---|",
        rows,
    ]
    if metrics.get("measured_by"):
        lines += ["", f"Measured by: `{metrics['measured_by']}`"]
    return "\n".join(lines)


def _format_training(training: Mapping[str, Any]) -> str:
    if not training:
        return "The model card does not say how the model was trained."
    config = training.get("config") if isinstance(training.get("config"), Mapping) else {}
    items = [
        ("data", training.get("dataset")),
        (
            "training / validation images",
            f"{training.get('n_train', '?')} / {training.get('n_val', '?')}"
            if "n_train" in training
            else None,
        ),
        ("epochs run", training.get("epochs_run")),
        ("loss", config.get("loss")),
        ("optimiser", config.get("optimizer")),
        ("learning rate", config.get("lr")),
        ("batch size", config.get("batch_size")),
        ("patch size", config.get("patch_size")),
        ("command", f"`{training['command']}`" if training.get("command") else None),
    ]
    return "\n".join(f"- {label}: {value}" for label, value in items if value not in (None, ""))


def training_details(training: Mapping[str, Any], normalization_text: str) -> dict[str, Any]:
    config = training.get("config") if isinstance(training.get("config"), Mapping) else {}
    details: dict[str, Any] = {"training_preprocessing": f"normalisation: {normalization_text}"}
    if config.get("augment"):
        details["training_preprocessing"] += f"; augmentation: {config['augment']}"
    for key, source in (
        ("training_epochs", training.get("epochs_run")),
        ("training_batch_size", config.get("batch_size")),
        ("initial_learning_rate", config.get("lr")),
    ):
        if isinstance(source, int | float):
            details[key] = float(source)
    if config.get("schedule"):
        details["learning_rate_schedule"] = str(config["schedule"])
    if config.get("loss"):
        details["loss_function"] = str(config["loss"])
        if isinstance(config.get("loss_params"), Mapping):
            details["loss_function_kwargs"] = dict(config["loss_params"])
    if config.get("optimizer"):
        details["optimizer"] = str(config["optimizer"])
    if isinstance(training.get("wall_time_s"), int | float):
        details["training_duration"] = round(float(training["wall_time_s"]) / 3600.0, 3)
    if training.get("dataset"):
        details["dataset"] = str(training["dataset"])
    return details


def labelling_rule(card, classes: list[str], *, binary: bool) -> str:
    """How napari-attnseg turns the output into labels, in words (ends without a full stop)."""
    if binary:
        return f"as {classes[1]} where P({classes[1]}) ≥ {card.threshold}"
    if card.separation_head is None:
        return "with the class of highest probability"
    bands = ", ".join(classes[1:])
    centre = classes[-1] if card.separation_head == "bands" else "seed"
    return (
        f"as an object where 1 − P({classes[0]}) ≥ {card.threshold}; the other classes "
        f"({bands}) are bands inside objects that separate touching ones: napari-attnseg "
        f"seeds one object per connected {centre} region and grows it over the object "
        "pixels (a consumer that wants object probability sums those classes)"
    )


def readme(
    *,
    name: str,
    model: SegmentationModel,
    channels: list[str],
    classes: list[str],
    normalization_text: str,
    min_size: int,
    test_source: str,
    cites: list[Citation],
) -> str:
    card = card_of(model)
    rule = labelling_rule(card, classes, binary=model.n_classes == 1)
    resize = ""
    if card.input_size:
        resize = (
            f" The network resizes every image to {card.input_size[0]}×{card.input_size[1]} "
            "and its output back, inside the model."
        )
    elif card.input_scale and card.input_scale != 1.0:
        resize = (
            f" The network resizes images by {card.input_scale} and its output back, "
            "inside the model."
        )
    papers = "\n".join(f"- {c.text} https://doi.org/{c.doi}" for c in cites) or "- (none)"
    return textwrap.dedent(
        """\
        # {name}

        {description}

        Exported by napari-attnseg {version} from the model `{card_name}`
        (architecture `{arch}`). napari-attnseg takes this package wherever it takes a
        model, e.g. `attnseg predict --model THIS.zip IMAGE… --out DIR`; any bioimage.io
        consumer runs it too.

        ## Input and output

        - input `input`: (batch, channel, y, x), {n_in} channel(s) ({channels}), float32
          raw intensities, y and x at least {min_size} pixels (any size above).
        - preprocessing: {normalization}.
        - output `probabilities`: (batch, class, y, x), one probability map per class
          ({classes}), summing to 1. napari-attnseg labels a pixel {rule}.{resize}

        napari-attnseg does a few things around the network that this package does not:
        it converts grey images to RGB (or RGB to grey) to match the channel count, tiles
        images larger than 512 pixels with 25% overlap and Gaussian blending, and can
        average over flips (TTA). Consumers of this package give it {n_in} channel(s)
        and tile as they choose, so their results can differ slightly at tile seams.

        The test input is a crop of {test_source}; the test output was computed from it by
        napari-attnseg's own predictor.

        ## Training

        {training}

        ## Validation

        {metrics}

        ## Licence

        {license}

        ## Citations

        {papers}
        """
    ).format(
        name=name,
        description=card.description or f"A {model.name} segmentation model.",
        version=__version__,
        card_name=card.name or model.name,
        arch=model.name,
        n_in=model.in_channels,
        channels=", ".join(channels),
        min_size=min_size,
        normalization=normalization_text,
        classes=", ".join(classes),
        rule=rule,
        resize=resize,
        test_source=test_source,
        training=_format_training(card.training),
        metrics=_format_metrics(card.metrics),
        license=card.license or "The model card gives no licence.",
        papers=papers,
    )


def environment_yaml() -> str:
    return textwrap.dedent(
        f"""\
        name: napari-attnseg
        channels:
          - conda-forge
          - nodefaults
        dependencies:
          - python>=3.11
          - pip
          - pytorch>=2.1
          - pip:
              - napari-attnseg>={__version__}
        """
    )



def short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def semver(version: str) -> bool:
    return re.fullmatch(r"\d+\.\d+\.\d+", version) is not None



__all__ = [
    "class_names",
    "channel_names",
    "environment_yaml",
    "package_name",
    "preprocessing_steps",
    "readme",
    "short",
    "semver",
    "training_details",
]
