"""A small matplotlib chart that lives inside a dock widget.

Matplotlib's Qt canvas (``backend_qtagg``) works with whichever Qt binding
qtpy selected, and a bare :class:`~matplotlib.figure.Figure` (no pyplot)
keeps no global state, so many charts can coexist. The chart follows the
napari theme's colours, and :attr:`PlotCanvas.data` keeps what is drawn so
tests (and users in the console) can read the numbers behind a picture.

Quantities of different kinds never share an axis (:meth:`PlotCanvas.panels`
stacks one small chart per kind: loss above, Dice below), and bar labels
never overlap: long ones are elided in the middle (``encoder.0.se`` and
``decoder.0.se`` stay apart), and they lie flat where they fit their bars'
columns, else stand vertically (decided at every draw, so a narrower dock turns
them). Bars may show short tick labels and carry a tooltip each (the full name),
shown on hover over the bar's column in place of the chart's own tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QEvent, QPoint
from qtpy.QtWidgets import QSizePolicy, QToolTip

#: beyond this many bars the x axis is just numbered
MAX_TICK_LABELS = 24
#: bar labels longer than this are elided in the middle
LABEL_CHARACTERS = 16
#: bar labels' font size (points) and a character's width, at most, in font sizes
TICK_FONT = 6
CHARACTER_WIDTH = 0.65
#: colours that read on both napari themes
PALETTE = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#90a4ae")


class PlotCanvas(FigureCanvasQTAgg):
    """Bars (Focal w, channel weights), lines, or stacked line panels (per-epoch curves)."""

    def __init__(self, parent=None, *, height: float = 2.4, theme: str = "dark") -> None:
        self.figure = Figure(figsize=(3.4, height), layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(int(height * 60))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.axes = self.figure.add_subplot()
        self.all_axes = [self.axes]
        self.data: dict[str, Any] = {}
        self.background, self.text = "#23242b", "#f0f1f2"
        self.apply_theme(theme)
        self.show_message("")

    def apply_theme(self, name: str) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(name)
            self.background, self.text = theme.background.as_hex(), theme.text.as_hex()
        except Exception:  # noqa: BLE001 - custom themes without these colours keep the defaults
            pass
        self.figure.set_facecolor(self.background)
        self._style()
        self.draw_idle()

    def _style(self) -> None:
        for ax in self.all_axes:
            ax.set_facecolor(self.background)
            for spine in ax.spines.values():
                spine.set_color(self.text)
            ax.tick_params(colors=self.text, labelsize=7)
            ax.xaxis.label.set_color(self.text)
            ax.yaxis.label.set_color(self.text)
            ax.title.set_color(self.text)

    def _reset(self, title: str, rows: int = 1) -> None:
        if rows != len(self.all_axes):
            self.figure.clear()
            axes = self.figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
            self.all_axes = list(axes)
            self.axes = self.all_axes[0]
        for ax in self.all_axes:
            ax.clear()
        self._style()
        self.axes.set_title(title, fontsize=8, color=self.text)

    def show_message(self, message: str) -> None:
        """An empty chart with a centred message."""
        self._reset("")
        self.axes.set_axis_off()
        self.axes.text(0.5, 0.5, message, ha="center", va="center", color=self.text,
                       fontsize=8, wrap=True, transform=self.axes.transAxes)
        self.data = {"kind": "message", "message": message}
        self.draw_idle()

    def bars(
        self,
        labels: Sequence[str],
        values: Sequence[float],
        *,
        title: str,
        ylabel: str = "",
        threshold: float | None = None,
        highlight: Sequence[bool] | None = None,
        shown: Sequence[str] | None = None,
        tips: Sequence[str] | None = None,
    ) -> None:
        """Vertical bars; ``highlight`` marks bars (e.g. modules that would be pruned).

        ``shown`` replaces ``labels`` on the x ticks (short names), ``tips`` gives
        each bar a tooltip; :attr:`data` keeps ``labels`` as given.
        """
        self._reset(title)
        self.axes.set_axis_on()
        positions = range(len(values))
        colours = [
            PALETTE[3] if highlight is not None and highlight[i] else PALETTE[0]
            for i in positions
        ]
        self.axes.bar(positions, values, color=colours)
        if threshold is not None:
            self.axes.axhline(threshold, color=PALETTE[1], linestyle="--", linewidth=1)
        if len(labels) <= MAX_TICK_LABELS:
            self.axes.set_xticks(list(positions))
            ticks = [elide_middle(label) for label in (labels if shown is None else shown)]
            # side by side where they fit the chart's width, else vertical (then they never
            # overlap however many there are): decided again at every draw (_orient_ticks)
            self.axes.set_xticklabels(ticks, ha="center", fontsize=TICK_FONT)
        else:
            self.axes.set_xlabel("channel", fontsize=7)
        self.axes.set_ylabel(ylabel, fontsize=7)
        self.data = {"kind": "bars", "title": title, "labels": list(labels),
                     "shown": [t.get_text() for t in self.axes.get_xticklabels()],
                     "values": [float(v) for v in values], "threshold": threshold,
                     "tips": list(tips or [])}
        self.draw_idle()

    def draw(self) -> None:
        self._orient_ticks()
        super().draw()

    def _orient_ticks(self) -> None:
        """Bar labels horizontal when the longest fits its bar's column, else vertical."""
        if self.data.get("kind") != "bars":
            return
        ticks = self.axes.get_xticklabels()
        if not ticks:
            return
        column = self.axes.get_position().width * self.figure.get_figwidth() * 72 / len(ticks)
        longest = max(len(t.get_text()) for t in ticks) * CHARACTER_WIDTH * TICK_FONT
        rotation = 0 if longest <= 0.9 * column else 90
        for tick in ticks:
            tick.set_rotation(rotation)

    def bar_at(self, pos: QPoint) -> int | None:
        """The bar with a tooltip whose column (bar or tick label) holds widget point ``pos``."""
        tips = self.data.get("tips") if self.data.get("kind") == "bars" else None
        if not tips:
            return None
        x, _ = self.axes.transData.inverted().transform(self.mouseEventCoords(pos))
        index = round(x)
        return index if 0 <= index < len(tips) and abs(x - index) <= 0.4 else None

    def event(self, event: QEvent) -> bool:
        """Hovering a bar that has a tooltip shows it instead of the chart's tooltip."""
        if event.type() == QEvent.Type.ToolTip:
            index = self.bar_at(event.pos())
            if index is not None:
                QToolTip.showText(event.globalPos(), self.data["tips"][index], self)
                return True
        return super().event(event)

    def lines(
        self,
        series: Mapping[str, Sequence[float]],
        *,
        title: str,
        xlabel: str = "epoch",
        ylabel: str = "",
        threshold: float | None = None,
    ) -> None:
        """One line per series over 1, 2, … (NaN gaps are skipped)."""
        self._reset(title)
        self._draw_lines(self.axes, series, ylabel=ylabel, threshold=threshold)
        self.axes.set_xlabel(xlabel, fontsize=7)
        self.data = {"kind": "lines", "title": title,
                     "series": {k: [float(v) for v in vs] for k, vs in series.items()}}
        self.draw_idle()

    def panels(
        self,
        panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
        *,
        title: str,
        xlabel: str = "epoch",
        limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """One small line chart per ``(ylabel, series)``, stacked, sharing the x axis."""
        self._reset(title, rows=len(panels))
        for ax, (ylabel, series) in zip(self.all_axes, panels, strict=True):
            self._draw_lines(ax, series, ylabel=ylabel)
            if limits and ylabel in limits:
                ax.set_ylim(*limits[ylabel])
        self.all_axes[-1].set_xlabel(xlabel, fontsize=7)
        self.data = {"kind": "panels", "title": title, "panels": [
            {"ylabel": ylabel, "series": {k: [float(v) for v in vs] for k, vs in series.items()}}
            for ylabel, series in panels
        ]}
        self.draw_idle()

    def _draw_lines(self, ax, series, *, ylabel: str, threshold: float | None = None) -> None:
        ax.set_axis_on()
        for i, (name, values) in enumerate(series.items()):
            xs = [k + 1 for k, v in enumerate(values) if v is not None and not math.isnan(v)]
            ys = [v for v in values if v is not None and not math.isnan(v)]
            ax.plot(xs, ys, marker="o", markersize=2, linewidth=1.2,
                    color=PALETTE[i % len(PALETTE)], label=elide_middle(name))
        if threshold is not None:
            ax.axhline(threshold, color=PALETTE[1], linestyle="--", linewidth=1)
        if series:
            legend = ax.legend(fontsize=6, frameon=False, labelcolor=self.text)
            legend.set_draggable(False)
        ax.set_ylabel(ylabel, fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)


def elide_middle(name: str, limit: int = LABEL_CHARACTERS) -> str:
    """``name`` cut in the middle to at most ``limit`` characters (both ends kept)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    tail = limit - 1 - head
    return f"{name[:head]}…{name[-tail:]}"
