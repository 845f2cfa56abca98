"""The file dialogs and questions the widgets ask: real Qt dialogs, one place.

Every "where to?" is a real file dialog (``QFileDialog``), never a typed
path. Saving confirms an overwrite itself (:func:`save_file` turns the
dialog's own check off): the suffix is added *after* the dialog returns
(``objects`` → ``objects.csv``), so only the final name can be checked.
Tests answer the dialogs by replacing the ``QFileDialog`` / ``QMessageBox`` /
``QInputDialog`` static methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QInputDialog, QLineEdit, QMessageBox, QWidget

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
