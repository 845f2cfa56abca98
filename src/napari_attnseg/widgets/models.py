"""The Models dock widget: every model this session knows, its card, and what can be done with it.

The list holds the zoo (★ = a task's default), the user's saved models,
model files loaded this session and fine-tuned models not saved yet — the
same list every model picker offers (:mod:`._models`). Selecting one shows
its card: architecture, task, classes, input, validation metrics, licence,
what it was trained or fine-tuned from, and its object rules (object
diameter, instance labels, automatic region).

* **Rename…** and **Delete…** act on your saved models only (delete asks
  first); zoo models are read-only; a file loaded from elsewhere is only taken
  off the list (✕ beside a model picker); deleting an unsaved model drops it.
* **Export…** writes any model through a real file dialog: a ``.safetensors``
  file (with its ``.json`` card) or a bioimage.io model package (``.zip``,
  ``export_bioimageio``: validated, with TorchScript weights and a test), the
  latter in a thread worker with progress and Cancel. A package first asks
  its authors, description, licence and test image in a form prefilled from
  the card (:class:`~._dialogs.ExportDetailsDialog`; Cancel exports nothing);
  what is typed goes into the package and the card inside it. Without the
  optional ``bioimageio.spec`` the message names the install command.
* **Import…** copies a ``.safetensors`` model (named after the file), or a
  bioimage.io ``.zip`` that napari-attnseg exported (named after the card
  inside), into your model folder, asking before it replaces a model of the
  same name; a package from another tool is refused with the reason.

Every file is written atomically; nothing is replaced without a yes.
"""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTextBrowser,
    QWidget,
)

from ..export import export_bioimageio
from ..export.bioimageio import INSTALL_HINT
from ..models.persistence import load_model, save_model
from ..zoo import resolve
from ..zoo.bioimageio import is_package
from ._dialogs import ExportDetails, ask_export_details, ask_text, confirm, open_file, save_file
from ._form import scroll_body
from ._jobs import JobContext, JobPanel
from ._layers import current_index, layer_array, output_info
from ._models import ModelChoice, ModelDetails, session, user_model_path
from ._notifications import describe_error, notify_error, notify_info

EXPORT_FORMATS = (("napari-attnseg model (safetensors + card)", ".safetensors"),
                  ("bioimage.io model package", ".zip"))
KIND_NAMES = {"zoo": "zoo (read-only)", "user": "your model folder",
              "file": "a file loaded this session", "session": "fine-tuned, not saved yet"}


def bioimageio_missing() -> str | None:
    """What to do when bioimage.io export cannot run here (its optional package is missing)."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        return (f"bioimage.io export needs the optional package bioimageio.spec: install it "
                f"with {INSTALL_HINT}, then export again")
    return None


def card_authors(card) -> list[str]:
    """The card's authors (``metadata["authors"]``: names, or bioimage.io-style dicts)."""
    authors = (card.metadata or {}).get("authors") or []
    if isinstance(authors, str | dict):
        authors = [authors]
    names = [str(a.get("name", "")) if isinstance(a, dict) else str(a) for a in authors]
    return [n.strip() for n in names if n.strip()]


def export_details(card) -> ExportDetails:
    """The export dialog's fields as the card has them."""
    return ExportDetails(authors=card_authors(card), description=card.description or "",
                         licence=card.license or "")


def with_details(model: Any, details: ExportDetails) -> Any:
    """``model`` (a private copy) with a card that carries the authors, description and
    licence typed: the bioimage.io writer takes description and licence from the card."""
    from ..models.persistence import card_of

    card = card_of(model)
    model.card = dataclasses.replace(
        card, description=details.description, license=details.licence,
        metadata={**card.metadata, "authors": list(details.authors)},
    )
    return model


#: export notes that give command-line advice, and what the dialog offers instead
_CLI_NOTES = (
    (re.compile(r"no authors given:.*"), "no authors given (bioimage.io asks for them)"),
    (re.compile(r"\(pass an image of your own data\)"),
     "(choose an image layer as the test image in the export form to show your own data)"),
    (re.compile(r"\s*[(;,]?\s*(?:pass|use|add) --[\w-]+[^);]*\)?"), ""),
)


