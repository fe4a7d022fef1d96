"""The e-mail hash is keyed: a customer list hashed with plain sha256 does not find
anyone, two installations with different keys store different hashes, and the key never
lands in the warehouse (the staging view's SQL included)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import duckdb
import pytest

from restate.actions import load_once
from restate.engines import connect
from restate.settings import Settings
from tests.conftest import land, make_settings, raw_glob

pytestmark = pytest.mark.slow


def _hashes(s: Settings) -> dict[str, tuple[str, str]]:
    """event_id -> (stored hash, lower(e-mail) from the raw files) for rows with an e-mail."""
    raw = duckdb.connect().execute(
        f"select distinct cast(event_id as varchar), lower(cast(customer_email as varchar)) "
        f"from read_parquet('{raw_glob(s)}', union_by_name = true) where customer_email is not null"
    )
    emails = dict(raw.fetchall())
    with connect(s) as e:
        stored = e.query(
            f"select event_id, customer_email_hash from {s.prod_schema}.int_deduped_events "
            "where customer_email_hash is not null"
        )
    return {eid: (h, emails[eid]) for eid, h in stored if eid in emails}


def _key_text(s: Settings) -> str:
    with connect(s) as e:
        views = e.query("select sql from duckdb_views() where not internal")
    return " ".join(str(v[0]) for v in views)


def test_email_hash_is_keyed_and_the_key_stays_out_of_the_warehouse(tmp_path: Path) -> None:
    a = make_settings(tmp_path / "a", pii_hash_key="key-of-installation-a")
    b = make_settings(tmp_path / "b", pii_hash_key="key-of-installation-b")
    for s in (a, b):
        land(s)
        load_once(s)
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) > 100 and ha.keys() == hb.keys()
    for eid, (stored, email) in ha.items():
        assert stored != hashlib.sha256(email.encode()).hexdigest()  # a customer list finds nothing
        assert stored != hb[eid][0]  # another key, another hash
    # Same key, same e-mail: same hash (joins on customer_email_hash still work).
    by_email: dict[str, set[str]] = {}
    for stored, email in ha.values():
        by_email.setdefault(email, set()).add(stored)
    assert all(len(v) == 1 for v in by_email.values())
    assert "key-of-installation-a" not in _key_text(a)


def test_without_a_configured_key_one_is_created_outside_the_warehouse(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "wh")
    land(s)
    load_once(s)
    key_file = s.state_dir / "pii_hash.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 32 and key not in _key_text(s)
    hashes = _hashes(s)
    assert hashes
    assert all(h != hashlib.sha256(email.encode()).hexdigest() for h, email in hashes.values())
