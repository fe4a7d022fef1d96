"""Hash-chained changelog: verify passes intact, names the first tampered entry."""

from __future__ import annotations

from pathlib import Path

from restate import changelog
from restate.engines.duckdb import DuckDBEngine
from restate.meta import init_meta


def test_verify_detects_the_edited_entry(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    init_meta(engine, "restate_meta")
    for i in range(5):
        changelog.append(engine, "restate_meta", "planned", {"i": i}, restatement_id=1, actor="a")
    assert changelog.verify(engine, "restate_meta") is None
    engine.execute("update restate_meta.changelog set payload_json = '{\"i\":99}' where version = 3")
    broken = changelog.verify(engine, "restate_meta")
    assert broken is not None and broken.version == 3


def test_verify_detects_a_deleted_entry(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    init_meta(engine, "restate_meta")
    for i in range(4):
        changelog.append(engine, "restate_meta", "run", {"i": i})
    engine.execute("delete from restate_meta.changelog where version = 2")
    broken = changelog.verify(engine, "restate_meta")
    assert broken is not None and broken.version == 2
