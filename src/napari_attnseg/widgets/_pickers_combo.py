"""The combo box every picker is: :class:`ElidingCombo`, and :func:`compact`.

An :class:`ElidingCombo` shrinks so docks stay narrow, cuts a long name *in
the middle* to the width there is, opens a list as wide as its longest entry,
and shows the full name as the tooltip of the box and of every entry.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter, QWidget


def compact(combo: QComboBox, characters: int = 10) -> QComboBox:
    """Let a combo box shrink below its longest entry, so docks stay narrow."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


class ElidingCombo(QComboBox):
    """A compact combo box that elides long entries in the middle, full text in the tooltip.

    :meth:`setToolTip` sets what the box is for; the tooltip shown is the
    current entry in full, then that text.
    """

    def __init__(self, parent: QWidget | None = None, characters: int = 10) -> None:
        super().__init__(parent)
        compact(self, characters)
        self.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._purpose = ""
        self.currentIndexChanged.connect(self._update_tooltip)
        self.model().rowsInserted.connect(self._default_item_tooltips)

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt API
        self._purpose = text
        self._update_tooltip()

    def item_tooltip(self, index: int) -> str:
        """The tooltip of entry ``index``: its full text unless it was given one."""
        tip = self.itemData(index, Qt.ItemDataRole.ToolTipRole)
        return str(tip) if tip else self.itemText(index)

    def _default_item_tooltips(self, _parent=None, first: int = 0, last: int = -1) -> None:
        for index in range(first, last + 1):
            if self.itemText(index) and not self.itemData(index, Qt.ItemDataRole.ToolTipRole):
                self.setItemData(index, self.itemText(index), Qt.ItemDataRole.ToolTipRole)

    def _update_tooltip(self, *_: Any) -> None:
        index = self.currentIndex()
        current = self.item_tooltip(index) if index >= 0 else ""
        parts = [p for p in (current, self._purpose) if p]
        super().setToolTip("\n\n".join(parts))

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        """Open the list as wide as its longest entry (within the screen): names in full."""
        view = self.view()
        view.setMinimumWidth(0)
        metrics = view.fontMetrics()
        longest = max((metrics.horizontalAdvance(self.itemText(i)) for i in range(self.count())),
                      default=0)
        needed = longest + 4 * metrics.averageCharWidth() + 2 * view.frameWidth()
        needed += view.verticalScrollBar().sizeHint().width()
        screen = self.screen()
        limit = screen.availableGeometry().width() if screen is not None else needed
        view.setMinimumWidth(max(self.width(), min(needed, limit)))
        super().showPopup()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            self._update_tooltip()  # entries may have changed with signals blocked
        return super().event(event)

    def _label_option(self) -> tuple[QStyleOptionComboBox, int]:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        return option, field.width()

    def shown_text(self) -> str:
        """The current entry as drawn: elided in the middle to fit the box."""
        option, width = self._label_option()
        return self.fontMetrics().elidedText(
            option.currentText, Qt.TextElideMode.ElideMiddle, max(width, 0)
        )

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.isEditable():
            super().paintEvent(event)
            return
        option, _ = self._label_option()
        option.currentText = self.shown_text()
        painter = QStylePainter(self)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
