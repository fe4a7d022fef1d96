"""Tamper-evident changelog: keyed MAC chain, checkpoints outside the warehouse,
serialised appends. Verify passes intact and names the first bad entry otherwise."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from interfaces.cli import app
from restate.engines import connect
from restate.engines.duckdb import DuckDBEngine
from restate.settings import Settings, get_settings
from restate.state import changelog
from restate.state.meta import init_meta
from tests.conftest import make_settings

META = "restate_meta"


def _engine(settings: Settings) -> DuckDBEngine:
    engine = connect(settings)
    assert isinstance(engine, DuckDBEngine)
    init_meta(engine, META)
    return engine


def _append_n(engine: DuckDBEngine, n: int) -> None:
    for i in range(n):
        changelog.append(engine, META, "planned", {"i": i}, restatement_id=1, actor="ana")


def _rechain_without_key(engine: DuckDBEngine, edit_version: int, payload_json: str) -> None:
    """What a warehouse writer without the key can do: change an entry and recompute a
    plain sha256 chain (the chain this log used before it was keyed) from it on."""
    rows = engine.query(
        f"select version, recorded_at, restatement_id, event, actor, payload_json, entry_hash "
        f"from {META}.changelog order by version"
    )
    prev = "0" * 64
    for version, recorded_at, rid, event, actor, body, stored in rows:
        if version < edit_version:
            prev = stored
            continue
        if version == edit_version:
            body = payload_json
        fields = [str(version), recorded_at.isoformat(), "" if rid is None else str(rid), event]
        material = "\x1f".join([*fields, actor or "", body, prev])
        digest = hashlib.sha256(material.encode()).hexdigest()
        engine.execute(
            f"update {META}.changelog set payload_json = ?, prev_hash = ?, entry_hash = ? where version = ?",
            [body, prev, digest, version],
        )
        prev = digest
    if engine.relation_exists(META, "changelog_head"):
        engine.execute(f"update {META}.changelog_head set entry_hash = ?", [prev])


def _cut_tail(engine: DuckDBEngine, keep: int) -> None:
    """Delete every entry after `keep` and make the head agree, as a careful attacker would."""
    engine.execute(f"delete from {META}.changelog where version > ?", [keep])
    if engine.relation_exists(META, "changelog_head"):
        last = engine.query(f"select version, entry_hash from {META}.changelog order by version desc limit 1")
        version, mac = last[0] if last else (0, "0" * 64)
        engine.execute(f"update {META}.changelog_head set version = ?, entry_hash = ?", [version, mac])


def test_verify_detects_the_edited_entry(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 5)
    assert changelog.verify(engine, META) is None
    engine.execute(f"update {META}.changelog set payload_json = '{{\"i\":99}}' where version = 3")
    broken = changelog.verify(engine, META)
    assert broken is not None and broken.version == 3


def test_verify_detects_a_deleted_entry(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 4)
    engine.execute(f"delete from {META}.changelog where version = 2")
    broken = changelog.verify(engine, META)
    assert broken is not None and broken.version == 2


def test_an_edit_rechained_without_the_key_is_detected(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 5)
    _rechain_without_key(engine, 3, '{"i":99}')
    broken = changelog.verify(engine, META)
    assert broken is not None and broken.version == 3, broken
    assert "MAC" in broken.reason


def test_a_deleted_tail_is_detected_by_the_checkpoints(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 5)
    _cut_tail(engine, keep=3)
    broken = changelog.verify(engine, META)
    assert broken is not None and broken.version == 4, broken
    assert "checkpoint" in broken.reason and "v5" in broken.reason


def test_an_emptied_log_is_detected_by_the_checkpoints(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 3)
    _cut_tail(engine, keep=0)
    broken = changelog.verify(engine, META)
    assert broken is not None and broken.version == 1, broken
    assert "checkpoint" in broken.reason


def test_a_different_key_does_not_verify(tmp_path: Path) -> None:
    s = make_settings(tmp_path, audit_key=SecretStr("the-key-held-by-the-auditors"))
    engine = _engine(s)
    _append_n(engine, 3)
    assert changelog.verify(engine, META) is None
    engine.close()
    with _engine(make_settings(tmp_path, audit_key=SecretStr("a-guessed-key"))) as other:
        broken = changelog.verify(other, META)
    assert broken is not None and broken.version == 1 and "MAC" in broken.reason


def test_the_key_file_is_created_private_and_outside_the_warehouse(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    engine = _engine(s)
    _append_n(engine, 1)
    key_file = s.state_dir / "audit.key"
    assert key_file.is_file()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    # The key never reaches the warehouse.
    key = key_file.read_text().strip()
    dumped = " ".join(str(r) for r in engine.query(f"select * from {META}.changelog"))
    assert key not in dumped
    # A configured key is used instead of a file.
    s2 = make_settings(tmp_path / "other", audit_key=SecretStr("configured"))
    with _engine(s2) as e2:
        _append_n(e2, 1)
        assert changelog.verify(e2, META) is None
    assert not (s2.state_dir / "audit.key").exists()


def test_verify_without_the_key_says_so(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 2)
    (make_settings(tmp_path).state_dir / "audit.key").unlink()
    with pytest.raises(changelog.AuditKeyMissing, match="RESTATE_AUDIT_KEY"):
        changelog.verify(engine, META)
    # Nor is a new key silently created for a log that already has checkpoints.
    with pytest.raises(changelog.AuditKeyMissing):
        changelog.append(engine, META, "planned", {})


def test_a_rolled_back_append_is_not_checkpointed(tmp_path: Path) -> None:
    """append() runs inside the caller's transaction: a rollback must not leave a
    checkpoint that the log can never contain."""
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 2)
    with pytest.raises(RuntimeError, match="boom"), engine.transaction():
        changelog.append(engine, META, "promoted", {"x": 1})
        changelog.append(engine, META, "notice_sent", {"x": 2})
        raise RuntimeError("boom")
    assert changelog.verify(engine, META) is None
    changelog.append(engine, META, "promoted", {"x": 3})
    assert changelog.verify(engine, META) is None
    assert changelog.chain_head(engine, META).startswith("changelog v3 mac ")


class _CursorEngine(DuckDBEngine):
    """A second connection (cursor) to the same DuckDB database, for another thread."""

    def __init__(self, parent: DuckDBEngine) -> None:
        self.path = parent.path
        self.con = parent.con.cursor()
        self.settings = getattr(parent, "settings", None)


def test_concurrent_appends_never_fork_the_chain(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    per_thread, errors = 40, []

    def writer(name: str) -> None:
        e = _CursorEngine(engine)
        try:
            for i in range(per_thread):
                changelog.append(e, META, "loaded", {"writer": name, "i": i}, actor=name)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            e.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = [r[0] for r in engine.query(f"select version from {META}.changelog order by version")]
    assert versions == list(range(1, 2 * per_thread + 1))
    written = {(e["actor"], e["payload"]["i"]) for e in changelog.entries(engine, META)}
    assert written == {(n, i) for n in ("a", "b") for i in range(per_thread)}
    assert changelog.verify(engine, META) is None


@pytest.fixture
def cli_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    monkeypatch.setenv("RESTATE_DATA_DIR", str(data))
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("RESTATE_AUDIT_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    try:
        yield data
    finally:
        get_settings.cache_clear()


def test_cli_audit_verify_fails_in_one_line_after_a_rechain(cli_data: Path) -> None:
    with _engine(make_settings(cli_data)) as engine:
        _append_n(engine, 4)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "4 entries" in ok.output and "v4" in ok.output

    with _engine(make_settings(cli_data)) as engine:
        _rechain_without_key(engine, 2, '{"i":"a cent less"}')
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "entry 2" in lines[0] and "MAC" in lines[0]


def test_cli_audit_verify_says_when_no_key_is_available(
    cli_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESTATE_AUDIT_KEY", "held-by-the-auditors")
    get_settings.cache_clear()
    with _engine(get_settings()) as engine:
        _append_n(engine, 2)
    monkeypatch.delenv("RESTATE_AUDIT_KEY")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "RESTATE_AUDIT_KEY" in result.output and len(result.output.strip().splitlines()) == 1


def test_an_append_that_loses_the_race_inside_a_transaction_raises(tmp_path: Path) -> None:
    """Inside a caller's transaction the loser cannot retry alone: it raises, its
    transaction rolls back, and the winner's entry is the only version 2."""
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 1)
    other = _CursorEngine(engine)
    with engine.transaction():
        changelog.append(engine, META, "promoted", {"by": "a"}, actor="a")
        with pytest.raises(changelog.ChangelogConflict), other.transaction():
            changelog.append(other, META, "promoted", {"by": "b"}, actor="b")
    other.close()
    assert [(e["version"], e["actor"]) for e in changelog.entries(engine, META)] == [(1, "ana"), (2, "a")]
    assert changelog.verify(engine, META) is None


