"""How a diff row's dimensions ("name=value, name2=value2") are shown in notices and charts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from restate.validation.diff import dimension_values


def _pairs(label: Any) -> list[tuple[str, str]]:
    """("name", "value") pairs of a dimensions label "name=value, name2=value2"."""
    return list(dimension_values(label).items())


def dimensions_header(rows: Sequence[dict[str, Any]]) -> str:
    """The column header for the rows' dimensions: their names when every row has the same
    ones (e.g. "Region"), else "Breakdown"."""
    names = {tuple(n for n, _ in _pairs(r.get("dimensions"))) for r in rows if r.get("dimensions")}
    if len(names) == 1:
        return " / ".join(n.replace("_", " ").capitalize() for n in next(iter(names)))
    return "Breakdown"


def dimensions_cell(label: Any, rows: Sequence[dict[str, Any]]) -> str:
    """A row's dimensions as shown under dimensions_header: the values alone when the
    header names the dimensions, else the whole label."""
    if dimensions_header(rows) == "Breakdown":
        return str(label or "")
    return " / ".join(v for _, v in _pairs(label))
