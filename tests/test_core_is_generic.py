"""The core (restate/, notifications/, flows/) names no model or column of either example
project: everything it knows about a project comes from the manifest's declarations.

The names are collected from the example projects' own files (model SQL file names,
every column a yml declares, meta.restate values, source columns), so a model or column
added to an example is checked too. Common English words that are also column names in
an example (status, date, ...) are allowed where they are plain words; they are listed
here, never example-specific names.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from restate.contract.spec import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "dbt" / "billing", ROOT / "dbt" / "northstar"]
CORE = [ROOT / "restate", ROOT / "notifications", ROOT / "flows"]
# Words that are column names in an example but also ordinary words of the core's own
# vocabulary (a restatement has a status; a reference export has a date column).
PLAIN_WORDS = frozenset(
    {
        "status",
        "date",
        "amount",
        "channel",
        "orders",
        "tax",
        "net",
        "gross",
        "day",
        "month",
        "events",
        "updated_at",
    }
)
# The meta schema's earlier layout named two of its own columns like the first example's;
# the upgrade that carries old rows over names them (restate/state/meta.py, _EARLIER_LAYOUTS).
EARLIER_LAYOUT = re.compile(
    r"^\s*(\"currency\",|\"select restatement_id, model, event_date|\"load_partitions\": \(\"event_date\")"
)


def _names_in_yml(data: object, out: set[str]) -> None:
    if isinstance(data, dict):
        for key in ("columns",):
            for col in data.get(key) or []:
                if isinstance(col, dict) and isinstance(col.get("name"), str):
                    out.add(col["name"].lower())
        restate = (data.get("meta") or {}).get("restate") if isinstance(data.get("meta"), dict) else None
        if isinstance(restate, dict):
            _restate_values(restate, out)
        for value in data.values():
            _names_in_yml(value, out)
    elif isinstance(data, list):
        for item in data:
            _names_in_yml(item, out)


def _restate_values(decl: dict, out: set[str]) -> None:
    for value in decl.values():
        if isinstance(value, str):
            out.add(value.lower())
        elif isinstance(value, list):
            out.update(v.lower() for v in value if isinstance(v, str))
        elif isinstance(value, dict):
            _restate_values(value, out)


def example_names() -> set[str]:
    names: set[str] = set()
    for project in EXAMPLES:
        assert (project / "dbt_project.yml").is_file(), f"example project missing: {project}"
        for sql in (project / "models").rglob("*.sql"):
            names.add(sql.stem.lower())
            # meta.restate declared in the model's config block
            for match in re.finditer(r"'(\w+)'", sql.read_text()):
                if "_" in match.group(1):
                    names.add(match.group(1).lower())
        for yml in (project / "models").rglob("*.yml"):
            _names_in_yml(yaml.safe_load(yml.read_text()), names)
    # The contract's own keys (date_column, upstream, ...), the package's strategy and the
    # landing's lineage columns are restate's vocabulary, which the examples use.
    vocabulary = KNOWN_KEYS | {
        "restate",
        "model",
        "processed_at",
        "landing",
        "folder",
        "account_column",
        "replace_partitions",
        "incremental",
        "source_file",
        "source_row_number",
        "landing_processed_at",
    }
    return {n for n in names if len(n) > 2 and n not in PLAIN_WORDS and n not in vocabulary}


def test_the_name_collection_sees_both_examples() -> None:
    names = example_names()
    # One model and one column of each example, so an empty collection cannot pass.
    assert {"fct_revenue_daily", "account_id", "fct_orders_daily", "store_id"} <= names, sorted(names)


def test_core_names_no_model_or_column_of_an_example() -> None:
    names = example_names()
    pattern = re.compile(
        r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b", re.I
    )
    found = []
    for folder in CORE:
        for path in sorted(folder.rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if EARLIER_LAYOUT.match(line):
                    continue
                for match in pattern.finditer(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}: {line.strip()[:100]}")
    assert not found, "example names in the core:\n" + "\n".join(found)
