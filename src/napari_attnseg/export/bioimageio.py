"""Export a model as a bioimage.io model package (model spec 0.5), the zoo format of
ilastik, deepImageJ, QuPath, Fiji and napari's bioimage.io plugins.

:func:`export_bioimageio` writes one ``.zip`` holding

* ``pytorch_state_dict`` weights whose architecture is
  :func:`napari_attnseg.export.build_model` (rebuilt from our architecture
  config, so consumers need ``napari-attnseg`` installed — the package's
  ``environment.yaml`` says so), and standalone TorchScript weights;
* the input's preprocessing translated from the model card's normalisation
  (:func:`preprocessing_steps`), and an output of class probabilities
  (sigmoid/softmax, resizing and padding happen inside the network, see
  ``wrapper.py``), so a consumer's output equals ours;
* a test input (raw intensities of a crop of a bundled sample, or of the
  image given) and the test output our own :class:`~napari_attnseg.inference.Predictor`
  computes from it;
* a cover image (the input beside our prediction), the seed papers that
  match the architecture as citations, the card's licence, training details
  and validation metrics, and a README;
* our own safetensors weights and JSON card as attachments
  (``package.WEIGHTS_NAME``/``CARD_NAME``), so ``attnseg`` and the widgets
  load the package back exactly (``napari_attnseg.zoo.load("X.zip")``).

Card normalisations and what happens to them: ``zscore`` →
``zero_mean_unit_variance`` over (y, x) per image and channel; ``dataset`` →
``fixed_zero_mean_unit_variance`` (per channel); ``percentile`` →
``scale_range`` + ``clip`` to [0, 1]; ``minmax`` → ``scale_range`` 0–100 %;
``none`` → nothing. **CLAHE** (``"clahe": true``) has no bioimage.io
preprocessing step: export is refused with an error that says so, because
consumers would feed the network inputs it was never trained on. Grey↔RGB
conversion, tiling and flip TTA, which ``attnseg`` does around the network,
are not part of the package: it takes exactly ``in_channels`` channels and
consumers tile as they choose (the README says this).

``bioimageio.spec`` is an optional dependency (``pip install
"napari-attnseg[bioimageio]"``), imported only when exporting.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from .. import __version__
from .._files import atomic_write
from .._sample_data import load_sample
from ..data.input_spec import InputSpec, canonical
from ..data.io import read_image
from ..data.normalization import normalize
from ..inference.predictor import Predictor
from ..models.base import SegmentationModel
from ..models.persistence import card_of, save_model
from ..models.registry import get_entry
from ..zoo.bioimageio import CARD_NAME, WEIGHTS_NAME
from .wrapper import to_torchscript, wrap

INSTALL_HINT = 'pip install "napari-attnseg[bioimageio]"'
#: edge of the (square) test crop taken from the sample image
TEST_SIZE = 256
#: eager vs TorchScript outputs must agree to this (float32, same CPU kernels)
TORCHSCRIPT_ATOL = 1e-5


class ExportError(ValueError):
    """The model cannot be exported as asked (the message says why)."""


@dataclass(frozen=True)
class Citation:
    text: str
    doi: str


U_NET = Citation(
    "Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015.",
    "10.1007/978-3-319-24574-4_28",
)
FOCAL_ATTENTION = Citation(
    "Yeung M, Rundo L, Sala E, Schönlieb C-B, Yang G. Focal Attention Networks: optimising "
    "attention for biomedical image segmentation. IEEE ISBI 2022.",
    "10.1109/ISBI52829.2022.9761414",
)
SQUEEZE_EXCITATION = Citation(
    "Hu J, Shen L, Sun G. Squeeze-and-Excitation Networks. IEEE CVPR 2018.",
    "10.1109/CVPR.2018.00745",
)
ATTENTION_GATES = Citation(
    "Oktay O, Schlemper J, Le Folgoc L, et al. Attention U-Net: Learning Where to Look for "
    "the Pancreas. MIDL 2018 (arXiv:1804.03999).",
    "10.48550/arXiv.1804.03999",
)
FOCUSNET = Citation(
    "Kaul C, Manandhar S, Pears N. FocusNet: An attention-based Fully Convolutional Network "
    "for Medical Image Segmentation. IEEE ISBI 2019 (arXiv:1902.03091).",
    "10.48550/arXiv.1902.03091",
)
AF_NET = Citation(
    "Hou G, Qin J, Xiang X, Tan Y, Xiong NN. AF-Net: A Medical Image Segmentation Network "
    "Based on Attention Mechanism and Feature Fusion. Computers, Materials & Continua "
    "69(2):1877-1891, 2021.",
    "10.32604/cmc.2021.017481",
)
JOINT_ATTENTION = Citation(
    "Zhang M, Dong B, Li Q. Joint Attention for Medical Image Segmentation. IEEE ISBI 2022.",
    "10.1109/ISBI52829.2022.9761624",
)

#: bioimage.io tags per task (modality and content categories where one fits)
TASK_TAGS = {
    "nuclei": ["nuclei", "fluorescence-light-microscopy", "transmission-light-microscopy"],
    "vessels": ["vasculature", "retina", "fundus-photography"],
    "membranes": ["cell-membrane", "electron-microscopy"],
    "polyp": ["polyp", "colonoscopy", "endoscopy"],
}
NETWORK_TAGS = {
    "denseunet": ["densenet", "unet"],
    "denseunet161": ["densenet", "unet"],
    "afnet": ["resnet"],
    "focusnet": ["resnet", "unet"],
}
#: default test/cover image per task (bundled samples, see _sample_data)
TASK_SAMPLES = {"nuclei": "nuclei", "vessels": "fundus"}


def citations_for(config: Mapping[str, Any]) -> list[Citation]:
    """The papers an architecture config implements (seed papers and the blocks they build on)."""
    name = str(config.get("name", ""))
    if name == "focusnet":
        return [FOCUSNET, SQUEEZE_EXCITATION]
    if name == "afnet":
        return [AF_NET]
    if name.startswith("denseunet"):
        return [JOINT_ATTENTION]
    if "gates" in config or "se" in config:  # the U-Net family
        se, gates = any(config.get("se") or ()), any(config.get("gates") or ())
        cites = [U_NET]
        if se or gates or config.get("focal") is not None:
            cites.append(FOCAL_ATTENTION)
        if se:
            cites.append(SQUEEZE_EXCITATION)
        if gates:
            cites.append(ATTENTION_GATES)
        return cites
    return []


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


# -- helpers -----------------------------------------------------------------
def _spec():
    """The bioimageio.spec modules, or an error that says how to install them."""
    try:
        import bioimageio.spec as spec
        from bioimageio.spec.model import v0_5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExportError(f"bioimage.io export needs bioimageio.spec: {INSTALL_HINT}") from exc
    return spec, v0_5


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


def _class_names(model: SegmentationModel) -> list[str]:
    k = max(2, model.n_classes)
    names = list(card_of(model).class_names or [])
    if len(names) != k:
        names = ["background", "foreground"] if k == 2 else [f"class{i}" for i in range(k)]
    return _unique([_identifier(n, "class") for n in names])


def _channel_names(in_channels: int) -> list[str]:
    if in_channels == 1:
        return ["grey"]
    if in_channels == 3:
        return ["red", "green", "blue"]
    return [f"channel{i}" for i in range(in_channels)]


def _package_name(card_name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", card_name.replace(".", " ")).strip()
    name = re.sub(r"\s+", " ", f"napari-attnseg {text}".strip())
    return name[:128]


def min_input_size(model: SegmentationModel) -> int:
    """Smallest image edge the exported network accepts (its deepest feature map is ≥ 2×2)."""
    card = card_of(model)
    if card.input_size:
        return model.size_multiple
    scale = float(card.input_scale or 1.0)
    return max(1, math.ceil((model.size_multiple + 1) / scale))


def _default_image(model: SegmentationModel) -> tuple[np.ndarray, str]:
    task = str(card_of(model).metadata.get("task", ""))
    sample = TASK_SAMPLES.get(task) or (
        "nuclei_brightfield" if model.in_channels == 3 else "nuclei"
    )
    image, _ = load_sample(sample)
    return image, f"the bundled {sample} sample"


def _test_crop(image: np.ndarray, model: SegmentationModel, source: str) -> np.ndarray:
    """A centred crop of ``image`` as (C, H, W) float32 raw intensities.

    ``image`` follows napari's layout (grey, RGB(A) last); a ``(C, H, W)``
    array whose C is the model's channel count (> 1) is taken as channels.
    """
    image = np.asarray(image)
    # a (C, H, W) array with the model's channel count is a multichannel image, not a stack
    channels_first = image.ndim == 3 and 1 < image.shape[0] == model.in_channels
    try:
        plane, layout = canonical(image, channel_axis=0 if channels_first else None)
        if layout.stack_shape:
            raise ValueError(f"it is a stack of shape {layout.shape}, not one 2D image")
        chw = InputSpec(model.in_channels, {"mode": "none"}).channels(plane, rgb=layout.rgb)
    except ValueError as exc:
        raise ExportError(f"cannot use {source} as the test image: {exc}") from exc
    low = min_input_size(model)
    height, width = chw.shape[-2:]
    if min(height, width) < low:
        raise ExportError(
            f"the test image ({source}) is {height}×{width}; the model needs at least "
            f"{low}×{low} pixels"
        )
    size = max(low, min(TEST_SIZE, height, width))
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(chw[:, top : top + size, left : left + size], dtype=np.float32)


def _display(chw: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for the cover: 1–99.8 % percentile stretch per channel."""
    channels = chw if chw.shape[0] == 3 else np.repeat(chw[:1], 3, axis=0)
    out = np.empty(channels.shape[1:] + (3,), dtype=np.uint8)
    for c, channel in enumerate(channels):
        lo, hi = np.percentile(channel, [1, 99.8])
        scaled = (channel - lo) / (hi - lo) if hi > lo else np.zeros_like(channel)
        out[..., c] = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return out


