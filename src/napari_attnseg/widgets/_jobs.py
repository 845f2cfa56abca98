"""Running engine code from a dock widget without freezing the viewer — or crashing it.

:class:`JobPanel` runs a job in a napari thread worker behind a progress bar,
a Cancel button and (optionally) a **Stop and keep** button. Results,
progress, messages and intermediate updates come back to the GUI thread
through Qt signals, so the viewer stays responsive and layers are only ever
touched on the GUI thread. Every exception is caught and reported as a
notification (:mod:`._notifications`), never raised into napari.

Jobs outlive their widgets safely
---------------------------------
A dock widget can be closed, or the whole viewer, while its job runs; the
job's thread cannot be killed, only asked to stop at its next step. So the
worker never talks to the panel. Each run is a :class:`_Job`: a QObject
*without a Qt parent* that this module keeps referenced (``_RUNNING``) from
start until its thread has returned, so Qt never deletes it under the worker.
The worker emits only the job's own signals (progress, messages, updates, the
outcome); they are queued to the GUI thread, where the job hands them to its
panel *only while it still has one that Qt has not deleted*. A panel lets go
of its job — cancelling it — when

* its dock is closed: napari takes the widget out of the dock (a
  ``ParentChange`` to no parent on the widget the panel follows);
* the viewer window it sits in closes (the window hides without the window
  system minimising it), or napari asks the worker to quit (closing a viewer
  window does that for the workers it knows);
* the panel is destroyed (its widget, or the viewer window with everything in
  it, was deleted);
* the application quits or the interpreter exits: these also *wait* (at most
  :data:`SHUTDOWN_WAIT_S`) for every running job to reach its next step and
  return, so no worker thread is still running Python while the process
  tears Qt and Python down (that was a segmentation fault).

A job that lost its panel runs none of its handlers (nothing is written into a
closed viewer) and is forgotten once its thread returns: closing is
cancelling. The tests run this in a real viewer in a subprocess
(``tests/widgets/test_close_during_job.py``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QEvent, QObject, QThreadPool, Signal, Slot
from qtpy.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..progress import TICKS, Cancelled, CancelToken, Tracker, duration
from ._notifications import describe_error, notify_error, notify_info, notify_warning

log = logging.getLogger("napari_attnseg.widgets")

#: how long quitting waits for running jobs to reach their next step and return
SHUTDOWN_WAIT_S = 60.0
#: how long it then lets the thread pool finish the workers' last signals
POOL_DRAIN_MS = 2000


def is_alive(obj: QObject | None) -> bool:
    """Whether ``obj`` is a Qt object that Qt has not deleted yet."""
    if obj is None:
        return False
    try:
        from qtpy import sip

        return not sip.isdeleted(obj)
    except ImportError:  # PySide
        import shiboken6

        return shiboken6.isValid(obj)


def can_stop_and_keep(token: CancelToken | None) -> bool:
    """Whether the engine behind ``token`` can end a run early and keep its weights."""
    return callable(getattr(token, "request_stop", None))


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


class _Job(QObject):
    """One run of a job: the only object its worker thread talks to (see the module doc)."""

    progressed = Signal(int, int, str)
    messaged = Signal(str)
    updated = Signal(object)
    ended = Signal(object)

    def __init__(self, label: str) -> None:
        super().__init__()  # no parent: Qt never deletes it; _RUNNING keeps it alive
        self.label = label
        self.token = CancelToken()
        self.panel: JobPanel | None = None
        self.started = threading.Event()  # the worker thread entered the job
        self.returned = threading.Event()  # ... and left it
        self.progressed.connect(self._on_progress)
        self.messaged.connect(self._on_message)
        self.updated.connect(self._on_update)
        self.ended.connect(self._on_ended)

    def context(self) -> JobContext:
        return JobContext(self.token, self.progressed.emit, self.messaged.emit, self.updated.emit)

    def run(self, job: Callable[[JobContext], Any]) -> None:
        """The worker thread's function: run ``job``, then report how it ended."""
        self.started.set()
        try:
            outcome = self._outcome(job)
            self.ended.emit(outcome)
        finally:
            self.returned.set()

    def _outcome(self, job: Callable[[JobContext], Any]) -> _Outcome:
        # every exception is caught here, so none reaches napari's error dialog;
        # library warnings go to the log instead of popping up as notifications
        try:
            self.token.raise_if_cancelled()  # closed before the thread even started
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                value = job(self.context())
            for w in caught:
                log.info("warning in %s: %s", self.label, w.message)
            return _Outcome(value=value)
        except Cancelled:
            return _Outcome(cancelled=True)
        except BaseException as exc:  # noqa: BLE001 - reported as a notification
            log.debug("job failed:\n%s", "".join(traceback.format_exception(exc)))
            return _Outcome(error=exc)

    @Slot()
    def close(self) -> None:
        """Cancel the job and let go of its panel: none of its handlers will run."""
        self.panel = None
        self.token.cancel()

    def _live_panel(self) -> JobPanel | None:
        panel = self.panel
        if panel is not None and not is_alive(panel):
            self.close()
            return None
        return panel

    # -- GUI thread: hand what the worker sent to the panel, if there still is one --------
    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, message: str) -> None:
        if panel := self._live_panel():
            panel._show_progress(done, total, message)

    @Slot(str)
    def _on_message(self, message: str) -> None:
        if self._live_panel() is not None:
            notify_warning(message)

    @Slot(object)
    def _on_update(self, payload: Any) -> None:
        if panel := self._live_panel():
            panel._on_update(payload)

    @Slot(object)
    def _on_ended(self, outcome: _Outcome) -> None:
        panel = self._live_panel()
        _RUNNING.discard(self)
        if panel is not None:
            panel._finish(self, outcome)
        else:
            log.info("%s ended after its widget was closed: %s", self.label, _describe(outcome))


