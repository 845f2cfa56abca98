"""The docks on a small screen: Segment and Fine-tune docked together fit 1366×768, and no
two form rows overlap, before or after a round (issue 23)."""

import itertools

import pytest
from qtpy.QtWidgets import QFormLayout, QWidget
from superqt import QCollapsible

from napari_attnseg.widgets._form import MIN_DOCK_HEIGHT

from .conftest import blobs, wait_done

pytestmark = pytest.mark.gui

PLUGIN = "napari-attnseg"


def cells_and_corrections(viewer):
    """An image and its labels in the viewer, as before a round; returns the Qt window."""
    image, labels = blobs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="corrected")
    return viewer.window._qt_window


def docked(viewer, name):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return dock, widget


def row_rects(form: QFormLayout):
    """The rectangle of each visible row (label and field together), in the form's parent."""
    rects = []
    for row in range(form.rowCount()):
        parts = []
        for role in (QFormLayout.ItemRole.LabelRole, QFormLayout.ItemRole.FieldRole,
                     QFormLayout.ItemRole.SpanningRole):
            item = form.itemAt(row, role)
            if item is None:
                continue
            if item.widget() is not None:
                if item.widget().isVisible():
                    parts.append(item.widget().geometry())
            elif item.layout() is not None and item.geometry().height() > 0:
                parts.append(item.geometry())
        if parts:
            rect = parts[0]
            for part in parts[1:]:
                rect = rect.united(part)
            rects.append((row, rect))
    return rects


def collapsed(form: QFormLayout) -> bool:
    """Whether the form sits in a collapsed section (its rows are folded away on purpose)."""
    parent = form.parentWidget()
    while parent is not None:
        if isinstance(parent, QCollapsible) and not parent.isExpanded():
            return True
        parent = parent.parentWidget()
    return False


def overlapping_rows(widget: QWidget):
    """(form, row, row) for every two visible rows of a form in ``widget`` that overlap."""
    found = []
    for form in widget.findChildren(QFormLayout):
        if collapsed(form):
            continue
        for (a, ra), (b, rb) in itertools.combinations(row_rects(form), 2):
            if ra.intersects(rb):
                found.append((form, a, b))
    return found


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer(show=True)  # laid out as on a screen


def describe(found):
    """What overlaps: each row's widgets and rectangles (for the failure message)."""
    lines = []
    for form, a, b in found:
        rects = dict(row_rects(form))
        names = []
        for row in (a, b):
            item = form.itemAt(row, QFormLayout.ItemRole.FieldRole) or form.itemAt(
                row, QFormLayout.ItemRole.SpanningRole)
            names.append(type(item.widget()).__name__ if item and item.widget() else "layout")
        parent = form.parentWidget()
        lines.append(f"{names} {rects[a]} {rects[b]} in {parent.geometry()} "
                     f"(min {parent.minimumSizeHint()}, max h {parent.maximumHeight()})")
    return "; ".join(lines)


def test_segment_and_finetune_docked_together_fit_1366_by_768(viewer, qtbot, saved_model):
    window = cells_and_corrections(viewer)
    segment_dock, _ = docked(viewer, "Segment")
    finetune_dock, _ = docked(viewer, "Fine-tune")
    window.resize(1366, 768)
    qtbot.wait(50)
    for dock in (segment_dock, finetune_dock):
        # the dock's title bar and margins above a body that scrolls
        assert dock.minimumSizeHint().height() <= MIN_DOCK_HEIGHT + 60
    assert window.minimumSizeHint().height() <= 768
    assert window.height() <= 768


def test_docks_stacked_in_one_column_share_it_by_what_they_need(viewer, qtbot, saved_model):
    """Qt gives a dock added below another only its minimum height; ours share the column."""
    window = cells_and_corrections(viewer)
    window.resize(1366, 768)
    qtbot.wait(50)
    segment_dock, _ = docked(viewer, "Segment")
    finetune_dock, _ = docked(viewer, "Fine-tune")
    qtbot.wait(300)
    column = segment_dock.height() + finetune_dock.height()
    for dock in (segment_dock, finetune_dock):
        assert dock.height() >= 0.3 * column, (segment_dock.height(), finetune_dock.height())


@pytest.mark.parametrize("name", ["Attention", "Models"])
def test_the_other_docks_scroll_instead_of_asking_for_height(viewer, name):
    dock, _ = docked(viewer, name)
    assert dock.minimumSizeHint().height() <= MIN_DOCK_HEIGHT + 60


def test_no_form_rows_overlap_before_or_after_a_round(viewer, qtbot, saved_model):
    window = cells_and_corrections(viewer)
    segment_dock, segment = docked(viewer, "Segment")
    finetune_dock, finetune = docked(viewer, "Fine-tune")
    window.resize(1366, 768)
    qtbot.wait(50)
    for widget in (segment, finetune):
        assert len(row_rects(widget.findChildren(QFormLayout)[0])) >= 3  # rows are shown
        assert overlapping_rows(widget) == []

    finetune.epochs.setValue(1)
    finetune.patches.setValue(4)
    finetune.device_picker.setCurrentIndex(finetune.device_picker.findData("cpu"))
    assert finetune.finetune()
    wait_done(qtbot, finetune, timeout=60_000)
    finetune.advanced.expand(animate=False)  # the longest form, after a round
    assert segment.segment()
    wait_done(qtbot, segment)
    qtbot.wait(100)
    assert finetune.plot.isVisible() and finetune.summary.text()
    for widget in (segment, finetune):
        # the settled layout, as the user sees it (a layout pass may still be queued)
        try:
            qtbot.waitUntil(lambda w=widget: not overlapping_rows(w), timeout=3000)
        except AssertionError:
            pass
        assert overlapping_rows(widget) == [], describe(overlapping_rows(widget))
    assert window.height() <= 768


def test_a_job_bar_moves_only_forward_says_k_of_n_and_the_time_left(qtbot):
    from napari_attnseg.progress import TICKS, Tracker
    from napari_attnseg.widgets._jobs import JobPanel

    panel = JobPanel()
    qtbot.addWidget(panel)
    now = [0.0]
    panel._tracker = Tracker(clock=lambda: now[0])
    now[0] = 20.0
    panel._show_progress(8, 56, "plane 2 of 14")
    assert panel.bar.format().startswith("8 of 56 · about ")
    assert panel.bar.format().endswith(" left")
    shown = panel.bar.value()
    panel._show_progress(2, 14, "plane 2 of 14")  # another part's total: no jump back
    assert panel.bar.value() == shown
    panel._show_progress(500, TICKS, "re-segmenting")
    assert panel.bar.value() == TICKS // 2 and panel.bar.format() == "%p% · about 20 s left"
    assert panel.status.text() == "re-segmenting"
    panel._show_progress(1, 1, "done")  # a part's own count after parts: still a percentage
    assert panel.bar.value() == TICKS and panel.bar.format().startswith("%p%")


def test_opening_the_segment_dock_imports_neither_monai_nor_the_other_docks():
    """The first dock opens in seconds: MONAI (≈2 s to import) waits for the first tiled
    prediction or training, and the other three docks for their own first opening."""
    import subprocess
    import sys

    code = ("import sys, napari_attnseg.widgets as w; w.SegmentWidget; "
            "print(sorted(m for m in ('monai', 'napari_attnseg.widgets.finetune', "
            "'napari_attnseg.widgets.attention', 'napari_attnseg.widgets.models', "
            "'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
