"""User mistakes at the CLI: one line on stderr and a non-zero exit, never a traceback;
user text is shown as text, never read as markup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from interfaces.cli import app
from restate.engines.duckdb import DuckDBEngine
from restate.settings import get_settings
from restate.state import changelog
from restate.state.meta import init_meta
from tests.notifications.conftest import seed_restatement

MARKUP = "[/x] refunds [bold]not[/bold] netted [/]"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, Path]]:
    """A CLI on its own warehouse holding restatement 1 (its reason contains markup)."""
    data = tmp_path / "data"
    data.mkdir()
    engine = DuckDBEngine(data / "warehouse.duckdb")
    init_meta(engine, "restate_meta")
    seed_restatement(engine)
    engine.execute("update restate_meta.restatements set reason = ? where restatement_id = 1", [MARKUP])
    with engine.transaction():
        changelog.append(
            engine, "restate_meta", "planned", {"reason": MARKUP}, restatement_id=1, actor="[red]"
        )
    engine.close()
    monkeypatch.setenv("RESTATE_DATA_DIR", str(data))
    # The CLI's console is made at import (width read then); give it a wide one here.
    monkeypatch.setattr("interfaces.cli.commands.console", Console(width=250))
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    get_settings.cache_clear()
    try:
        yield CliRunner(), data
    finally:
        get_settings.cache_clear()


def test_markup_in_user_text_is_printed_literally(cli: tuple[CliRunner, Path]) -> None:
    runner, _ = cli
    for args in (["status", "--wide"], ["status", "1"], ["log"], ["log", "--id", "1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        # Printed literally (tables may wrap between words, never inside a token).
        for token in ("[/x]", "[bold]not[/bold]"):
            flat = "".join(ch for ch in result.output if ch not in " \n│┃")
            assert token.replace(" ", "") in flat, (args, token, result.output)


def test_narrow_terminal_folds_values_instead_of_cutting_them(
    cli: tuple[CliRunner, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, _ = cli
    monkeypatch.setattr("interfaces.cli.commands.console", Console(width=60))
    result = runner.invoke(app, ["status", "--wide"])  # the reason is in the wide list
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output
    flat = "".join(ch for ch in result.output if ch not in " \n│┃")
    assert "netted" in flat, result.output


def test_the_status_list_fits_80_columns_and_wide_adds_the_rest(
    cli: tuple[CliRunner, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, _ = cli
    monkeypatch.setattr("interfaces.cli.commands.console", Console(width=80))
    narrow = runner.invoke(app, ["status"])
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # One row per restatement, each on few lines: the columns chosen fit, nothing is folded away.
    assert "awaiting approval" in narrow.output and "netted" not in narrow.output
    assert len(lines) <= 12, narrow.output
    monkeypatch.setattr("interfaces.cli.commands.console", Console(width=200))
    wide = runner.invoke(app, ["status", "--wide"])
    assert wide.exit_code == 0 and "requested_by" in wide.output and "netted" in wide.output, wide.output


@pytest.mark.parametrize(
    "args",
    [
        ["run", "99"],
        ["diff", "99"],
        ["promote", "99"],
        ["rollback", "99", "--by", "x"],
        ["validate", "99"],
        ["notify", "99", "--event", "promoted"],
        ["log", "--id", "99"],
        ["status", "99"],
    ],
)
def test_unknown_id_is_one_line_on_stderr_and_exit_1(cli: tuple[CliRunner, Path], args: list[str]) -> None:
    runner, _ = cli
    result = runner.invoke(app, args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "99" in err[0], result.stderr
    assert "no restatement" in err[0]


def test_run_exits_non_zero_when_validation_failed(
    cli: tuple[CliRunner, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run finished and its validation failed: the report is shown and the exit code says so."""
    import restate.actions

    runner, _ = cli

    def outcome(passed: bool) -> Any:
        def run_restatement(*_: Any, **__: Any) -> dict[str, Any]:
            return {
                "restatement_id": 1,
                "recompute": {"done": 2, "rows_written": 10},
                "reused": 1,
                "validation": {"passed": passed, "report": f"finance check {'ok' if passed else 'FAILED'}"},
            }

        return run_restatement

    monkeypatch.setattr(restate.actions, "run_restatement", outcome(False))
    failed = runner.invoke(app, ["run", "1"])
    assert failed.exit_code == 1, failed.output
    assert "finance check FAILED" in failed.output

    monkeypatch.setattr(restate.actions, "run_restatement", outcome(True))
    passed = runner.invoke(app, ["run", "1"])
    assert passed.exit_code == 0, passed.output


def test_status_of_one_restatement_is_a_detail_view(cli: tuple[CliRunner, Path]) -> None:
    runner, _ = cli
    result = runner.invoke(app, ["status", "1"])
    assert result.exit_code == 0, result.output
    fields = [line.split("  ")[0] for line in result.output.splitlines() if line and not line.startswith(" ")]
    for field in ("restatement", "phase", "period", "entities", "chunks", "validation", "approval"):
        assert field in fields, (field, result.output)


def test_status_json_of_one_restatement_is_an_object(cli: tuple[CliRunner, Path]) -> None:
    import json

    runner, _ = cli
    one = json.loads(runner.invoke(app, ["status", "1", "--json"]).stdout)
    assert isinstance(one, dict) and one["restatement_id"] == 1
    assert isinstance(json.loads(runner.invoke(app, ["status", "--json"]).stdout), list)
