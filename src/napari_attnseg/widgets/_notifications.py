"""Napari notifications that name the problem: how every widget failure reaches the user.

A failed job or a bad input ends in a notification (:func:`notify_error`)
whose one-line text says what went wrong (:func:`describe_error`), never in
napari's traceback dialog: the user can act on "out of GPU memory: choose a
smaller tile size", not on a stack trace.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning


def notify_error(message: str) -> None:
    show_error(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def notify_info(message: str) -> None:
    show_info(message)


def describe_error(exc: BaseException) -> str:
    """A one-line message for a failed job that names the problem."""
    from .._extras import missing_extra
    from ..models.persistence import ModelFileError

    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return "out of GPU memory: choose a smaller tile size or the CPU device"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if (extra := missing_extra(exc)) is not None:
        return extra
    if isinstance(exc, ModelFileError):
        return f"model file unreadable: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, MemoryError):
        return f"out of memory: {exc}" if str(exc) else "out of memory"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
