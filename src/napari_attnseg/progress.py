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
import time
from collections.abc import Callable
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


#: the resolution of a job's progress when its parts are reported by :func:`part`
TICKS = 1000


def part(
    progress: ProgressCallback | None, start: float, stop: float, prefix: str = ""
) -> ProgressCallback | None:
    """A callback for one part of a job: its ``(done, total)`` is reported as the share
    ``start``…``stop`` (fractions of the whole job) in :data:`TICKS`.

    A job made of parts whose totals differ (a measuring pass and the planes of a
    stack, the epochs and then the re-segmentation) reports one bar that only
    moves forward: each part fills its own span. ``prefix`` is put before the
    part's messages ("plane 3 of 14", "2 of 5: cells.tif"). A part that is the
    whole job (0…1) reports its own counts unchanged.
    """
    if progress is None:
        return None

    whole = start <= 0.0 and stop >= 1.0

    def inner(done: int, total: int, message: str = "") -> None:
        text = f"{prefix} ({message})" if prefix and message else (prefix or message)
        if whole:  # the part is the whole job: its own counts ("tile 4 of 12") go through
            progress(done, total, text)
            return
        share = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        progress(round((start + (stop - start) * share) * TICKS), TICKS, text)

    return inner


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


class Tracker:
    """One job's progress as shown to a person: never backwards, with the time left.

    ``update(done, total)`` returns the share done so far — the largest reported,
    so a bar never jumps back when a job's parts report different totals — and
    :meth:`remaining` extrapolates the time left from the elapsed time (None
    until there is enough to go by: 2 % done and 2 s elapsed).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.fraction = 0.0
        #: whether the job has reported in parts (:func:`part`, out of :data:`TICKS`): then
        #: it is shown as a percentage to the end, whatever totals its last reports give
        self.in_parts = False

    def update(self, done: int, total: int) -> float:
        self.in_parts = self.in_parts or total == TICKS
        if total > 0:
            self.fraction = max(self.fraction, min(max(done / total, 0.0), 1.0))
        return self.fraction

    def remaining(self) -> float | None:
        elapsed = self.clock() - self.started
        if not 0.02 <= self.fraction < 1.0 or elapsed < 2.0:
            return None
        return elapsed * (1.0 - self.fraction) / self.fraction


def duration(seconds: float) -> str:
    """``seconds`` for a person: "12 s", "4 min", "1 h 5 min"."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
