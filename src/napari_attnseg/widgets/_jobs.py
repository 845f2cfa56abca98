"""Running engine code from a dock widget without freezing the viewer.

:class:`JobPanel` runs a job in a napari thread worker behind a progress bar
and a Cancel button. Results, progress, messages and intermediate updates come
back to the GUI thread through Qt signals, so the viewer stays responsive and
layers are only ever touched on the GUI thread. Every exception is caught and
reported as a notification (:mod:`._notifications`), never raised into napari.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..progress import Cancelled, CancelToken
from ._notifications import describe_error, notify_error, notify_info, notify_warning

log = logging.getLogger("napari_attnseg.widgets")


@dataclass
class JobContext:
    """What a job function gets: cancellation, progress and two channels to the GUI thread."""

    cancel: CancelToken
    progress: Callable[..., None]
    #: a message for the user (e.g. the predictor's out-of-memory fallbacks)
    message: Callable[[str], None]
    #: any payload for the job's ``on_update`` handler (e.g. an epoch record)
    update: Callable[[Any], None]


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False


class JobPanel(QWidget):
    """A progress bar, a status line and a Cancel button that run one job at a time."""

    #: emitted on the GUI thread after a job's handlers ran (ok, cancelled or failed)
    finished = Signal()
    _progressed = Signal(int, int, str)
    _messaged = Signal(str)
    _updated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._token: CancelToken | None = None
        self._handlers: dict[str, Callable | None] = {}
        self.worker = None
        self._progressed.connect(self._show_progress)
        self._messaged.connect(notify_warning)
        self._updated.connect(self._on_update)
        self._set_idle("")

    @property
    def busy(self) -> bool:
        return self._token is not None

    def start(
        self,
        job: Callable[[JobContext], Any],
        *,
        on_success: Callable[[Any], None],
        on_update: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        label: str = "working",
    ) -> bool:
        """Run ``job(context)`` in a thread worker; handlers run on the GUI thread."""
        if self.busy:
            notify_warning("a job is already running in this widget: wait or cancel it")
            return False
        from napari.qt.threading import create_worker

        token = CancelToken()
        context = JobContext(token, self._progressed.emit, self._messaged.emit, self._updated.emit)

        def run() -> _Outcome:
            # every exception is caught here, so none reaches napari's error dialog;
            # library warnings go to the log instead of popping up as notifications
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("default")
                    value = job(context)
                for w in caught:
                    log.info("warning in %s: %s", label, w.message)
                return _Outcome(value=value)
            except Cancelled:
                return _Outcome(cancelled=True)
            except BaseException as exc:  # noqa: BLE001 - reported as a notification
                log.debug("job failed:\n%s", "".join(traceback.format_exception(exc)))
                return _Outcome(error=exc)

        self._token = token
        self._handlers = {
            "success": on_success, "update": on_update,
            "cancelled": on_cancelled, "failed": on_failed,
        }
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.bar.setVisible(True)
        self.status.setText(f"{label}…")
        self.cancel_button.setEnabled(True)
        self.destroyed.connect(token.cancel)  # a closed widget stops its job
        self.worker = create_worker(run, _start_thread=False)
        self.worker.returned.connect(self._finish)
        self.worker.start()
        return True

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()
            self.status.setText("cancelling…")
            self.cancel_button.setEnabled(False)

    # -- GUI-thread slots -----------------------------------------------------
    def _show_progress(self, done: int, total: int, message: str) -> None:
        if not self.busy:
            return
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        if message:
            self.status.setText(message)

    def _on_update(self, payload: Any) -> None:
        handler = self._handlers.get("update")
        if handler is not None and self.busy:
            self._call(handler, payload)

    def _finish(self, outcome: _Outcome) -> None:
        handlers, self._handlers = self._handlers, {}
        if self._token is not None:
            try:
                self.destroyed.disconnect(self._token.cancel)
            except (TypeError, RuntimeError):  # already disconnected
                pass
        self._token = None
        if outcome.cancelled:
            self._set_idle("cancelled")
            if handlers.get("cancelled"):
                self._call(handlers["cancelled"])
            else:
                notify_info("cancelled: nothing was changed")
        elif outcome.error is not None:
            message = describe_error(outcome.error)
            self._set_idle(f"failed: {message}")
            notify_error(message)
            if handlers.get("failed"):
                self._call(handlers["failed"], outcome.error)
        else:
            self._set_idle("done")
            self._call(handlers["success"], outcome.value)
        self.worker = None
        self.finished.emit()

    def _call(self, handler: Callable, *args: Any) -> None:
        try:
            handler(*args)
        except Exception as exc:  # noqa: BLE001 - reported, never raised into napari
            log.debug("handler failed:\n%s", traceback.format_exc())
            self.status.setText(f"failed: {describe_error(exc)}")
            notify_error(describe_error(exc))

    def _set_idle(self, text: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if text == "done" else 0)
        self.bar.setVisible(bool(text))
        self.cancel_button.setEnabled(False)
        self.status.setText(text)
