"""Progress reporting and cancellation shared by training, inference and the widgets.

Long jobs take ``progress(done, total, message)`` callbacks and a
:class:`CancelToken` that they check at every step, so the same engine code
runs in a napari thread worker (which forwards progress to a progress bar
and sets the token from a Cancel button), in the command line (a tqdm bar)
and in tests.

A token carries two requests: **cancel** (:meth:`CancelToken.cancel`) ends a
job at its next step, discards its result and raises :class:`Cancelled`;
**stop** (:meth:`CancelToken.request_stop`) asks a job that works in rounds
(training: epochs) to finish the current round and return normally with what
it has — the trainer keeps its best weights so far. Jobs without rounds
ignore a stop request.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Cancelled(Exception):
    """Raised inside a job when its :class:`CancelToken` was set."""


class CancelToken:
    """Thread-safe flags a GUI sets and a worker polls: cancel, or stop and keep."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._stop = threading.Event()

    def cancel(self) -> None:
        """End the job at its next step and discard its result (it raises :class:`Cancelled`)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def request_stop(self) -> None:
        """Finish the current round (training: epoch) and return what the job has so far."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


class ProgressCallback(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set (``None`` never cancels)."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def stop_requested(cancel: CancelToken | None) -> bool:
    """Whether ``cancel`` asks the job to stop and keep its result (``None`` never does)."""
    return cancel is not None and cancel.stop_requested


def report(progress: ProgressCallback | None, done: int, total: int, message: str = "") -> None:
    if progress is not None:
        progress(done, total, message)
