"""A tiny line plot drawn with QPainter (QtCharts is not part of PySide6-Essentials).

Series share one pair of axes that scale themselves to hold every point; a legend names
the series when there is more than one. Enough for a live loss curve or recall per epoch.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
MARGINS = (52, 24, 14, 38)   # left, top, right, bottom (room for tick labels and axis labels)
TICKS = 5


def nice_range(lo: float, hi: float) -> tuple[float, float]:
    """A range that holds [lo, hi] with a little room, never empty."""
    if lo == hi:
        pad = abs(lo) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def format_tick(value: float) -> str:
    return f"{value:.3g}"


class PlotWidget(QWidget):
    """Line plot of named series: ``add_point(series, x, y)``, ``clear()``."""

    def __init__(self, title: str = "", x_label: str = "", y_label: str = "", parent=None):
        super().__init__(parent)
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self._series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumSize(220, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # ---- data ---------------------------------------------------------------------------
    def add_point(self, series: str, x: float, y: float) -> None:
        """Append one point; non-finite values (a NaN loss) are skipped."""
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y)):
            return
        self._series.setdefault(series, []).append((x, y))
        self.update()

    def clear(self) -> None:
        self._series.clear()
        self.update()

    def series_names(self) -> list[str]:
        return list(self._series)

    def points(self, series: str) -> list[tuple[float, float]]:
        return list(self._series.get(series, []))

    def point_count(self) -> int:
        return sum(len(p) for p in self._series.values())

    def x_range(self) -> tuple[float, float]:
        xs = [x for pts in self._series.values() for x, _ in pts]
        return nice_range(min(xs), max(xs)) if xs else (0.0, 1.0)

    def y_range(self) -> tuple[float, float]:
        ys = [y for pts in self._series.values() for _, y in pts]
        return nice_range(min(ys), max(ys)) if ys else (0.0, 1.0)

    # ---- drawing ------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(360, 220)

    def _plot_rect(self) -> QRectF:
        left, top, right, bottom = MARGINS
        return QRectF(left, top, max(1, self.width() - left - right), max(1, self.height() - top - bottom))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        rect = self._plot_rect()
        self._draw_frame(painter, rect)
        if not self._series:
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "No data yet")
        else:
            self._draw_ticks(painter, rect)
            self._draw_series(painter, rect)
            self._draw_legend(painter, rect)
        painter.end()

    def _draw_frame(self, painter: QPainter, rect: QRectF) -> None:
        text = self.palette().text().color()
        painter.setPen(QPen(text, 1))
        painter.drawRect(rect)
        painter.drawText(QRectF(0, 2, self.width(), MARGINS[1] - 4), Qt.AlignmentFlag.AlignCenter, self.title)
        painter.drawText(QRectF(rect.left(), self.height() - 16, rect.width(), 14),
                         Qt.AlignmentFlag.AlignCenter, self.x_label)
        painter.save()
        painter.translate(12, rect.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-rect.height() / 2, -8, rect.height(), 16), Qt.AlignmentFlag.AlignCenter,
                         self.y_label)
        painter.restore()

    def _draw_ticks(self, painter: QPainter, rect: QRectF) -> None:
        (x0, x1), (y0, y1) = self.x_range(), self.y_range()
        grid = QColor(self.palette().text().color())
        grid.setAlpha(40)
        for i in range(TICKS):
            f = i / (TICKS - 1)
            x = rect.left() + f * rect.width()
            y = rect.bottom() - f * rect.height()
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
            painter.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(x - 30, rect.bottom() + 2, 60, 14), Qt.AlignmentFlag.AlignCenter,
                             format_tick(x0 + f * (x1 - x0)))
            painter.drawText(QRectF(14, y - 7, rect.left() - 18, 14),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             format_tick(y0 + f * (y1 - y0)))

    def _to_screen(self, rect: QRectF, x: float, y: float) -> QPointF:
        (x0, x1), (y0, y1) = self.x_range(), self.y_range()
        return QPointF(rect.left() + (x - x0) / (x1 - x0) * rect.width(),
                       rect.bottom() - (y - y0) / (y1 - y0) * rect.height())

    def _draw_series(self, painter: QPainter, rect: QRectF) -> None:
        for i, points in enumerate(self._series.values()):
            colour = QColor(COLOURS[i % len(COLOURS)])
            screen = [self._to_screen(rect, x, y) for x, y in points]
            painter.setPen(QPen(colour, 1.6))
            if len(screen) > 1:
                painter.drawPolyline(QPolygonF(screen))
            if len(screen) <= 30:   # few points (one per epoch): mark each
                painter.setBrush(colour)
                for p in screen:
                    painter.drawEllipse(p, 2.5, 2.5)
                painter.setBrush(Qt.BrushStyle.NoBrush)

    def _draw_legend(self, painter: QPainter, rect: QRectF) -> None:
        if len(self._series) < 2:
            return
        metrics = painter.fontMetrics()
        y = rect.top() + 4
        for i, name in enumerate(self._series):
            width = metrics.horizontalAdvance(name)
            x = rect.right() - width - 26
            painter.setPen(QPen(QColor(COLOURS[i % len(COLOURS)]), 2.5))
            painter.drawLine(QPointF(x, y + 7), QPointF(x + 14, y + 7))
            painter.setPen(self.palette().text().color())
            painter.drawText(QPointF(x + 18, y + 11), name)
            y += metrics.height() + 2
