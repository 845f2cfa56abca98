"""The per-object table under Segment: one row per object of an instance segmentation.

After an instance segmentation the Labels layer carries the measurements as
its ``features`` (napari shows them in the status bar under the cursor), and
:class:`ObjectTable` lists them: sortable columns (click a header), a row
click selects that object in the layer (``selected_label``; "show only the
selected object" hides the others) and a label picked in the layer (napari's
colour picker, or the label spin box) selects its row. A row click also
brings the object into view (:meth:`ObjectTable.show_object`): the viewer
moves to the object's plane of a stack, centres on its centroid (through the
layer's scale, translate and any affine) and zooms so that about three times
its bounding box fills the canvas (keeping the zoom when the object is
already shown that large, whole; :mod:`._objects_camera`). The table shows at least
:data:`VISIBLE_ROWS` rows, and **Open in window** shows the same table (rows,
sorting, selection) in a window of its own to resize at will. **Measure again**
re-measures the layer as it is now (after a correction with the brush), and
**Export CSV…** writes the table through a real file dialog (atomically,
asking before it replaces a file).

The columns are :func:`napari_attnseg.objects.object_table`'s (label, area,
centroid, equivalent diameter, perimeter, eccentricity, solidity, bounding
box, intensity; for a stack also the slice of the largest section, the first
and last slice and the volume, one row per object even when it spans
slices); the layer's ``features`` add an ``index`` column (= label), which is
how napari maps a label value to its row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import QModelIndex, QSize, QSortFilterProxyModel, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..data.input_spec import colour_over
from ..objects import object_table, write_table_csv
from ._dialogs import save_file
from ._layers import is_rgb_layer, layer_array, same_object
from ._notifications import notify_error, notify_info
from ._objects_camera import (  # noqa: F401 - the view constants, re-exported
    MIN_VIEW_PIXELS,
    VIEW_MARGIN,
    bring_into_view,
    plane_of,
)
from ._objects_view import (  # noqa: F401 - the columns and row counts, re-exported
    COLUMN_TIPS,
    HEADERS,
    VISIBLE_ROWS,
    WINDOW_ROWS,
    TableWindow,
    _TableModel,
    _TableView,
)


def measurable_image(image: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """``image`` when intensities can be measured under ``labels`` (grey or RGB, same grid)."""
    if image is None:
        return None
    image = np.asarray(image)
    return None if colour_over(image.shape, labels.shape) is None else image


def measure(labels: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`object_table` of instance labels of any stack depth (planes numbered in ``z``)."""
    labels = np.asarray(labels)
    image = measurable_image(image, labels)
    if labels.ndim > 3:  # (T, Z, H, W): planes in order
        flat = labels.reshape(-1, *labels.shape[-2:])
        if image is not None:
            image = image.reshape(-1, *image.shape[labels.ndim - 2:])
        return object_table(flat, image)
    return object_table(labels, image)


def attach(layer: Labels, table: dict[str, np.ndarray] | None) -> None:
    """Give ``layer`` the table as ``features`` (None: no features)."""
    if table is None:
        layer.features = {}
        return
    layer.features = {"index": np.asarray(table["label"]), **table}



