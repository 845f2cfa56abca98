"""Export a model as a bioimage.io model package (model spec 0.5), the zoo format of
ilastik, deepImageJ, QuPath, Fiji and napari's bioimage.io plugins.

:func:`export_bioimageio` writes one ``.zip`` holding

* ``pytorch_state_dict`` weights whose architecture is
  :func:`napari_attnseg.export.build_model` (rebuilt from our architecture
  config, so consumers need ``napari-attnseg`` installed — the package's
  ``environment.yaml`` says so), and standalone TorchScript weights;
* the input's preprocessing translated from the model card's normalisation
  (:func:`~.spec_text.preprocessing_steps`), and an output of class
  probabilities (sigmoid/softmax, resizing and padding happen inside the
  network, see ``wrapper.py``), so a consumer's output equals ours;
* a test input (raw intensities of a crop of a bundled sample, or of the
  image given) and the test output our own :class:`~napari_attnseg.inference.Predictor`
  computes from it (:mod:`.examples`);
* a cover image (the input beside our prediction), the seed papers that
  match the architecture as citations (:mod:`.citations`), the card's
  licence, training details and validation metrics, and a README
  (:mod:`.spec_text`);
* our own safetensors weights and JSON card as attachments
  (``package.WEIGHTS_NAME``/``CARD_NAME``), so ``attnseg`` and the widgets
  load the package back exactly (``napari_attnseg.zoo.load("X.zip")``, in
  :mod:`napari_attnseg.zoo.bioimageio`).

**CLAHE** (``"clahe": true``) has no bioimage.io preprocessing step: export
is refused with an error that says so, because consumers would feed the
network inputs it was never trained on. Grey↔RGB conversion, tiling and flip
TTA, which ``attnseg`` does around the network, are not part of the package:
it takes exactly ``in_channels`` channels and consumers tile as they choose
(the README says this).

``bioimageio.spec`` is an optional dependency (``pip install
"napari-attnseg[bioimageio]"``), imported only when exporting. This module
packages; the names of its sibling modules stay importable from here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from .. import __version__
from .._files import atomic_write
from ..data.input_spec import InputSpec
from ..data.io import read_image
from ..models.base import SegmentationModel
from ..models.persistence import card_of, save_model
from ..models.registry import get_entry
from ..zoo.bioimageio import CARD_NAME, WEIGHTS_NAME
from .citations import (
    AF_NET,
    ATTENTION_GATES,
    FOCAL_ATTENTION,
    FOCUSNET,
    JOINT_ATTENTION,
    NETWORK_TAGS,
    SQUEEZE_EXCITATION,
    TASK_TAGS,
    U_NET,
    Citation,
    citations_for,
    tags,
)
from .errors import INSTALL_HINT, ExportError
from .examples import (
    TASK_SAMPLES,
    TEST_SIZE,
    TORCHSCRIPT_ATOL,
    check_torchscript,
    cover,
    crop_for_test,
    default_image,
    min_input_size,
    predict_like_the_package,
    write_png,
)
from .spec_text import (
    channel_names,
    class_names,
    environment_yaml,
    package_name,
    preprocessing_steps,
    readme,
    semver,
    short,
    training_details,
)
from .wrapper import to_torchscript, wrap


def _spec():
    """The bioimageio.spec modules, or an error that says how to install them."""
    try:
        import bioimageio.spec as spec
        from bioimageio.spec.model import v0_5
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExportError(f"bioimage.io export needs bioimageio.spec: {INSTALL_HINT}") from exc
    return spec, v0_5


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
        raw, test_source = default_image(model)
        notes.append(f"test input and cover: {test_source} (pass an image of your own data)")
    elif isinstance(image, str | os.PathLike):
        raw, test_source = read_image(image), f"the image {Path(image).name}"
    else:
        raw, test_source = np.asarray(image), "the image given"
    chw = crop_for_test(raw, model, test_source)

    model = model.cpu().eval()
    prediction = predict_like_the_package(model, chw)
    probabilities, labels = prediction.probabilities, prediction.labels
    exported = wrap(model)
    torchscript = to_torchscript(exported, torch.from_numpy(chw)[None])
    check_torchscript(exported, torchscript, chw, InputSpec.of(model), min_input_size(model))

    classes = class_names(model)
    channels = channel_names(model.in_channels)
    name = package_name(card.name or model.name)
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
        write_png(files["cover"], cover(chw, labels))
        min_size = min_input_size(model)
        files["readme"].write_text(
            readme(
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
        files["environment"].write_text(environment_yaml(), encoding="utf-8")
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
                "training": training_details(card.training, normalization_text),
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
            description=short(card.description or f"{model.name} segmentation model", 500),
            authors=[v5.Author(name=a) for a in author_names],
            cite=[v5.CiteEntry(text=c.text, doi=v5.Doi(c.doi)) for c in cites],
            license=license_value,
            documentation=v5.FileDescr(source=files["readme"]),
            covers=[v5.FileDescr(source=files["cover"])],
            attachments=[v5.FileDescr(source=ours), v5.FileDescr(source=ours.with_suffix(".json"))],
            tags=tags(model.name, task),
            version=__version__ if semver(__version__) else None,
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


__all__ = [
    "AF_NET",
    "ATTENTION_GATES",
    "FOCAL_ATTENTION",
    "FOCUSNET",
    "INSTALL_HINT",
    "JOINT_ATTENTION",
    "NETWORK_TAGS",
    "SQUEEZE_EXCITATION",
    "TASK_SAMPLES",
    "TASK_TAGS",
    "TEST_SIZE",
    "TORCHSCRIPT_ATOL",
    "U_NET",
    "Citation",
    "ExportError",
    "ExportReport",
    "citations_for",
    "export_bioimageio",
    "min_input_size",
    "preprocessing_steps",
]
