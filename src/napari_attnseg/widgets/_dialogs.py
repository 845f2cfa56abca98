"""The file dialogs and questions the widgets ask: real Qt dialogs, one place.

Every "where to?" is a real file dialog (``QFileDialog``), never a typed
path. Saving confirms an overwrite itself (:func:`save_file` turns the
dialog's own check off): the suffix is added *after* the dialog returns
(``objects`` → ``objects.csv``), so only the final name can be checked.
What a bioimage.io package says about its model (authors, description,
licence, test image) is asked in a form prefilled from the model card
(:class:`ExportDetailsDialog`), never as command-line flags.
Tests answer the dialogs by replacing the ``QFileDialog`` / ``QMessageBox`` /
``QInputDialog`` static methods, and :class:`ExportDetailsDialog` by replacing
its ``exec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

#: the folder the last dialog was in (the next one starts there)
_LAST_FOLDER: list[Path] = []


def _start(name: str = "") -> str:
    folder = _LAST_FOLDER[-1] if _LAST_FOLDER else Path.home()
    return str(folder / name) if name else str(folder)


def _remember(path: Path) -> None:
    _LAST_FOLDER[:] = [path if path.is_dir() else path.parent]


def confirm(parent: QWidget | None, title: str, text: str, action: str = "Replace") -> bool:
    """Ask a yes/no question; True only for an explicit yes (``action``)."""
    box = QMessageBox.StandardButton
    answer = QMessageBox.question(parent, title, f"{text}\n\n{action}?", box.Yes | box.No, box.No)
    return answer == box.Yes


def confirm_overwrite(parent: QWidget | None, paths: Sequence[Path], what: str = "") -> bool:
    """True when none of ``paths`` exists, or the user agrees to replace them."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if not existing:
        return True
    if len(existing) == 1:
        text = f"{existing[0].name} already exists in {existing[0].parent}."
    else:
        shown = ", ".join(p.name for p in existing[:4]) + (", …" if len(existing) > 4 else "")
        text = f"{len(existing)} files already exist in {existing[0].parent}: {shown}."
    if what:
        text += f" {what}"
    return confirm(parent, "Replace existing files?", text)


def save_file(
    parent: QWidget | None,
    title: str,
    filters: Sequence[tuple[str, str]],
    name: str = "",
) -> Path | None:
    """A file to write, from a save dialog; None when cancelled or an overwrite is declined.

    ``filters`` pairs a description with a suffix (``("CSV table", ".csv")``);
    a name without one of the suffixes gets the suffix of the chosen filter.
    """
    text = ";;".join(f"{label} (*{suffix})" for label, suffix in filters)
    path, chosen = QFileDialog.getSaveFileName(
        parent, title, _start(name), text, options=QFileDialog.Option.DontConfirmOverwrite
    )
    if not path:
        return None
    path = Path(path)
    suffixes = [suffix.lower() for _, suffix in filters]
    if path.suffix.lower() not in suffixes:
        suffix = next((s for label, s in filters if chosen.startswith(label)), filters[0][1])
        path = path.with_name(path.name + suffix)
    _remember(path)
    if not confirm_overwrite(parent, [path]):
        return None
    return path


