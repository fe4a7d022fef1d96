"""`restate demo` works in its own folder, marked by a file it writes when it creates it;
it refuses any other folder and never touches the warehouse, landing, finance or state the
installation's settings point at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from examples.billing.demo import run_demo
from examples.billing.generate import GenerateSpec
from interfaces.cli import app
from restate.settings import Settings, get_settings
from tests.conftest import SMALL

pytestmark = pytest.mark.slow

DEMO_MARKER = ".restate-demo"  # written by the demo into the folder it creates


def _precious(root: Path) -> dict[Path, bytes]:
    """An installation's data: warehouse, changelog-bearing state, landing and finance files."""
    files = {
        root / "data" / "warehouse.duckdb": b"not a demo warehouse",
        root / "data" / "state" / "audit.key": b"secret",
        root / "data" / "outbox" / "n1.json": b"{}",
        root / "elsewhere" / "prod.duckdb": b"production",
        root / "lake" / "events" / "dt=2026-01-01" / "a.parquet": b"raw",
        root / "fin" / "revenue_2026-01.csv": b"date,currency,gross_revenue,refunds,net_revenue\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[Path, bytes]]:
    files = _precious(tmp_path)
    monkeypatch.setenv("RESTATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RESTATE_DUCKDB_PATH", str(tmp_path / "elsewhere" / "prod.duckdb"))
    monkeypatch.setenv("RESTATE_LANDING_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("RESTATE_FINANCE_URI", str(tmp_path / "fin"))
    get_settings.cache_clear()
    try:
        yield files
    finally:
        get_settings.cache_clear()


def _untouched(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, path


@pytest.mark.parametrize("where", ["data", "data/outbox", "fresh-but-empty"])
def test_demo_refuses_a_folder_it_did_not_create(
    installation: dict[Path, bytes], tmp_path: Path, where: str
) -> None:
    folder = tmp_path / where
    folder.mkdir(exist_ok=True)
    result = CliRunner().invoke(app, ["demo", "--dir", str(folder)])
    assert result.exit_code == 1, (result.output, result.exception)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and str(folder) in err[0] and DEMO_MARKER in err[0], result.output
    _untouched(installation)
    assert not (folder / DEMO_MARKER).exists()


def test_default_demo_folder_without_marker_is_refused(
    installation: dict[Path, bytes], tmp_path: Path
) -> None:
    (tmp_path / "data" / "demo").mkdir()
    (tmp_path / "data" / "demo" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1, result.output
    assert (tmp_path / "data" / "demo" / "notes.txt").read_text() == "mine"
    _untouched(installation)


def test_demo_runs_in_its_own_folder_and_leaves_the_installation_alone(
    installation: dict[Path, bytes], tmp_path: Path
) -> None:
    settings = Settings()  # the installation's settings: warehouse, landing, finance elsewhere
    folder = tmp_path / "data" / "demo"  # the default: <data_dir>/demo
    lines: list[str] = []
    out = run_demo(settings, lines.append, spec=GenerateSpec(**SMALL))  # type: ignore[arg-type]
    assert out["remaining_drift"] == [] and out["drift_months"]
    assert (folder / DEMO_MARKER).is_file()
    assert (folder / "warehouse.duckdb").is_file()
    assert any((folder / "landing").rglob("*.parquet"))
    _untouched(installation)
    assert len(lines) >= 8
    # What `restate demo` prints: the example's own summary, named by the example.
    months = {r["month"] for r in out["summary_rows"]}
    assert out["summary_title"] and months and months <= {str(d["month"]) for d in out["diff"]}
    # One column per currency, never a sum across currencies.
    for row in out["summary_rows"]:
        for currency in set(row) - {"month"}:
            assert row[currency] == sum(
                d["restated"] - d["as_reported"]
                for d in out["diff"]
                if d["month"] == row["month"] and d["metric"] == "net_revenue" and d["model"] == "fct_revenue_daily"
                and d["dimensions"] == f"currency={currency}"
            )  # fmt: skip
    assert {"USD", "EUR", "GBP"} <= set(out["summary_rows"][0])

    # Its own folder is reused: cleared, the marker kept. (A second whole run needs a new
    # process: this one keeps the DuckDB file it opened, as every `restate demo` run ends.)
    from examples.billing.demo import claim_demo_folder

    (folder / "stale.txt").write_text("old run")
    claim_demo_folder(folder)
    assert sorted(p.name for p in folder.iterdir()) == [DEMO_MARKER]
    _untouched(installation)


@pytest.mark.parametrize(
    ("target", "said"),
    [("", "declares no demo (RESTATE_DEMO)"), ("examples.billing.nowhere:run_demo", "cannot be loaded")],
)
def test_a_project_without_a_loadable_demo_gets_one_line(
    installation: dict[Path, bytes], monkeypatch: pytest.MonkeyPatch, target: str, said: str
) -> None:
    monkeypatch.setenv("RESTATE_DEMO", target)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1, (result.output, result.exception)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and said in err[0], result.output
    _untouched(installation)
