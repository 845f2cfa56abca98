"""napari dock widgets: Segment, Attention, Fine-tune and Models (contributed in ``napari.yaml``).

They are thin: each translates layers to arrays, runs engine code in a napari
thread worker (progress bar, Cancel) and puts the results back as layers.
Everything they do is also available without napari from the engine packages.

What they share lives in private modules named for what they hold:
``_jobs`` (thread worker, progress bar, Cancel; jobs that outlive a closed
widget or viewer safely), ``_notifications``, ``_models`` (the session's
model registry; a private model copy per job; rename, delete, install),
``_pickers`` (model, device, channel-axis and layer combo boxes, elided in the
middle), ``_form`` (the collapsed Advanced section, precision), ``_dialogs``
(real file dialogs and overwrite questions), ``_layers`` (layers ↔ arrays),
``_plot`` (charts) and ``_shortcuts`` (Ctrl+Shift+E / R). Segment's parts:
``_segment_job`` (the worker job), ``_roi`` ("restrict to"), ``_objects``
(the per-object table) and ``_batch`` (layers or a folder → files).
Fine-tune's parts: ``_finetune_form`` (pairs and settings), ``_finetune_job``
(the worker job and the tuned model's card) and ``_rounds`` (what Revert
restores, names, what stays in memory).
"""

from importlib import import_module

#: the docks, imported on first use: opening one dock does not import the other three
_WIDGETS = {
    "AttentionWidget": "attention",
    "FinetuneWidget": "finetune",
    "ModelManagerWidget": "models",
    "SegmentWidget": "segment",
}
__all__ = sorted(_WIDGETS)


def __getattr__(name: str):
    if name in _WIDGETS:
        return getattr(import_module(f"{__name__}.{_WIDGETS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
