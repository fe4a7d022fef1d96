"""The notice chart stays readable from 1 to 24 months: no two labels on it (titles,
legend, tick labels, the change written at each month) overlap, measured on the rendered
label boxes; the image is a real PNG."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from matplotlib.text import Annotation, Text

from notifications.chart import build_figure, render_chart


def monthly(months: int, currencies: tuple[str, ...] = ("USD", "EUR")) -> list[dict]:
    rows = []
    for i in range(months):
        month = f"{2025 + (i // 12)}-{i % 12 + 1:02d}"
        for k, currency in enumerate(currencies):
            before = Decimal(180_000 + 9_000 * i + 40_000 * k)
            # Large and small, negative and positive changes, as real restatements have.
            delta = Decimal(-30_793 - 7_000 * i) if i % 5 else Decimal(1_234 + 10 * i)
            rows.append(
                {
                    "month": month,
                    "metric": "net_revenue",
                    "dimensions": f"currency={currency}",
                    "as_reported": before,
                    "restated": before + delta,
                    "delta": delta,
                    "pct": float(delta * 100 / before),
                }
            )
    return rows


def _drawn_texts(fig) -> list[Text]:
    """Every label the image shows: titles, legend, axis labels, the change annotations and
    the tick labels of ticks inside each axis's view (matplotlib keeps Text objects for
    ticks outside it, which are not drawn)."""
    texts: list[Text] = [t for t in (fig._suptitle,) if t is not None]
    for legend in fig.legends:
        texts += list(legend.get_texts())
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.yaxis.label, ax.xaxis.label]
        texts += [a for a in ax.texts if isinstance(a, Annotation)]
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=False):
                if min(low, high) <= loc <= max(low, high) and label.get_visible():
                    texts.append(label)
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _label_boxes(fig) -> list[tuple[str, object]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]


@pytest.mark.parametrize("months", [1, 3, 14, 24])
def test_no_two_labels_overlap(months: int) -> None:
    fig = build_figure(monthly(months), "Restatement #7: as reported vs restated")
    assert fig is not None
    boxes = _label_boxes(fig)
    changes = [a for a in fig.findobj(Annotation) if a.get_text().strip()]
    assert len(changes) == 2 * months  # every month's change is written, in both panels
    overlapping = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b) and box_a.intersection(box_a, box_b).width > 0.5
        and box_a.intersection(box_a, box_b).height > 0.5
    ]  # fmt: skip
    assert not overlapping, overlapping[:5]
    # Inside the image: nothing cut off at the edges.
    width, height = fig.canvas.get_width_height()
    assert all(b.x0 >= -1 and b.y0 >= -1 and b.x1 <= width + 1 and b.y1 <= height + 1 for _, b in boxes)


def test_the_png_is_real_and_absent_without_figures() -> None:
    png = render_chart(monthly(14), "t")
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert render_chart([], "t") is None


def test_the_overlap_check_sees_a_planted_collision() -> None:
    fig = build_figure(monthly(3), "t")
    assert fig is not None
    ax = fig.axes[1]
    ax.annotate("+999k", (1, 0))
    ax.annotate("+888k", (1, 0))  # the same spot
    boxes = _label_boxes(fig)
    planted = [b for t, b in boxes if t in ("+999k", "+888k")]
    assert len(planted) == 2 and planted[0].overlaps(planted[1])


_SCALE = {"k": 1e3, "M": 1e6, "B": 1e9}


def _value(label: str) -> float:
    text = label.replace(",", "").replace("\u2212", "-")
    return float(text[:-1]) * _SCALE[text[-1]] if text[-1] in _SCALE else float(text)


@pytest.mark.parametrize("scale", [1, 1_000, 15_000, 1_250_000])
def test_amount_ticks_say_the_value_they_mark(scale: int) -> None:
    """Tick labels are not rounded into each other: at steps of 2.5k a tick reads 2.5k,
    never '2k' next to a '5k' (which once made a 12,500 tick read 12k)."""
    rows = [
        {
            "month": f"2026-0{i}",
            "metric": "net_revenue",
            "as_reported": Decimal(scale * (10 + i)),
            "restated": Decimal(scale * (10 + i) - scale * i),
            "delta": Decimal(-scale * i),
            "pct": None,
        }
        for i in range(1, 4)
    ]
    fig = build_figure(rows, "ticks")
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = sorted(ax.get_ylim())
        ticks = [
            (loc, label.get_text())
            for loc, label in zip(ax.yaxis.get_majorticklocs(), ax.yaxis.get_majorticklabels(), strict=False)
            if low <= loc <= high and label.get_text()
        ]
        labels = [text for _, text in ticks]
        assert len(set(labels)) == len(labels), labels
        for loc, text in ticks:
            assert abs(_value(text) - loc) <= max(abs(loc) * 0.005, 0.5), (loc, text)