def test_every_notice_quotes_the_chain_head(tmp_path: Path) -> None:
    """Recipients hold a checkpoint of the log outside the warehouse: the email header
    X-Restate-Audit-Head and the stored notice carry it; the text a reader reads does not
    (no hash in a finance notice)."""
    from notifications.composer import compose
    from notifications.dispatch import build_context
    from notifications.email import EmailTarget
    from tests.notifications.conftest import seed_restatement

    s = make_settings(tmp_path)
    engine = _engine(s)
    seed_restatement(engine)
    for event in ("validated", "promoted", "rolled_back"):
        changelog.append(engine, META, event, {}, restatement_id=1, actor="ana")
    mac = engine.scalar(f"select entry_hash from {META}.changelog where version = 3")
    head = changelog.chain_head(engine, META)
    assert head == f"changelog v3 mac {mac[:8]}"
    for event in ("promoted", "rolled_back", "approval_needed"):
        ctx = build_context(engine, s, 1, event)
        message = compose(ctx)
        assert ctx.chain_head == head and message.audit_head == head
        assert ctx.to_json()["chain_head"] == head
        mail = EmailTarget("127.0.0.1", 25, sender="restate@finance.example.com").build("a@b.com", message)
        assert mail["X-Restate-Audit-Head"] == head
        assert mac[:8] not in message.text and mac[:8] not in message.html
        assert mac[:8] not in json.dumps(message.blocks)