def open_file(parent: QWidget | None, title: str, filters: str) -> Path | None:
    """A file to read, from an open dialog; None when cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, title, _start(), filters)
    if not path:
        return None
    _remember(Path(path))
    return Path(path)


def choose_folder(parent: QWidget | None, title: str) -> Path | None:
    """A folder, from a folder dialog; None when cancelled."""
    path = QFileDialog.getExistingDirectory(parent, title, _start())
    if not path:
        return None
    _remember(Path(path))
    return Path(path)


def ask_text(parent: QWidget | None, title: str, label: str, text: str = "") -> str | None:
    """A line of text from a small dialog; None when cancelled or left empty."""
    value, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Normal, text)
    value = value.strip() if ok else ""
    return value or None


@dataclass
class ExportDetails:
    """What a bioimage.io package says about its model (the export dialog's fields)."""

    authors: list[str] = field(default_factory=list)
    description: str = ""
    licence: str = ""
    #: the image layer whose crop is the package's test input and cover; None: a bundled sample
    test_image: str | None = None


#: licences offered (SPDX identifiers bioimage.io knows); any other text may be typed
LICENCES = ("CC-BY-4.0", "CC0-1.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "MIT", "BSD-3-Clause",
            "Apache-2.0", "GPL-3.0-or-later")
#: the longest description bioimage.io shows (the writer shortens longer ones)
DESCRIPTION_LIMIT = 500
BUNDLED_SAMPLE = "a bundled sample image for the model's task"


class ExportDetailsDialog(QDialog):
    """Authors, description, licence and test image of a bioimage.io package.

    The fields start from the model card (:class:`ExportDetails`); Export
    stays disabled until at least one author is given, since bioimage.io
    asks who made a model.
    """

    def __init__(self, parent: QWidget | None, title: str, details: ExportDetails,
                 images: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.authors = QPlainTextEdit("\n".join(details.authors))
        self.authors.setPlaceholderText("one name per line, e.g. Ada Lovelace")
        self.authors.setToolTip("who made the model: one name per line (bioimage.io asks for them)")
        self.authors.setFixedHeight(self.fontMetrics().lineSpacing() * 4)
        self.description = QPlainTextEdit(details.description)
        self.description.setPlaceholderText("what the model segments, in which images")
        self.description.setToolTip(
            f"shown with the model by bioimage.io tools (up to {DESCRIPTION_LIMIT} characters)"
        )
        self.description.setFixedHeight(self.fontMetrics().lineSpacing() * 6)
        self.licence = QComboBox()
        self.licence.setEditable(True)
        self.licence.addItems(LICENCES)
        self.licence.setCurrentText(details.licence)
        self.licence.lineEdit().setPlaceholderText("e.g. CC-BY-4.0")
        self.licence.setToolTip(
            "the terms others may use the model under: an SPDX identifier (e.g. CC-BY-4.0); "
            "any other text is written to the package's LICENSE.md"
        )
        self.test_image = QComboBox()
        self.test_image.addItem(BUNDLED_SAMPLE, None)
        for name in images:
            self.test_image.addItem(f"image layer: {name}", name)
        if details.test_image is not None:
            index = self.test_image.findData(details.test_image)
            self.test_image.setCurrentIndex(max(index, 0))
        self.test_image.setToolTip(
            "the package's test input and cover picture: a centred crop of at most 256×256 "
            "pixels (of the slice shown now); an image of your own data shows what the model "
            "is for"
        )
        self.missing = QLabel("give at least one author")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("authors", self.authors)
        form.addRow("description", self.description)
        form.addRow("licence", self.licence)
        form.addRow("test image", self.test_image)
        layout = QVBoxLayout(self)
        intro = QLabel("What the bioimage.io package says about the model (from its card; "
                       "the model itself is not changed).")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.missing)
        layout.addWidget(buttons)
        self.authors.textChanged.connect(self._update_ok)
        self._update_ok()

    def _update_ok(self) -> None:
        ready = bool(self.details().authors)
        self.ok_button.setEnabled(ready)
        self.missing.setVisible(not ready)

    def details(self) -> ExportDetails:
        """The fields as they are now (authors one per line, blanks dropped)."""
        authors = [line.strip() for line in self.authors.toPlainText().splitlines()]
        return ExportDetails(
            authors=[a for a in authors if a],
            description=" ".join(self.description.toPlainText().split()),
            licence=self.licence.currentText().strip(),
            test_image=self.test_image.currentData(),
        )


def ask_export_details(parent: QWidget | None, title: str, details: ExportDetails,
                       images: Sequence[str] = ()) -> ExportDetails | None:
    """The export dialog's fields once the user presses Export; None when cancelled."""
    dialog = ExportDetailsDialog(parent, title, details, images)
    try:
        if not dialog.exec():
            return None
        answer = dialog.details()
    finally:
        dialog.deleteLater()
    return answer if answer.authors else None