def _describe(outcome: _Outcome) -> str:
    if outcome.cancelled:
        return "cancelled"
    return "failed" if outcome.error is not None else "finished (result dropped)"


class _Worker(FunctionWorker):
    """napari's function worker; napari's request to quit (a closing viewer) closes the job."""

    job: _Job | None = None

    def quit(self) -> None:  # called by napari on the GUI thread, e.g. when its window closes
        super().quit()
        if self.job is not None:
            self.job.close()


#: jobs whose worker thread has not returned yet (keeps each :class:`_Job` alive)
_RUNNING: set[_Job] = set()
_QUIT_HOOKED = False


def close_all_jobs(wait_s: float = SHUTDOWN_WAIT_S) -> bool:
    """Cancel every running job and wait for its thread to return; False if one did not."""
    jobs = list(_RUNNING)
    for job in jobs:
        job.close()
    deadline = time.monotonic() + wait_s
    finished = True
    for job in jobs:
        if job.started.is_set():
            finished &= job.returned.wait(max(0.0, deadline - time.monotonic()))
    if jobs:
        # our jobs have returned; superqt still sends the worker's last signals: let it
        # finish (briefly: other plugins' workers in the same pool are not ours to wait for)
        QThreadPool.globalInstance().waitForDone(POOL_DRAIN_MS)
    if not finished:
        log.warning("a job did not stop within %.0f s of being cancelled", wait_s)
    return finished


def _hook_quit() -> None:
    global _QUIT_HOOKED
    app = QApplication.instance()
    if app is not None and not _QUIT_HOOKED:
        app.aboutToQuit.connect(close_all_jobs)
        _QUIT_HOOKED = True


atexit.register(close_all_jobs)


