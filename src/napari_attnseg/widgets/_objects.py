"""The per-object table under Segment: one row per object of an instance segmentation.

After an instance segmentation the Labels layer carries the measurements as
its ``features`` (napari shows them in the status bar under the cursor), and
:class:`ObjectTable` lists them: sortable columns (click a header), a row
click selects that object in the layer (``selected_label``; "show only the
selected object" hides the others) and a label picked in the layer (napari's
colour picker, or the label spin box) selects its row. **Measure again**
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
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..objects import object_table, write_table_csv
from ._dialogs import save_file
from ._layers import is_rgb_layer, layer_array, same_object
from ._notifications import notify_error, notify_info

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


def measurable_image(image: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """``image`` when intensities can be measured under ``labels`` (grey or RGB, same grid)."""
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape == labels.shape or (
        image.ndim == labels.ndim + 1 and image.shape[:-1] == labels.shape
        and image.shape[-1] in (3, 4)
    ):
        return image
    return None


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
        self.view = QTableView()
        self.view.setModel(self._proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.horizontalHeader().setResizeContentsPrecision(100)  # fast for many rows
        self.view.setMinimumHeight(140)
        self.view.selectionModel().selectionChanged.connect(self._row_selected)
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
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view)
        layout.addWidget(self.only_selected)
        layout.addLayout(buttons)
        self._syncing = False
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.clear()

    # -- contents ------------------------------------------------------------------
    def show_table(self, layer: Labels, table: dict[str, np.ndarray], image_name: str) -> None:
        """List ``table`` (the objects of ``layer``) and follow the layer's selected label."""
        self._disconnect()
        self.layer, self.image_name, self.table = layer, image_name, table
        self._model.set_table(table)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # label order until clicked
        self.view.resizeColumnsToContents()
        n = self._model.rows
        self.title.setText(
            f"{n} object{'s' * (n != 1)} in {layer.name} — click a row to select the object; "
            "click a header to sort"
        )
        layer.events.selected_label.connect(self._label_selected)
        self.only_selected.setChecked(bool(layer.show_selected_label))
        self.setVisible(True)

    def clear(self) -> None:
        self._disconnect()
        self.layer, self.image_name, self.table = None, None, {}
        self._model.set_table({})
        self.setVisible(False)

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
        self.view.scrollTo(self._proxy.index(row, 0))
        return True

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
            self._show_plane(label)
        finally:
            self._syncing = False

    def _label_selected(self, event=None) -> None:
        if self._syncing or self.layer is None:
            return
        self._syncing = True
        try:
            self.select_label(int(self.layer.selected_label))
        finally:
            self._syncing = False

    def _show_plane(self, label: int) -> None:
        """For a stack, move the viewer to the slice that holds ``label``."""
        layer = self.layer
        if "z" not in self.table or layer is None or layer.ndim != 3:
            return
        row = int(np.flatnonzero(np.asarray(self.table["label"]) == label)[0])
        world = layer.data_to_world([float(self.table["z"][row]), 0.0, 0.0])
        axis = self.viewer.dims.ndim - layer.ndim
        self.viewer.dims.set_point(axis, float(world[0]))

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