class ObjectTable(QWidget):
    """Objects of the last instance segmentation: table, selection, re-measure, CSV export."""

    def __init__(self, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer: Labels | None = None
        self.image_name: str | None = None
        self.table: dict[str, np.ndarray] = {}
        self._model = _TableModel()
        self._proxy = QSortFilterProxyModel()
        self._proxy.setSourceModel(self._model)
        self._proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.view = _TableView(VISIBLE_ROWS)
        self.view.setModel(self._proxy)
        self.view.selectionModel().selectionChanged.connect(self._row_selected)
        self.view.clicked.connect(self._row_clicked)
        self.table_window: TableWindow | None = None  # made by open_window
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.only_selected = QCheckBox("show only the selected object")
        self.only_selected.toggled.connect(self._show_only_selected)
        self.measure_button = QPushButton("Measure again")
        self.measure_button.setToolTip(
            "measure the Labels layer as it is now (e.g. after correcting it with the brush)"
        )
        self.measure_button.clicked.connect(self.measure_again)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("write this table as a CSV file (one row per object)")
        self.export_button.clicked.connect(self.export_csv)
        self.window_button = QPushButton("Open in window")
        self.window_button.setToolTip(
            "show this table in a window of its own, to make it as big as you like "
            "(the same rows, sorting and selection)"
        )
        self.window_button.clicked.connect(self.open_window)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.window_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view)
        layout.addWidget(self.only_selected)
        layout.addLayout(buttons)
        self._syncing = False
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.clear()

    # -- size: the wrapped title must not squeeze the table below its rows ----------------
    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        layout = self.layout()
        if layout is not None and layout.hasHeightForWidth() and self.width() > 0:
            hint.setHeight(max(hint.height(), layout.minimumHeightForWidth(self.width())))
        return hint

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()  # the title wraps to another number of lines

    # -- contents ------------------------------------------------------------------
    def show_table(self, layer: Labels, table: dict[str, np.ndarray], image_name: str) -> None:
        """List ``table`` (the objects of ``layer``) and follow the layer's selected label."""
        self._disconnect()
        self.layer, self.image_name, self.table = layer, image_name, table
        self._model.set_table(table)
        for view in self._views():
            view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # label order until clicked
            view.resizeColumnsToContents()
            view.updateGeometry()  # the header's height may change with its columns
        n = self._model.rows
        self.title.setText(
            f"{n} object{'s' * (n != 1)} in {layer.name} — click a row to select the object "
            "and show it; click a header to sort"
        )
        if self.table_window is not None:
            self.table_window.title.setText(self.title.text())
            self.table_window.setWindowTitle(f"Objects — {layer.name}")
        layer.events.selected_label.connect(self._label_selected)
        self.only_selected.setChecked(bool(layer.show_selected_label))
        self.setVisible(True)

    def clear(self) -> None:
        self._disconnect()
        self.layer, self.image_name, self.table = None, None, {}
        self._model.set_table({})
        if self.table_window is not None:
            self.table_window.close()  # nothing to list: no empty window left behind
        self.setVisible(False)

    # -- the table in a window of its own -------------------------------------------------
    def open_window(self) -> TableWindow:
        """Show the table in a resizable window of its own (raised if already open)."""
        window = self.table_window
        if window is None:
            window = self.table_window = TableWindow(self)
            window.view.clicked.connect(self._row_clicked)
            for view, other in ((self.view, window.view), (window.view, self.view)):
                view.horizontalHeader().sortIndicatorChanged.connect(
                    lambda column, order, other=other: self._sync_sort(other, column, order))
            header = self.view.horizontalHeader()
            self._sync_sort(window.view, header.sortIndicatorSection(), header.sortIndicatorOrder())
            window.fit()
        window.title.setText(self.title.text())
        if self.layer is not None:
            window.setWindowTitle(f"Objects — {self.layer.name}")
        window.show()
        window.raise_()
        window.activateWindow()
        label = self.selected_label()
        if label is not None:
            self._scroll_to(label)
        return window

    def _views(self) -> list[QTableView]:
        return [self.view] + ([self.table_window.view] if self.table_window is not None else [])

    @staticmethod
    def _sync_sort(view: QTableView, column: int, order) -> None:
        """Both views sort the one proxy model: keep the other header's arrow in step."""
        header = view.horizontalHeader()
        if (header.sortIndicatorSection(), header.sortIndicatorOrder()) != (column, order):
            header.blockSignals(True)
            try:
                header.setSortIndicator(column, order)
            finally:
                header.blockSignals(False)
            header.viewport().update()

    def _disconnect(self) -> None:
        if self.layer is not None:
            self.layer.events.selected_label.disconnect(self._label_selected)

    def _on_layer_removed(self, event) -> None:
        if same_object(self.layer, getattr(event, "value", None)):
            self.clear()

    # -- selection, both ways ------------------------------------------------------------
    def label_at(self, row: int) -> int:
        """The label of the row shown at ``row`` (sorting included)."""
        source = self._proxy.mapToSource(self._proxy.index(row, 0)).row()
        return int(self.table["label"][source])

    def select_label(self, label: int) -> bool:
        """Select the row of ``label``; False if the table has no such object."""
        labels = self.table.get("label")
        if labels is None:
            return False
        found = np.flatnonzero(np.asarray(labels) == label)
        if not found.size:
            self.view.clearSelection()
            return False
        row = self._proxy.mapFromSource(self._model.index(int(found[0]), 0)).row()
        self.view.selectRow(row)
        self._scroll_to(label)
        return True

    def _row_of(self, label: int) -> int | None:
        """The source row (the table's order) of ``label``."""
        labels = self.table.get("label")
        if labels is None:
            return None
        found = np.flatnonzero(np.asarray(labels) == label)
        return int(found[0]) if found.size else None

    def _scroll_to(self, label: int) -> None:
        source = self._row_of(label)
        if source is None:
            return
        index = self._proxy.mapFromSource(self._model.index(source, 0))
        for view in self._views():
            view.scrollTo(index)

    def selected_label(self) -> int | None:
        rows = self.view.selectionModel().selectedRows()
        return self.label_at(rows[0].row()) if rows else None

    def _row_selected(self, *_: Any) -> None:
        label = self.selected_label()
        if self._syncing or label is None or self.layer is None:
            return
        self._syncing = True
        try:
            self.layer.selected_label = label
            self.show_object(label)
        finally:
            self._syncing = False

    def _row_clicked(self, index: QModelIndex) -> None:
        """A click on the selected row again shows its object again (after panning away)."""
        if self._syncing or self.layer is None or not index.isValid():
            return
        self.show_object(self.label_at(index.row()))

    def _label_selected(self, event=None) -> None:
        if self._syncing or self.layer is None:
            return
        self._syncing = True
        try:
            self.select_label(int(self.layer.selected_label))
        finally:
            self._syncing = False

    # -- bringing an object into view -------------------------------------------------------
    def show_object(self, label: int) -> bool:
        """Show ``label``: its plane of a stack, centred on its centroid, zoomed to fit.

        The canvas is zoomed so that :data:`VIEW_MARGIN` times the object's
        bounding box (at least :data:`MIN_VIEW_PIXELS` pixels of the layer)
        fits it; a zoom already closer than that is kept while the whole
        object still fits the canvas (:func:`._objects_camera.bring_into_view`).
        False if the object is not in the table or the layer.
        """
        layer = self.layer
        row = self._row_of(label)
        if layer is None or row is None or layer.ndim < 2:
            return False
        lead = self._planes(label, row)
        if lead is None:
            return False
        bring_into_view(self.viewer, layer, self.table, row, lead)
        return True

    def _planes(self, label: int, row: int) -> tuple[int, ...] | None:
        """Index of the plane to show ``label`` in, on the layer's leading axes (``()``: 2-D)."""
        return plane_of(self.viewer, self.layer, self.table, label, row)

    def _show_only_selected(self, on: bool) -> None:
        if self.layer is not None:
            self.layer.show_selected_label = on

    # -- measure again, export -------------------------------------------------------------
    def measure_again(self) -> bool:
        """Re-measure the layer's labels as they are now (with the image's intensities)."""
        layer = self.layer
        if layer is None:
            return False
        image = None
        if self.image_name in self.viewer.layers:
            source = self.viewer.layers[self.image_name]
            data = layer_array(source)
            if tuple(data.shape[: layer.ndim]) == tuple(layer.data.shape) and (
                data.ndim == layer.ndim or is_rgb_layer(source)
            ):
                image = np.asarray(data)
        try:
            table = measure(np.asarray(layer.data), image)
        except ValueError as exc:
            notify_error(f"cannot measure {layer.name!r}: {exc}")
            return False
        attach(layer, table)
        self.show_table(layer, table, self.image_name or "")
        notify_info(f"measured {len(table['label'])} object(s) in {layer.name}")
        return True

    def export_csv(self) -> Any:
        """Ask where, then write the table as CSV (atomically); the path, or None."""
        if not self.table:
            notify_error("no objects to export: run an instance segmentation first")
            return None
        stem = (self.layer.name if self.layer is not None else "objects").replace("/", "_")
        path = save_file(self, "Export the object table", [("CSV table", ".csv")], f"{stem}.csv")
        if path is None:
            return None
        try:
            write_table_csv(path, self.table)
        except OSError as exc:
            notify_error(f"could not write {path}: {exc.strerror or exc}")
            return None
        notify_info(f"wrote {len(self.table['label'])} object(s) to {path}")
        return path
