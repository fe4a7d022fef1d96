"""Partner drops from a real SFTP server (asyncssh, on 127.0.0.1) through paramiko:
complete files land once, a half-written file waits, a drifted file is quarantined with
its reason while the others land, the same content dropped again is not landed twice,
and every file seen is recorded. A server with another host key is refused."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from restate.engines import connect
from restate.settings import Settings
from sources.sftp_drops import SftpDrop, check_csv, pick_up
from tests.conftest import make_settings

asyncssh = pytest.importorskip("asyncssh")

USER, PASSWORD = "partner", "drop-secret"
COLUMNS = {"order_id": "varchar", "shipped_at": "timestamp", "carrier": "varchar", "units": "integer"}
GOOD_1 = b"order_id,shipped_at,carrier,units\nNS-0000001,2026-11-02T10:00:00,UPS,2\nNS-0000002,2026-11-02T11:30:00,DHL,1\n"
GOOD_2 = b"\xef\xbb\xbfOrder ID,Shipped At,Carrier,Units\nNS-0000003,2026-11-03T09:00:00,UPS,5\n"  # BOM, other case
DRIFTED = b"order_id,ship_ts,carrier,units,warehouse\nNS-0000004,2026-11-03T09:00:00,UPS,1,W1\n"


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[tuple[int, Path, str]]:
    root = tmp_path / "sftp"
    (root / "drop").mkdir(parents=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode().strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            server = await asyncssh.listen(
                "127.0.0.1",
                port,
                server_host_keys=[key],
                server_factory=_Server,
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root)),
            )
            servers.append(server)
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(20)
    try:
        yield port, root / "drop", public
    finally:

        async def shut() -> None:
            servers[0].close()
            await servers[0].wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _drop(port: int, host_key: str) -> SftpDrop:
    return SftpDrop(
        name="3pl-east",
        host="127.0.0.1",
        port=port,
        username=USER,
        password=PASSWORD,
        host_key=host_key,
        remote_dir="/drop",
        columns=COLUMNS,
        settle_s=0.3,
    )


def _landed(s: Settings) -> list[tuple]:
    return duckdb.sql(
        f"select order_id, shipped_at, carrier, units, source_file "
        f"from read_parquet('{s.landing}/fulfilment/*/*.parquet') order by order_id"
    ).fetchall()


def test_complete_files_land_once_and_a_drifted_one_is_quarantined(
    sftp_server: tuple[int, Path, str], tmp_path: Path
) -> None:
    port, folder, host_key = sftp_server
    s = make_settings(tmp_path / "wh")
    (folder / "east_2026-11-02.csv").write_bytes(GOOD_1)
    (folder / "east_2026-11-03.csv").write_bytes(GOOD_2)
    (folder / "east_2026-11-03b.csv").write_bytes(DRIFTED)
    (folder / "east_2026-11-04.csv.part").write_bytes(GOOD_1[:20])  # being uploaded
    growing = folder / "east_2026-11-05.csv"
    growing.write_bytes(b"order_id,shipped_at,carrier,units\n")
    stop = threading.Event()

    def keep_writing() -> None:  # a slow upload without a partial suffix: still growing
        n = 100
        with growing.open("ab") as fh:
            while not stop.is_set():
                fh.write(f"NS-{n:07d},2026-11-05T08:00:00,UPS,1\n".encode())
                fh.flush()
                os.fsync(fh.fileno())
                n += 1
                time.sleep(0.05)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        with connect(s) as engine:
            first = pick_up(s, engine, _drop(port, host_key), "fulfilment")
    finally:
        stop.set()
        writer.join()
    assert sorted(first.accepted) == ["east_2026-11-02.csv", "east_2026-11-03.csv"]
    assert set(first.incomplete) == {"east_2026-11-04.csv.part", "east_2026-11-05.csv"}
    assert first.quarantined == {
        "east_2026-11-03b.csv": "schema_drift: missing shipped_at; unexpected ship_ts, warehouse"
    }
    landed = _landed(s)
    assert [r[0] for r in landed] == ["NS-0000001", "NS-0000002", "NS-0000003"]
    assert landed[2][2:] == ("UPS", 5, "east_2026-11-03.csv")

    # The same content dropped again under another name, and the finished upload.
    (folder / "east_2026-11-02-resent.csv").write_bytes(GOOD_1)
    (folder / "east_2026-11-04.csv.part").rename(folder / "east_2026-11-04.csv")
    (folder / "east_2026-11-04.csv").write_bytes(
        GOOD_1.replace(b"NS-0000001", b"NS-0000011").replace(b"NS-0000002", b"NS-0000012")
    )
    with connect(s) as engine:
        second = pick_up(s, engine, _drop(port, host_key), "fulfilment")
        seen = engine.query_dicts(
            "select path, status, reason from restate_meta.source_files order by seen_at, path"
        )
    assert "east_2026-11-02-resent.csv" in second.duplicates and "east_2026-11-02.csv" in second.duplicates
    assert "east_2026-11-04.csv" in second.accepted and "east_2026-11-05.csv" in second.accepted
    assert second.quarantined  # still drifted, not recorded twice
    ids = [r[0] for r in _landed(s)]
    assert len(ids) == len(set(ids))  # nothing landed twice
    statuses = {(r["path"], r["status"]) for r in seen}
    assert ("/drop/east_2026-11-03b.csv", "quarantined") in statuses
    assert ("/drop/east_2026-11-02-resent.csv", "duplicate") in statuses
    assert sum(1 for r in seen if r["status"] == "quarantined") == 1
    kept = list((s.data_dir / "quarantine" / "fulfilment").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == DRIFTED


def test_a_server_with_another_host_key_is_refused(
    sftp_server: tuple[int, Path, str], tmp_path: Path
) -> None:
    import paramiko

    port, _, _ = sftp_server
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    s = make_settings(tmp_path / "wh")
    with connect(s) as engine, pytest.raises(paramiko.SSHException):
        pick_up(s, engine, _drop(port, other), "fulfilment")


def test_values_that_do_not_parse_name_line_and_column() -> None:
    table, reason = check_csv(GOOD_1 + b"NS-0000009,not a time,UPS,1\n", COLUMNS)
    assert table is None and reason == "bad_value: line 4 column shipped_at: 'not a time' is not timestamp"
    table, reason = check_csv(b"order_id,shipped_at,carrier,units\nNS-1,2026-11-02T10:00:00,UPS\n", COLUMNS)
    assert table is None and reason == "bad_row: line 2 has 3 fields, the header 4"
    table, _ = check_csv(GOOD_2, {**COLUMNS, "units": "decimal(18, 2)"})
    assert table is not None and table.column("units").to_pylist() == [Decimal("5.00")]
