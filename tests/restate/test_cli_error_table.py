"""Every command answers a mistake the same way: one line on stderr, a non-zero exit
(2 for a malformed command line, 1 otherwise), valid JSON {"error": ...} on stdout under
--json, and never a traceback. Cases: an unknown id, a bad date, missing data (a
warehouse restate never initialised), a bad setting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from interfaces.cli import app
from restate.engines.duckdb import DuckDBEngine
from restate.settings import get_settings
from restate.state.meta import init_meta

ID_COMMANDS: list[list[str]] = [
    ["run", "99"],
    ["validate", "99"],
    ["diff", "99"],
    ["promote", "99", "--approved-by", "bob"],
    ["rollback", "99", "--by", "bob"],
    ["notify", "99", "--event", "promoted"],
    ["status", "99"],
    ["log", "--id", "99"],
]
BAD_DATES: list[list[str]] = [
    ["plan", "--start", "2026-13-01", "--end", "2026-12-31", "--reason", "r", "--requested-by", "a"],
    ["plan", "--start", "yesterday", "--end", "2026-12-31", "--reason", "r", "--requested-by", "a"],
    ["explain", "--start", "2026-02-30", "--end", "2026-03-01"],
    ["reconcile", "--today", "12/04/2026"],
    ["report", "fct_x", "--start", "2026-1-1x"],
]
MALFORMED: list[list[str]] = [["diff", "abc"], ["status", "1", "2"], ["nosuch"], ["promote", "1", "--nope"]]
MISSING_DATA: list[list[str]] = [["status"], ["status", "1"], ["log"], ["diff", "1"], ["audit", "verify"]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, Path]]:
    monkeypatch.setenv("RESTATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RESTATE_DUCKDB_PATH", raising=False)
    monkeypatch.setattr("interfaces.cli.commands.console", Console(width=200))
    (tmp_path / "data").mkdir()
    get_settings.cache_clear()
    try:
        yield CliRunner(), tmp_path / "data"
    finally:
        get_settings.cache_clear()


def _initialised(data: Path) -> None:
    engine = DuckDBEngine(data / "warehouse.duckdb")
    init_meta(engine, "restate_meta")
    engine.close()


def _one_line_error(runner: CliRunner, args: list[str], code: int | None = None) -> str:
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and (code is None or result.exit_code == code), (args, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.output, (args, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    if "--json" in args:
        payload = json.loads(result.stdout)
        assert payload["error"] and payload["exit_code"] == result.exit_code, (args, result.stdout)
    return lines[0]


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("args", ID_COMMANDS, ids=lambda a: a[0])
def test_an_unknown_id(cli: tuple[CliRunner, Path], args: list[str], as_json: bool) -> None:
    runner, data = cli
    _initialised(data)
    line = _one_line_error(runner, [*args, *(["--json"] if as_json else [])], code=1)
    assert "99" in line


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("args", BAD_DATES, ids=lambda a: f"{a[0]}-{a[2]}")
def test_a_bad_date(cli: tuple[CliRunner, Path], args: list[str], as_json: bool) -> None:
    runner, _ = cli
    line = _one_line_error(runner, [*args, *(["--json"] if as_json else [])], code=2)
    assert "%Y-%m-%d" in line and f"{args[0]} --help" in line


@pytest.mark.parametrize("args", MALFORMED, ids=lambda a: "-".join(a))
def test_a_malformed_command_line(cli: tuple[CliRunner, Path], args: list[str]) -> None:
    runner, _ = cli
    _one_line_error(runner, args, code=2)


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("args", MISSING_DATA, ids=lambda a: "-".join(a))
def test_a_warehouse_restate_never_initialised(
    cli: tuple[CliRunner, Path], args: list[str], as_json: bool
) -> None:
    runner, _ = cli
    line = _one_line_error(runner, [*args, *(["--json"] if as_json else [])], code=1)
    assert "restate init" in line, line


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ("RESTATE_CHUNK_DAYS", "RESTATE_CHUNK_DAYS"),
        ("RESTATE_PROD_SCHEMA", "RESTATE_PROD_SCHEMA"),
        ("RESTATE_APPROVERS", "RESTATE_APPROVERS must be JSON"),
        ("RESTATE_PROJECT_VARS", "RESTATE_PROJECT_VARS must be JSON"),
    ],
)
def test_a_bad_setting_names_it(
    cli: tuple[CliRunner, Path], monkeypatch: pytest.MonkeyPatch, env: str, said: str
) -> None:
    runner, _ = cli
    monkeypatch.setenv(env, "x; drop table y")
    get_settings.cache_clear()
    line = _one_line_error(runner, ["status", "--json"], code=1)
    assert said in line, line


def test_version(cli: tuple[CliRunner, Path]) -> None:
    runner, _ = cli
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("restate "), result.output