def test_a_log_from_before_the_head_table_needs_init_then_continues(tmp_path: Path) -> None:
    engine = _engine(make_settings(tmp_path))
    _append_n(engine, 2)
    engine.execute(f"drop table {META}.changelog_head")
    fresh = _CursorEngine(engine)  # a new session: nothing cached about the old table
    with pytest.raises(changelog.ChangelogError, match="restate init"):
        changelog.append(fresh, META, "planned", {})
    init_meta(fresh, META)  # seeds the head from the log's last entry
    assert changelog.append(fresh, META, "planned", {}) == 3
    assert changelog.verify(fresh, META) is None


def test_a_second_writer_without_the_key_does_not_mint_a_new_one(tmp_path: Path) -> None:
    from restate.engines import connect
    from restate.settings import Settings
    from restate.state.changelog import AuditKeyMissing
    from restate.state.meta import init_meta

    first = Settings(data_dir=tmp_path / "host1", duckdb_path=tmp_path / "shared.duckdb")
    with connect(first) as e:
        init_meta(e, first.meta_schema)
        with e.transaction():
            changelog.append(e, first.meta_schema, "planned", {"x": 1})
    # Another host, same warehouse, no key file and no checkpoints of its own.
    second = Settings(data_dir=tmp_path / "host2", duckdb_path=tmp_path / "shared.duckdb")
    with connect(second) as e:
        with pytest.raises(AuditKeyMissing, match="already holds 1 entries"):
            with e.transaction():
                changelog.append(e, second.meta_schema, "approved", {"y": 2})
        assert not second.audit_key_path.exists()
    with connect(first) as e:
        assert changelog.verify(e, first.meta_schema) is None
