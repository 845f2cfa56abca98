"""Form parts the docks share: a scrolling body, the collapsed *Advanced* section and the
precision picker.

Expert settings sit in a section that starts collapsed (superqt's
``QCollapsible``), each with a tooltip saying what it does, so a first-time
user meets only the settings that matter to every run. A dock's controls live
in a :func:`scroll_body`: however many docks share the column and however small
the screen (1366×768), a dock asks the window for little height and scrolls
instead — rows are never squeezed on top of each other.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QFrame,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..inference.device import PRECISIONS
from ._pickers import ElidingCombo

PRECISION_HELP = (
    "auto: bfloat16 where the hardware computes it natively (recent CPUs and GPUs), else "
    "float32; fp32: full precision (exact); bf16 / fp16: faster where supported, with tiny "
    "differences in the result"
)


#: the height a dock asks for at least (its body scrolls below it)
MIN_DOCK_HEIGHT = 160


class _Body(QScrollArea):
    """A vertical scroll area as wide as its content and as short as :data:`MIN_DOCK_HEIGHT`."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        inner = self.widget()
        width = inner.minimumSizeHint().width() if inner is not None else 0
        return QSize(width + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth(),
                     MIN_DOCK_HEIGHT)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        inner = self.widget()
        if inner is None:
            return super().sizeHint()
        hint = inner.sizeHint()
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not getattr(self, "_balanced", False):
            self._balanced = True
            QTimer.singleShot(0, lambda: _balance_if_alive(self))


def _balance_if_alive(body: QWidget) -> None:
    try:
        balance_column(body)
    except RuntimeError:  # the dock was closed before the event loop came back to it
        pass


def _dock_of(widget: QWidget) -> QDockWidget | None:
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def balance_column(body: QWidget) -> None:
    """Share a dock column between this plugin's docks by how much each wants.

    Qt gives a dock added below another only its minimum height (Fine-tune under
    Segment got 180 px and Segment the rest); when a dock first shows, the
    plugin's docks stacked in its column get heights in proportion to their
    preferred heights (each still scrolls what does not fit).
    """
    dock = _dock_of(body)
    window = dock.parentWidget() if dock is not None else None
    if dock is None or dock.isFloating() or not isinstance(window, QMainWindow):
        return
    area = window.dockWidgetArea(dock)
    column = [
        d for d in window.findChildren(QDockWidget)
        if d.isVisible() and not d.isFloating() and window.dockWidgetArea(d) == area
        and d.findChild(_Body) is not None
        and abs(d.geometry().center().x() - dock.geometry().center().x()) < dock.width() // 2
    ]
    if len(column) < 2:
        return
    column.sort(key=lambda d: d.geometry().top())
    total = sum(d.height() for d in column)
    wants = [max(d.sizeHint().height(), d.minimumSizeHint().height()) for d in column]
    if sum(wants) <= total:
        sizes = wants[:-1] + [total - sum(wants[:-1])]  # all fit: the last takes the rest
    else:
        sizes = [max(d.minimumSizeHint().height(), int(total * w / sum(wants)))
                 for d, w in zip(column, wants, strict=True)]
    window.resizeDocks(column, sizes, Qt.Orientation.Vertical)


def scroll_body(owner: QWidget) -> QVBoxLayout:
    """Give ``owner`` (a dock widget) a vertically scrolling body; returns the body's layout.

    The owner's minimum height is :data:`MIN_DOCK_HEIGHT`, its preferred size its
    content's, so docks stacked in one column share the window's height and each
    scrolls what does not fit.
    """
    body = QWidget()
    body.setObjectName("attnseg_body")
    area = _Body(owner)
    area.setObjectName("attnseg_scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(body)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return QVBoxLayout(body)


def show_row(form: QFormLayout, field: QWidget, visible: bool) -> None:
    """Show or hide the row of ``form`` that holds ``field`` (its label too)."""
    if hasattr(form, "setRowVisible"):  # Qt ≥ 6.4
        form.setRowVisible(field, visible)
        return
    label = form.labelForField(field)
    for widget in (label, field):
        if widget is not None:
            widget.setVisible(visible)


class _Unclip(QObject):
    """Keeps an expanded section as tall as its content wants.

    superqt's ``QCollapsible`` fixes its content's maximum height when it expands;
    content that grows afterwards (a style applied when first shown, a longer
    text) would have its rows squeezed on top of each other. On every layout
    request of the content, an expanded section takes the new height.
    """

    def __init__(self, box: QCollapsible) -> None:
        super().__init__(box)
        self.box = box

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.LayoutRequest and self.box.isExpanded():
            self.box.content().setMaximumHeight(self.box.content().sizeHint().height() + 10)
        return False


def advanced_section(form: QFormLayout, title: str = "Advanced") -> QCollapsible:
    """A collapsed section holding ``form``."""
    box = QCollapsible(title, expandedIcon="▾", collapsedIcon="▸")
    box.setDuration(0)  # no animation: the dock resizes at once
    inner = QWidget()
    form.setContentsMargins(0, 0, 0, 0)
    inner.setLayout(form)
    box.addWidget(inner)
    box.content().installEventFilter(_Unclip(box))
    box.collapse(animate=False)
    return box


def precision_picker(help_text: str = PRECISION_HELP) -> QComboBox:
    """auto / fp32 / bf16 / fp16 (``InferenceSettings.precision``, ``TrainConfig.precision``)."""
    combo = ElidingCombo()
    combo.addItems(PRECISIONS)
    combo.setToolTip(help_text)
    return combo
