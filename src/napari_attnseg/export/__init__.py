"""Models leave napari-attnseg as bioimage.io model packages, and come back.

* :func:`export_bioimageio` — write a model as a bioimage.io package (spec 0.5;
  needs the optional ``bioimageio.spec``: ``pip install "napari-attnseg[bioimageio]"``);
* :func:`build_model` — the architecture callable such a package names, so
  bioimage.io consumers with napari-attnseg installed rebuild the network;
* :func:`extract_model` — our own model inside a package we exported (used by
  ``napari_attnseg.zoo.resolve``, so every MODEL argument accepts ``X.zip``).

Like the rest of the engine, this package never imports napari or Qt.
"""

from ..zoo.bioimageio import ForeignPackageError, extract_model, is_package
from .bioimageio import ExportError, ExportReport, citations_for, export_bioimageio
from .wrapper import ExportedModel, build_model, to_torchscript, wrap

__all__ = [
    "ExportError",
    "ExportReport",
    "ExportedModel",
    "ForeignPackageError",
    "build_model",
    "citations_for",
    "export_bioimageio",
    "extract_model",
    "is_package",
    "to_torchscript",
    "wrap",
]
