"""A PNG chart of as-reported vs restated figures per month (matplotlib, Agg backend).

Uses the object-oriented API with an Agg canvas directly (no pyplot), so it needs no
display, keeps no global figure state and is safe to call from worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from notifications.dimensions import dimensions_cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

AS_REPORTED_COLOR = "#9aa5b1"
RESTATED_COLOR = "#1f6feb"


def _amount(v: float, _pos: object = None) -> str:
    """12,500 -> '12.5k', 15,000 -> '15k', 1,250,000 -> '1.25M': up to two decimals, so
    axis ticks at uneven steps (2.5k, 7.5k) never read as rounded neighbours."""
    units = ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "B"))
    # The largest unit the value reaches once rounded as shown: 999,999 reads 1M, not 1,000k.
    scale, suffix = units[0]
    for unit, name in units[1:]:
        if round(abs(v) / unit, 2) >= 1 and abs(v) >= unit * 0.99995:
            scale, suffix = unit, name
    if scale == 1.0:
        return f"{v:,.0f}" if round(abs(v)) < 1000 else "1k" if v > 0 else "-1k"
    return f"{v / scale:,.2f}".rstrip("0").rstrip(".") + suffix


def _compact(v: float) -> str:
    """The change written at a bar, short: 121,790 -> '122k', 1,250,000 -> '1.2M'."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:,.1f}B"
    if a >= 1e6:
        return f"{v / 1e6:,.1f}M"
    if a >= 1e3:
        return f"{v / 1e3:,.0f}k"
    return f"{v:,.0f}"


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _panels(monthly: Sequence[dict[str, Any]], max_panels: int) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for r in monthly:
        panel = (str(r["metric"]), r.get("dimensions"))
        if panel not in found:
            found.append(panel)

    # In the order the rows list them (the model's declared metric order, then dimensions).
    return found[:max_panels]


def build_figure(monthly: Sequence[dict[str, Any]], title: str, max_panels: int = 3) -> Figure | None:
    """Per metric and dimensions (in the order the rows give them): grouped bars per month
    (grey: as reported, blue: restated) and, under them, a panel of the change per month
    with its amount written at each bar (rotated when there are many months), so labels
    never sit on top of each other from 1 to 24 months. None when there is nothing to draw."""
    panels = _panels(monthly, max_panels)
    if not panels:
        return None
    # Imported here: matplotlib costs ~0.4 s, and most notices (a plan) draw no chart.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # Constrained layout makes room for every title, tick label and rotated month.
    fig = Figure(figsize=(9, 4.6 * len(panels) + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(h_pad=0.14, hspace=0.06)  # type: ignore[union-attr,call-arg]
    grid = fig.add_gridspec(2 * len(panels), 1, height_ratios=[3, 1.6] * len(panels))
    first_ax = None
    for n, (metric, dims) in enumerate(panels):
        rows = sorted(
            (r for r in monthly if r["metric"] == metric and r.get("dimensions") == dims),
            key=lambda r: str(r["month"]),
        )
        months = [str(r["month"]) for r in rows]
        before = [_num(r["as_reported"]) for r in rows]
        after = [_num(r["restated"]) for r in rows]
        deltas = [a - b for a, b in zip(after, before, strict=True)]
        xs = list(range(len(months)))
        width = 0.38
        ax = fig.add_subplot(grid[2 * n])
        delta_ax = fig.add_subplot(grid[2 * n + 1], sharex=ax)
        first_ax = first_ax or ax
        ax.bar([x - width / 2 for x in xs], before, width, label="As reported", color=AS_REPORTED_COLOR)
        ax.bar([x + width / 2 for x in xs], after, width, label="Restated", color=RESTATED_COLOR)
        ax.yaxis.set_major_formatter(FuncFormatter(_amount))
        ax.tick_params(axis="x", labelbottom=False)
        label = metric.replace("_", " ").capitalize() + (
            f" ({dimensions_cell(dims, monthly)})" if dims else ""
        )
        ax.set_title(label, fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(y=0.1)

        colors = ["#b42318" if d < 0 else "#067647" for d in deltas]
        delta_ax.bar(xs, deltas, 0.6, color=colors)
        delta_ax.axhline(0, color="#475467", linewidth=0.8)
        many = len(months) > 6
        low, high = min([*deltas, 0.0]), max([*deltas, 0.0])
        span = (high - low) or 1.0
        # Room for the labels beyond the longest bars (rotated labels are taller).
        pad = span * (0.9 if many else 0.35)
        delta_ax.set_ylim(low - (pad if low < 0 else span * 0.05), high + (pad if high > 0 else span * 0.05))
        for x, d in zip(xs, deltas, strict=True):
            if not d:
                continue
            delta_ax.annotate(
                ("+" if d > 0 else "-") + _compact(abs(d)),
                (x, d),
                textcoords="offset points",
                xytext=(0, 3 if d > 0 else -3),
                ha="center",
                va="bottom" if d > 0 else "top",
                rotation=90 if many else 0,
                fontsize=7,
                color="#b42318" if d < 0 else "#067647",
            )
        delta_ax.set_ylabel("change", fontsize=8)
        delta_ax.yaxis.set_major_formatter(FuncFormatter(_amount))
        delta_ax.yaxis.set_major_locator(MaxNLocator(3))
        delta_ax.set_xticks(xs, months, rotation=90 if len(months) > 12 else (45 if many else 0), fontsize=8)
        delta_ax.spines[["top", "right"]].set_visible(False)
    assert first_ax is not None
    handles, labels = first_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def render_chart(monthly: Sequence[dict[str, Any]], title: str, max_panels: int = 3) -> bytes | None:
    """The chart as PNG bytes (see build_figure); None when there is nothing to draw."""
    fig = build_figure(monthly, title, max_panels)
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