class JobPanel(QWidget):
    """A progress bar, a status line and a Cancel button that run one job at a time.

    ``owner`` is the dock widget the panel belongs to: when napari takes it
    out of its dock (the dock's ✕), the running job is cancelled and its
    handlers are dropped. ``stop_and_keep`` adds a button that asks the job
    to end early and keep what it has (a fine-tuning round's best weights).
    """

    #: emitted on the GUI thread after a job's handlers ran (ok, cancelled or failed)
    finished = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        owner: QWidget | None = None,
        stop_and_keep: bool = False,
    ) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop now; nothing is changed")
        self.cancel_button.clicked.connect(self.cancel)
        self.stop_button = QPushButton("Stop and keep")
        self.stop_button.setToolTip(
            "end after the current epoch and keep the best weights so far "
            "(Cancel discards the whole round)"
        )
        self.stop_button.clicked.connect(self.stop_and_keep)
        self.stop_button.setVisible(stop_and_keep)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.stop_button)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._job: _Job | None = None
        self._tracker: Tracker | None = None
        self._handlers: dict[str, Callable | None] = {}
        self.worker: _Worker | None = None
        self._owner = owner
        self._docked = owner is not None and owner.parent() is not None
        if owner is not None:
            owner.installEventFilter(self)
        self._window: QWidget | None = None  # the viewer window watched while a job runs
        self._set_idle("")

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def token(self) -> CancelToken | None:
        """The running job's token (None when idle)."""
        return self._job.token if self._job is not None else None

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
        _hook_quit()
        run = _Job(label)
        run.panel = self
        self.destroyed.connect(run.close)  # a deleted panel (or viewer) stops its job
        self._job = run
        self._handlers = {
            "success": on_success, "update": on_update,
            "cancelled": on_cancelled, "failed": on_failed,
        }
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.bar.setFormat("%p%")
        self._tracker = Tracker()
        self.bar.setVisible(True)
        self.status.setText(f"{label}…")
        self.cancel_button.setEnabled(True)
        self.stop_button.setEnabled(can_stop_and_keep(run.token))
        _RUNNING.add(run)
        self._watch_window()
        worker = create_worker(run.run, job, _start_thread=False, _worker_class=_Worker)
        worker.job = run
        self.worker = worker
        worker.start()
        return True

    def reject(self, reason: str) -> None:
        """A click that started nothing: the status says why, not what an older job did."""
        if self.busy:
            return
        self._set_idle("")
        self.status.setText(f"not started: {reason}")

    def cancel(self) -> None:
        if self._job is not None:
            self._job.token.cancel()
            self.status.setText("cancelling…")
            self.cancel_button.setEnabled(False)
            self.stop_button.setEnabled(False)

    def stop_and_keep(self) -> bool:
        """Ask the job to end after its current step and keep what it has; False if it can't."""
        token = self.token
        request = getattr(token, "request_stop", None)
        if not callable(request):
            return False
        request()
        self.status.setText("stopping after this epoch…")
        self.stop_button.setEnabled(False)
        return True

    def close_job(self, reason: str = "its widget was closed", *, notify: bool = False) -> None:
        """Cancel the running job and drop its handlers (its widget is going away)."""
        run, self._job = self._job, None
        self._handlers = {}
        self.worker = None
        self._unwatch_window()
        if run is None:
            return
        run.close()
        try:
            self.destroyed.disconnect(run.close)
        except (TypeError, RuntimeError):  # already disconnected
            pass
        log.info("%s: %s, so it was cancelled", run.label, reason)
        self._set_idle("")
        if notify:
            notify_info(f"{run.label} was cancelled: {reason}; nothing was changed")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        # napari closes a dock by taking its widget out (setParent(None)) and deleting the dock
        if watched is self._owner and kind == QEvent.Type.ParentChange:
            docked = watched.parent() is not None
            if self._docked and not docked:
                self.close_job("its dock was closed", notify=True)
            self._docked = docked
        # a viewer window that hides, not minimised by the window system, was closed
        elif watched is self._window and kind == QEvent.Type.Hide and not event.spontaneous():
            self.close_job("the viewer was closed")
        return False

    def _watch_window(self) -> None:
        window = self.window()
        if window is not self and window.inherits("QMainWindow"):
            self._window = window
            window.installEventFilter(self)

    def _unwatch_window(self) -> None:
        window, self._window = self._window, None
        if window is not None and is_alive(window):
            window.removeEventFilter(self)

    # -- GUI-thread slots (called by the running _Job while this panel is alive) -----
    def _show_progress(self, done: int, total: int, message: str) -> None:
        """One bar per job that only moves forward: "k of N" (or a percentage for a job
        reported in parts, ``progress.part``) and an estimate of the time left."""
        tracker = self._tracker
        if total > 0 and tracker is not None:
            fraction = tracker.update(done, total)
            self.bar.setRange(0, TICKS)
            self.bar.setValue(round(fraction * TICKS))
            count = "%p%" if tracker.in_parts else f"{min(done, total)} of {total}"
            left = tracker.remaining()
            self.bar.setFormat(count + (f" · about {duration(left)} left" if left else ""))
        if message:
            self.status.setText(message)

    def _on_update(self, payload: Any) -> None:
        handler = self._handlers.get("update")
        if handler is not None:
            self._call(handler, payload)

    def _finish(self, run: _Job, outcome: _Outcome) -> None:
        if run is not self._job:  # a job this panel let go of
            return
        handlers, self._handlers = self._handlers, {}
        try:
            self.destroyed.disconnect(run.close)
        except (TypeError, RuntimeError):  # already disconnected
            pass
        self._job = None
        self._unwatch_window()
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
        self._tracker = None
        self.bar.setFormat("%p%")
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if text == "done" else 0)
        self.bar.setVisible(bool(text))
        self.cancel_button.setEnabled(False)
        self.stop_button.setEnabled(False)
        self.status.setText(text)
