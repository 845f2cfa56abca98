"""napari dock widgets: Segment, Attention and Fine-tune (contributed in ``napari.yaml``).

They are thin: each translates layers to arrays, runs engine code in a napari
thread worker (progress bar, Cancel) and puts the results back as layers.
Everything they do is also available without napari from the engine packages.

What the three share lives in private modules named for what they hold:
``_jobs`` (thread worker, progress bar, Cancel), ``_notifications``,
``_models`` (the session's model registry), ``_pickers`` (model, device and
layer combo boxes), ``_layers`` (layers ↔ arrays) and ``_plot`` (charts).
"""

from .attention import AttentionWidget
from .finetune import FinetuneWidget
from .segment import SegmentWidget

__all__ = ["AttentionWidget", "FinetuneWidget", "SegmentWidget"]