def _cover(chw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Input beside input-with-prediction (filled tint and outlines): a 2:1 RGB image."""
    from skimage.segmentation import find_boundaries
    from skimage.transform import resize

    shown = _display(chw).astype(np.float32)
    overlay = shown.copy()
    colours = np.array(
        [[255, 0, 255], [0, 255, 255], [255, 255, 0], [255, 128, 0], [0, 255, 0]], np.float32
    )
    for index, value in enumerate(v for v in np.unique(labels) if v != 0):
        mask = labels == value
        colour = colours[index % len(colours)]
        overlay[mask] = 0.6 * overlay[mask] + 0.4 * colour
        overlay[find_boundaries(mask, mode="inner")] = colour
    side = 256

    def square(panel: np.ndarray) -> np.ndarray:
        return resize(panel, (side, side), order=1, preserve_range=True, anti_aliasing=True)

    both = np.concatenate([square(shown), square(overlay)], axis=1)
    return np.clip(np.round(both), 0, 255).astype(np.uint8)


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


def _training_details(training: Mapping[str, Any], normalization_text: str) -> dict[str, Any]:
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


def _readme(
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
    binary = model.n_classes == 1
    rule = (
        f"as {classes[1]} where P({classes[1]}) ≥ {card.threshold}"
        if binary
        else "with the class of highest probability"
    )
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


def _environment_yaml() -> str:
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


@dataclass
class ExportReport:
    """What :func:`export_bioimageio` wrote and what it had to leave out."""

    path: Path
    test_source: str
    notes: list[str] = field(default_factory=list)


# -- the export --------------------------------------------------------------
def export_bioimageio(
    model: SegmentationModel,
    out: str | os.PathLike,
    *,
    image: np.ndarray | str | os.PathLike | None = None,
    authors: Sequence[str] = (),
    overwrite: bool = False,
) -> ExportReport:
    """Write ``model`` (with its card) as a bioimage.io model package ``out`` (a ``.zip``).

    ``image`` (an array or an image file) supplies the test input and cover;
    by default a bundled sample that suits the model's task. ``authors``
    defaults to the card's ``metadata["authors"]``. The package is validated
    by ``bioimageio.spec`` before it is moved into place; nothing is left
    behind on failure. Runs on the CPU.
    """
    out = Path(out).expanduser()
    if out.suffix.lower() != ".zip":
        raise ExportError(f"a bioimage.io package is a .zip file, got {out}")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; choose another name or overwrite it (--force)")
    if not model.config:
        raise ExportError("only models built by napari-attnseg (with a config) can be exported")
    card = card_of(model)
    steps, normalization_text = preprocessing_steps(card.normalization, model.in_channels)
    spec, v5 = _spec()

    notes: list[str] = []
    if image is None:
        raw, test_source = _default_image(model)
        notes.append(f"test input and cover: {test_source} (pass an image of your own data)")
    elif isinstance(image, str | os.PathLike):
        raw, test_source = read_image(image), f"the image {Path(image).name}"
    else:
        raw, test_source = np.asarray(image), "the image given"
    chw = _test_crop(raw, model, test_source)

    model = model.cpu().eval()
    # our own pipeline at the trained scale, as the package runs it: no object-size
    # matching, automatic region of interest or instance labels (they stay outside it)
    predictor = Predictor(
        device="cpu", tile_size=None, precision="fp32", diameter=None, roi="none",
        instances=False, tta=False,
    )
    prediction = predictor.predict(model, np.moveaxis(chw, 0, -1), channel_axis=-1)
    probabilities, labels = prediction.probabilities, prediction.labels
    exported = wrap(model)
    torchscript = to_torchscript(exported, torch.from_numpy(chw)[None])
    _check_torchscript(exported, torchscript, chw, card.normalization, min_input_size(model))

    classes = _class_names(model)
    channels = _channel_names(model.in_channels)
    name = _package_name(card.name or model.name)
    cites = citations_for(model.config)
    task = str(card.metadata.get("task", ""))
    author_names = list(authors) or [str(a) for a in card.metadata.get("authors", []) or []]
    if not author_names:
        notes.append("no authors given: pass --author NAME (bioimage.io asks for them)")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="attnseg-bioimageio-") as tmp:
        folder = Path(tmp)
        files = {
            "test_input": folder / "test_input.npy",
            "test_output": folder / "test_output.npy",
            "sample_input": folder / "sample_input.tif",
            "sample_output": folder / "sample_output.tif",
            "state_dict": folder / "weights.pt",
            "torchscript": folder / "weights_torchscript.pt",
            "cover": folder / "cover.png",
            "readme": folder / "README.md",
            "environment": folder / "environment.yaml",
        }
        np.save(files["test_input"], chw[None])
        np.save(files["test_output"], probabilities[None].astype(np.float32))
        tifffile.imwrite(files["sample_input"], chw, photometric="minisblack")
        tifffile.imwrite(
            files["sample_output"], probabilities.astype(np.float32), photometric="minisblack"
        )
        torch.save(exported.state_dict(), files["state_dict"])
        torchscript.save(str(files["torchscript"]))
        _write_png(files["cover"], _cover(chw, labels))
        min_size = min_input_size(model)
        files["readme"].write_text(
            _readme(
                name=name,
                model=model,
                channels=channels,
                classes=classes,
                normalization_text=normalization_text,
                min_size=min_size,
                test_source=test_source,
                cites=cites,
            ),
            encoding="utf-8",
        )
        files["environment"].write_text(_environment_yaml(), encoding="utf-8")
        ours = save_model(model, folder / WEIGHTS_NAME, card=card)
        license_value: Any = _license(card.license, folder, v5, notes)

        pytorch_version = v5.Version(torch.__version__.split("+")[0])
        config = {
            "bioimageio": {
                "architecture_type": model.name[:32],
                "architecture_description": get_entry(model.name).description,
                "model_parameter_count": int(sum(p.numel() for p in model.parameters())),
                "task": "semantic segmentation",
                "target_structure": [task] if task else [],
                "training": _training_details(card.training, normalization_text),
            },
            "napari_attnseg": {
                "version": __version__,
                "weights": WEIGHTS_NAME,
                "card": CARD_NAME,
                "architecture": model.config,
                "normalization": dict(card.normalization),
                "threshold": float(card.threshold),
                "class_names": list(card.class_names),
            },
        }
        descr = v5.ModelDescr(
            name=name,
            description=_short(card.description or f"{model.name} segmentation model", 500),
            authors=[v5.Author(name=a) for a in author_names],
            cite=[v5.CiteEntry(text=c.text, doi=v5.Doi(c.doi)) for c in cites],
            license=license_value,
            documentation=v5.FileDescr(source=files["readme"]),
            covers=[v5.FileDescr(source=files["cover"])],
            attachments=[v5.FileDescr(source=ours), v5.FileDescr(source=ours.with_suffix(".json"))],
            tags=_tags(model.name, task),
            version=__version__ if _semver(__version__) else None,
            inputs=[
                v5.InputTensorDescr(
                    id=v5.TensorId("input"),
                    description=f"{model.in_channels} channel(s), raw intensities",
                    axes=[
                        v5.BatchAxis(),
                        v5.ChannelAxis(channel_names=[v5.Identifier(c) for c in channels]),
                        v5.SpaceInputAxis(
                            id=v5.AxisId("y"), size=v5.ParameterizedSize(min=min_size, step=1)
                        ),
                        v5.SpaceInputAxis(
                            id=v5.AxisId("x"), size=v5.ParameterizedSize(min=min_size, step=1)
                        ),
                    ],
                    test_tensor=v5.FileDescr(source=files["test_input"]),
                    sample_tensor=v5.FileDescr(source=files["sample_input"]),
                    data=v5.IntervalOrRatioDataDescr(type="float32"),
                    preprocessing=steps,
                )
            ],
            outputs=[
                v5.OutputTensorDescr(
                    id=v5.TensorId("probabilities"),
                    description="class probabilities (softmax over classes)",
                    axes=[
                        v5.BatchAxis(),
                        v5.ChannelAxis(channel_names=[v5.Identifier(c) for c in classes]),
                        v5.SpaceOutputAxis(
                            id=v5.AxisId("y"),
                            size=v5.SizeReference(
                                tensor_id=v5.TensorId("input"), axis_id=v5.AxisId("y")
                            ),
                        ),
                        v5.SpaceOutputAxis(
                            id=v5.AxisId("x"),
                            size=v5.SizeReference(
                                tensor_id=v5.TensorId("input"), axis_id=v5.AxisId("x")
                            ),
                        ),
                    ],
                    test_tensor=v5.FileDescr(source=files["test_output"]),
                    sample_tensor=v5.FileDescr(source=files["sample_output"]),
                    data=v5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
                )
            ],
            weights=v5.WeightsDescr(
                pytorch_state_dict=v5.PytorchStateDictWeightsDescr(
                    source=files["state_dict"],
                    architecture=v5.ArchitectureFromLibraryDescr(
                        import_from="napari_attnseg.export",
                        callable=v5.Identifier("build_model"),
                        kwargs={
                            "config": model.config,
                            "input_size": list(card.input_size) if card.input_size else None,
                            "input_scale": float(card.input_scale or 1.0),
                        },
                    ),
                    pytorch_version=pytorch_version,
                    dependencies=v5.FileDescr(source=files["environment"]),
                ),
                torchscript=v5.TorchscriptWeightsDescr(
                    source=files["torchscript"],
                    pytorch_version=pytorch_version,
                    parent="pytorch_state_dict",
                    comment="scripted by napari-attnseg; runs without napari-attnseg",
                ),
            ),
            config=config,
        )
        package = folder / "package.zip"
        try:
            spec.save_bioimageio_package(descr, output_path=package)
        except ValueError as exc:
            raise ExportError(f"bioimage.io rejected the package: {exc}") from exc
        atomic_write(out, lambda target: shutil.copyfile(package, target))
    return ExportReport(path=out, test_source=test_source, notes=notes)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _semver(version: str) -> bool:
    return re.fullmatch(r"\d+\.\d+\.\d+", version) is not None


def _tags(arch: str, task: str) -> list[str]:
    network = NETWORK_TAGS.get(arch, ["unet"])
    tags = ["2d", "pytorch", "semantic-segmentation", *network, *TASK_TAGS.get(task, [])]
    tags += ["attention", "napari", "napari-attnseg", arch.replace("_", "-")]
    return list(dict.fromkeys(tags))


def _license(text: str, folder: Path, v5, notes: list[str]) -> Any:
    """An SPDX identifier as is; other licence text goes to LICENSE.md (a custom licence file)."""
    text = (text or "").strip()
    if text:
        try:
            return v5.LicenseId(text)
        except ValueError:
            pass
    path = folder / "LICENSE.md"
    body = text or "The model card gives no licence; ask the model's authors before reuse."
    path.write_text(f"# Licence\n\n{body}\n", encoding="utf-8")
    notes.append("the card's licence is not one SPDX identifier: its text is in LICENSE.md")
    return v5.FileDescr(source=path)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, optimize=True)


def _check_torchscript(exported, torchscript, chw, normalization, min_size) -> None:
    """The TorchScript weights must give the eager model's output, at two image sizes."""
    crops = [chw]
    smaller = (chw.shape[1] - 3, chw.shape[2] - 5)
    if min(smaller) >= min_size:
        crops.append(chw[:, : smaller[0], : smaller[1]])
    with torch.no_grad():
        for crop in crops:
            x = torch.from_numpy(normalize(crop, normalization))[None]
            difference = float((exported(x) - torchscript(x)).abs().max())
            if not difference <= TORCHSCRIPT_ATOL:
                raise ExportError(
                    f"the TorchScript version of this model differs from it by {difference:.2g} "
                    f"on a {crop.shape[1]}×{crop.shape[2]} image; it cannot be exported safely"
                )