def gui_note(note: str) -> str:
    """An export note as the GUI says it: no command-line flags."""
    for pattern, replacement in _CLI_NOTES:
        note = pattern.sub(replacement, note)
    return note.strip()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def card_summary(choice: ModelChoice, details: ModelDetails) -> str:
    """The card as a small HTML table (what the model manager shows)."""
    card = details.card
    rows: list[tuple[str, str]] = [("source", KIND_NAMES[choice.kind])]
    if choice.kind == "zoo":
        rows.append(("file", Path(choice.key).name + " (shipped with the plugin)"))
    elif choice.kind != "session":
        rows.append(("file", choice.key))
    config = details.config
    shape = ", ".join(f"{k} {config[k]}" for k in ("width", "depth") if k in config)
    rows.append(("architecture", details.arch + (f" ({shape})" if shape else "")))
    task = card.metadata.get("task") or choice.task
    if task:
        rows.append(("task", str(task)))
    classes = card.class_names or [f"{details.n_classes} class(es)"]
    rows.append(("classes", ", ".join(map(str, classes))))
    size = (f"resized to {card.input_size[0]}×{card.input_size[1]}" if card.input_size
            else f"scale ×{card.input_scale:g}")
    rows.append(("input", f"{details.in_channels} channel(s), "
                          f"{card.normalization.get('mode', '?')} normalisation, {size}"))
    rows += _metric_rows(card.metrics)
    rows.append(("licence", card.license or "not stated"))
    lineage = []
    if card.base_model:
        lineage.append(f"fine-tuned from {card.base_model}")
    dataset = card.training.get("dataset") if card.training else None
    if dataset:
        lineage.append(f"trained on {dataset}")
    rows.append(("trained from", "; ".join(lineage) or "not recorded"))
    rows.append(("objects", _object_rules(card)))
    if card.description:
        rows.append(("description", card.description))
    body = "".join(
        f"<tr><td style='padding-right:8px'><b>{html.escape(k)}</b></td>"
        f"<td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<h4>{html.escape(choice.name)}</h4><table>{body}</table>"


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, label in (("validation", "validation"), ("scribble_validation",
                                                      "validation (scribbles only)")):
        block = metrics.get(key) or {}
        mean = block.get("mean") or {}
        if not mean:
            continue
        shown = ", ".join(f"{name} {mean[name]:.3f}" for name in
                          ("dice", "jaccard", "precision", "sensitivity") if name in mean)
        n = block.get("n_images")
        rows.append((label, shown + (f" on {n} image(s)" if n else "")))
    if not rows:
        rows.append(("validation", "no metrics recorded"))
    return rows


def _object_rules(card) -> str:
    rules = []
    if card.object_diameter:
        text = f"diameter {card.object_diameter:.1f} px at training scale"
        if card.object_diameter_range:
            low, high = card.object_diameter_range
            text += f" (typical {low:.1f}–{high:.1f})"
        rules.append(text)
    if card.instances:
        recipe = ", ".join(f"{k} {v}" for k, v in card.instances.items())
        rules.append(f"instance labels ({recipe})")
    if card.roi:
        rules.append(f"automatic region: {card.roi.get('method', card.roi)}")
    return "; ".join(rules) or "none (a semantic model: masks only)"


class ModelManagerWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Models."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.list = QListWidget()
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setMinimumHeight(140)
        self.list.currentRowChanged.connect(self._show_current)
        self.card = QTextBrowser()
        self.card.setOpenLinks(False)
        self.card.setMinimumHeight(220)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self.rename)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete)
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "write this model to a file you choose: safetensors (+ its card), or a bioimage.io "
            "model package (.zip) for ilastik, deepImageJ, QuPath, Fiji and bioimage.io tools"
        )
        self.export_button.clicked.connect(self.export)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip(
            "copy a model file (.safetensors, or a bioimage.io .zip exported by napari-attnseg) "
            "into your model folder"
        )
        self.import_button.clicked.connect(self.import_model)
        self.jobs = JobPanel(owner=self)
        self.jobs.finished.connect(self._update_buttons)
        self.jobs.setVisible(False)  # shown from the first export on
        buttons = QGridLayout()
        buttons.addWidget(self.rename_button, 0, 0)
        buttons.addWidget(self.delete_button, 0, 1)
        buttons.addWidget(self.export_button, 1, 0)
        buttons.addWidget(self.import_button, 1, 1)
        layout = scroll_body(self)
        layout.addWidget(QLabel("models (★ = a task's default)"))
        layout.addWidget(self.list)
        layout.addWidget(self.card, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.jobs)
        self._choices: list[ModelChoice] = []
        session().changed.connect(self.refresh)
        self.refresh()

    # -- the list ----------------------------------------------------------------
    def refresh(self) -> None:
        current = self.current()
        choices = session().choices()
        self._choices = choices
        self.list.blockSignals(True)
        self.list.clear()
        for choice in choices:
            item = QListWidgetItem(choice.label)
            item.setToolTip(f"{choice.name}\n{KIND_NAMES[choice.kind]}")
            self.list.addItem(item)
        row = choices.index(current) if current in choices else (0 if choices else -1)
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)
        self._show_current()

    def current(self) -> ModelChoice | None:
        row = self.list.currentRow()
        return self._choices[row] if 0 <= row < len(self._choices) else None

    def select(self, name: str) -> bool:
        """Select the model called ``name`` (as the pickers do); False if there is none."""
        found = session().find(name)
        if found is None or found not in self._choices:
            return False
        self.list.setCurrentRow(self._choices.index(found))
        return True

    def _show_current(self, *_: Any) -> None:
        choice = self.current()
        if choice is None:
            self.card.setHtml("<p>No models yet: <b>Import…</b> one from a file.</p>")
        else:
            try:
                self.card.setHtml(card_summary(choice, session().details(choice)))
            except Exception as exc:  # noqa: BLE001 - a broken or vanished file is shown
                self.card.setHtml(f"<p>cannot read this model: {html.escape(describe_error(exc))}"
                                  "</p>")
        self._update_buttons()

    def _update_buttons(self, *_: Any) -> None:
        choice = self.current()
        kind = choice.kind if choice is not None else None
        busy = self.jobs.busy
        self.rename_button.setEnabled(kind == "user" and not busy)
        self.delete_button.setEnabled(kind in ("user", "session") and not busy)
        self.export_button.setEnabled(choice is not None and not busy)
        self.import_button.setEnabled(not busy)
        why = {
            "zoo": "zoo models are read-only",
            "file": "this file lies outside your model folder: ✕ beside a model picker takes it "
                    "off the list (the file is kept)",
            "session": "save it first (Fine-tune ▸ Save as…, or Export…)",
            None: "select a model",
        }
        self.rename_button.setToolTip(
            "rename this model (its files and the name in its card)" if kind == "user"
            else why.get(kind, ""))
        self.delete_button.setToolTip(
            "delete this model's files (asks first)" if kind == "user"
            else "drop this unsaved model from the session (asks first)" if kind == "session"
            else why.get(kind, ""))

    # -- rename / delete ----------------------------------------------------------
    def rename(self) -> ModelChoice | None:
        choice = self.current()
        if choice is None or choice.kind != "user":
            notify_error("only your saved models can be renamed; zoo models are read-only")
            return None
        name = ask_text(self, "Rename a model", f"New name for {choice.name}:", choice.name)
        if name is None or name == choice.name:
            return None
        try:
            renamed = session().rename(choice, name)
        except (OSError, ValueError) as exc:
            notify_error(f"could not rename {choice.name}: {describe_error(exc)}")
            return None
        self.select(renamed.name)
        notify_info(f"renamed {choice.name} to {renamed.name}")
        return renamed

    def delete(self) -> bool:
        choice = self.current()
        if choice is None or choice.kind not in ("user", "session"):
            notify_error("only your saved models and unsaved ones can be deleted; zoo models "
                         "are read-only")
            return False
        what = ("Its files (weights and card) are deleted from your model folder."
                if choice.kind == "user" else "It was never saved: it will be gone.")
        if not confirm(self, "Delete a model?", f"Delete {choice.name}? {what}", "Delete"):
            return False
        try:
            session().delete(choice)
        except (OSError, ValueError) as exc:
            notify_error(f"could not delete {choice.name}: {describe_error(exc)}")
            return False
        notify_info(f"deleted {choice.name}")
        return True

    # -- export / import ------------------------------------------------------------
    def export(self) -> Path | None:
        """Ask where (a real save dialog), then write the model there."""
        choice = self.current()
        if choice is None:
            notify_error("select a model to export")
            return None
        path = save_file(self, f"Export {choice.name}", EXPORT_FORMATS,
                         f"{choice.name}.safetensors")
        if path is None:
            return None
        if choice.kind != "session" and _same_file(path, Path(choice.key)):
            notify_error(f"{path} is the model's own file: choose another name or folder")
            return None
        if path.suffix.lower() == ".zip":
            missing = bioimageio_missing()
            if missing:
                notify_error(missing)
                return None
            details = self._ask_export_details(choice)
            if details is None:
                return None
            return path if self._export_bioimageio(choice, path, details) else None
        try:
            save_model(session().load(choice), path)
        except (OSError, ValueError) as exc:
            notify_error(f"could not export {choice.name}: {describe_error(exc)}")
            return None
        notify_info(f"exported {choice.name} to {path}")
        return path

    def _image_names(self) -> list[str]:
        """The user's image layers (not the plugin's outputs), as test images to offer."""
        return [layer.name for layer in self.viewer.layers
                if isinstance(layer, Image) and output_info(layer) is None]

    def _ask_export_details(self, choice: ModelChoice) -> ExportDetails | None:
        try:
            details = export_details(session().details(choice).card)
        except Exception as exc:  # noqa: BLE001 - a broken or vanished file is one notification
            notify_error(f"could not export {choice.name}: {describe_error(exc)}")
            return None
        return ask_export_details(self, f"Export {choice.name} for bioimage.io", details,
                                  self._image_names())

    def _test_image(self, name: str | None) -> np.ndarray | None:
        """The slice shown now of the image layer called ``name`` (None: a bundled sample)."""
        if not name or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return np.asarray(layer_array(layer)[current_index(self.viewer, layer)])

    def _export_bioimageio(self, choice: ModelChoice, path: Path,
                           details: ExportDetails | None = None) -> bool:
        details = details or ExportDetails()
        image = self._test_image(details.test_image)

        def job(ctx: JobContext):
            ctx.progress(0, 1, "writing and validating the bioimage.io package")
            model = session().load(choice)  # a private copy: its card may change
            if details.authors or details.description or details.licence:
                model = with_details(model, details)
            ctx.cancel.raise_if_cancelled()
            return export_bioimageio(model, path, image=image, authors=details.authors,
                                     overwrite=True)

        def done(report) -> None:
            notes = [gui_note(note) for note in report.notes]
            shown = f" ({'; '.join(n for n in notes if n)})" if any(notes) else ""
            self.jobs.status.setText(f"exported {choice.name} to {report.path}")
            notify_info(f"exported {choice.name} as a bioimage.io package: {report.path}{shown}")

        self.jobs.setVisible(True)
        return self.jobs.start(job, on_success=done,
                               label=f"exporting {choice.name} for bioimage.io")

    def import_model(self, path: str | Path | None = None) -> ModelChoice | None:
        """Copy a model file (asked for when ``path`` is None) into the user model folder."""
        if path is None:
            path = open_file(self, "Import a model",
                             "models (*.safetensors *.zip);;all files (*)")
            if path is None:
                return None
        path = Path(path)
        try:
            weights = resolve(path)
            model = load_model(weights)
        except Exception as exc:  # noqa: BLE001 - any unusable file is one notification
            notify_error(f"cannot import {path.name}: {describe_error(exc)}")
            return None
        # a model file is named as the user named it; a package after the card inside it
        # (package files are called e.g. "nuclei-bioimageio.zip")
        card_name = model.card.name if model.card is not None else ""
        name = card_name if is_package(path) and card_name else path.stem
        target = user_model_path(name)
        if _same_file(target, weights):
            notify_info(f"{target.stem} is already in your model folder")
            self.select(target.stem)
            return None
        if target.exists() and not confirm(
            self, "Replace a saved model?",
            f"A model called {target.stem!r} already exists in {target.parent}.",
        ):
            return None
        try:
            choice = session().install(model, target)
        except (OSError, ValueError) as exc:
            notify_error(f"could not import {path.name}: {describe_error(exc)}")
            return None
        self.select(choice.name)
        notify_info(f"imported {path.name} as {choice.name}; it is now in every model list")
        return choice
