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

from .attention import AttentionWidget
from .finetune import FinetuneWidget
from .models import ModelManagerWidget
from .segment import SegmentWidget

__all__ = ["AttentionWidget", "FinetuneWidget", "ModelManagerWidget", "SegmentWidget"]
