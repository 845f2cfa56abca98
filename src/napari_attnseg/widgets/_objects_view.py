"""The object table's Qt parts: the table model, its view, and the window of "Open in window".

:class:`~._objects.ObjectTable` (the panel under Segment) lists an object
table through :class:`_TableModel` (behind a sort proxy) in a
:class:`_TableView`; :class:`TableWindow` shows the same proxy and selection
in a resizable window of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

#: how column values are shown (the CSV keeps full precision)
_INTEGER_COLUMNS = ("label", "z", "area", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x",
                    "z_min", "z_max", "volume")
#: short column headers (the full meaning is in the header's tooltip)
HEADERS = {
    "equivalent_diameter": "eq. diameter",
    "bbox_min_y": "bbox y0", "bbox_min_x": "bbox x0",
    "bbox_max_y": "bbox y1", "bbox_max_x": "bbox x1",
}
COLUMN_TIPS = {
    "label": "the object's value in the Labels layer",
    "z": "the slice (plane of the stack) of the object's largest section, which the "
         "in-plane columns measure",
    "z_min": "the first slice the object is in",
    "z_max": "the last slice the object is in",
    "volume": "voxels, over all the object's slices",
    "area": "pixels",
    "centroid_y": "centre of mass, row (pixels)",
    "centroid_x": "centre of mass, column (pixels)",
    "equivalent_diameter": "diameter of the disc with the object's area (pixels)",
    "perimeter": "boundary length (pixels)",
    "eccentricity": "of the ellipse with the same second moments: 0 = a disc, → 1 elongated",
    "solidity": "area / area of the convex hull (1 = convex)",
    "bbox_min_y": "bounding box: first row", "bbox_min_x": "bounding box: first column",
    "bbox_max_y": "bounding box: one past the last row",
    "bbox_max_x": "bounding box: one past the last column",
}


#: rows the table shows without scrolling, docked and at its smallest
VISIBLE_ROWS = 10
#: rows the window of "Open in window" shows at first (it resizes at will)
WINDOW_ROWS = 25


class _TableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.table: dict[str, np.ndarray] = {}
        self.columns: list[str] = []
        self.rows = 0

    def set_table(self, table: dict[str, np.ndarray]) -> None:
        self.beginResetModel()
        self.table = table
        self.columns = list(table)
        self.rows = len(next(iter(table.values()))) if table else 0
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else self.rows

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        name = self.columns[index.column()]
        value = self.table[name][index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if name in _INTEGER_COLUMNS or np.issubdtype(np.asarray(value).dtype, np.integer):
                return str(int(value))
            return f"{float(value):.4g}"
        if role == Qt.ItemDataRole.UserRole:  # sorting by value, not by text
            return float(value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or section >= len(self.columns):
            return None
        name = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS.get(name, name.replace("_intensity", " int.").replace("_", " "))
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS.get(name, name.replace("_", " "))
        return None


class _TableView(QTableView):
    """The object table's view: at its smallest it still shows ``rows`` rows under its header.

    The height is worked out from the row height, the header's height, the
    frame and a horizontal scroll bar (the columns rarely fit a dock's width),
    so it follows the style and font napari applies.
    """

    def __init__(self, rows: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows = rows
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSortingEnabled(True)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setResizeContentsPrecision(100)  # fast for many rows

    def row_height(self) -> int:
        return max(1, self.verticalHeader().defaultSectionSize())

    def header_height(self) -> int:
        header = self.horizontalHeader()
        if header.isHidden():
            return 0
        # with no columns yet the header hints no height: a line of its font, padded
        text = header.fontMetrics().height() + 2 * header.style().pixelMetric(
            QStyle.PixelMetric.PM_HeaderMargin, None, header)
        return max(header.sizeHint().height(), text)

    def height_for(self, rows: int) -> int:
        """Height of the view that shows ``rows`` rows, header and scroll bar included."""
        bar = self.horizontalScrollBar().sizeHint().height()
        return 2 * self.frameWidth() + self.header_height() + rows * self.row_height() + bar

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        return QSize(hint.width(), max(hint.height(), self.height_for(self.rows)))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        return QSize(hint.width(), max(hint.height(), self.height_for(self.rows)))

    def visible_rows(self) -> int:
        """Whole rows the viewport has room for now."""
        return self.viewport().height() // self.row_height()


class TableWindow(QWidget):
    """The object table in a window of its own: the same rows, sorting and selection."""

    def __init__(self, table: QWidget) -> None:
        """``table``: the :class:`~._objects.ObjectTable` whose proxy and selection it shares."""
        super().__init__(table, Qt.WindowType.Window)
        self.setWindowTitle("Objects")
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.view = _TableView(VISIBLE_ROWS)
        self.view.setModel(table._proxy)
        own = self.view.selectionModel()
        self.view.setSelectionModel(table.view.selectionModel())  # one selection for both
        own.deleteLater()
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.view)

    def fit(self) -> None:
        """A size that shows the columns and :data:`WINDOW_ROWS` rows (within the screen)."""
        view = self.view
        view.resizeColumnsToContents()
        header = view.horizontalHeader()
        margins = self.layout().contentsMargins()
        width = (header.length() + 2 * view.frameWidth() + margins.left() + margins.right()
                 + view.verticalScrollBar().sizeHint().width())
        height = (view.height_for(WINDOW_ROWS) + self.title.sizeHint().height()
                  + self.layout().spacing() + margins.top() + margins.bottom())
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        if screen is not None:
            width = min(width, int(screen.width() * 0.9))
            height = min(height, int(screen.height() * 0.9))
        self.resize(max(width, 400), height)
