"""A PNG chart of as-reported vs restated figures per month (matplotlib, Agg backend).

Uses the object-oriented API with an Agg canvas directly (no pyplot), so it needs no
display, keeps no global figure state and is safe to call from worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from notifications.dimensions import dimensions_cell

AS_REPORTED_COLOR = "#9aa5b1"
RESTATED_COLOR = "#1f6feb"


def _amount(v: float, _pos: object = None) -> str:
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


def render_chart(monthly: Sequence[dict[str, Any]], title: str, max_panels: int = 3) -> bytes | None:
    """Grouped bars per month (grey: as reported, blue: restated), one panel per metric
    and dimensions (in the order the rows give them), with the change written above each month.
    None when there is nothing to draw."""
    panels = _panels(monthly, max_panels)
    if not panels:
        return None
    fig = Figure(figsize=(9, 2.8 * len(panels) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (metric, dims) in zip(axes, panels, strict=True):
        rows = sorted(
            (r for r in monthly if r["metric"] == metric and r.get("dimensions") == dims),
            key=lambda r: str(r["month"]),
        )
        months = [str(r["month"]) for r in rows]
        before = [_num(r["as_reported"]) for r in rows]
        after = [_num(r["restated"]) for r in rows]
        xs = list(range(len(months)))
        width = 0.38
        ax.bar([x - width / 2 for x in xs], before, width, label="As reported", color=AS_REPORTED_COLOR)
        ax.bar([x + width / 2 for x in xs], after, width, label="Restated", color=RESTATED_COLOR)
        for x, b, a in zip(xs, before, after, strict=True):
            delta = a - b
            if delta:
                pct = f" ({delta / abs(b) * 100:+.2f}%)" if b else ""
                ax.annotate(
                    f"{delta:+,.0f}{pct}",
                    (x, max(a, b, 0)),
                    textcoords="offset points",
                    xytext=(0, 3),
                    ha="center",
                    fontsize=8,
                    color="#b42318" if delta < 0 else "#067647",
                )
        ax.set_xticks(xs, months, rotation=45 if len(months) > 8 else 0, fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(_amount))
        label = metric.replace("_", " ").capitalize() + (
            f" ({dimensions_cell(dims, monthly)})" if dims else ""
        )
        ax.set_title(label, fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(y=0.15)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
