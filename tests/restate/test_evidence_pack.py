"""`restate evidence ID` and `restate audit verify-pack`: the pack of a real restatement
(dbt, Soda, approval, promotion) verifies offline, and one changed byte, an added or a
removed file, or a re-hashed manifest over an edited audit entry is caught."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from notifications.evidence import export_pack
from restate.engines import connect
from restate.evidence import verify_pack
from restate.evidence.pack import MANIFEST, MANIFEST_MAC, PackError, manifest_text
from restate.state import changelog
from tests.evidence_case import ACCOUNTS, RestatedCase, restated_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> RestatedCase:
    return restated_case(tmp_path_factory.mktemp("evidence") / "wh")


@pytest.fixture(scope="module")
def pack(case: RestatedCase) -> dict:
    return export_pack(case.settings, case.restatement_id)


def _key(case: RestatedCase) -> bytes:
    with connect(case.settings):
        key = changelog.audit_key(case.settings, case.settings.meta_schema)
    assert key is not None
    return key


def _links(page: str) -> list[str]:
    """Every src/href/action attribute of the page, as a browser's parser reads them."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v or "" for k, v in attrs if k in ("src", "href", "action", "srcset"))

    Links().feed(page)
    return found


def _cli(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "RESTATE_DATA_DIR": str(env_dir)},
        timeout=300,
    )


def test_the_pack_holds_the_whole_story_and_verifies(case: RestatedCase, pack: dict) -> None:
    folder = Path(pack["folder"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(pack["files"])
    assert MANIFEST_MAC in pack["files"]
    problems, info = verify_pack(folder, _key(case))
    assert problems == [] and info["macs_checked"] and info["entries"] > 5
    page = (folder / "evidence.html").read_text()
    facts = json.loads((folder / "evidence.json").read_text())
    assert facts["request"]["requested_by"] == "ana" and facts["request"]["approved_by"] == "cfo.maria"
    # the scope, the approval, every check with its threshold, the code version
    assert f"only 2 entities: {', '.join(ACCOUNTS)}" in page
    assert "cfo.maria" in page and "checked against the ledger &lt;b&gt;bold&lt;/b&gt;" in page
    checks = [c for v in facts["validations"] for c in v["checks"]]
    assert checks and all(c["threshold"] for c in checks)
    # checks scan only what changed: production's upstream is left to the nightly run
    assert not [c for c in checks if c["dataset"].startswith("analytics.")]
    assert any(s.startswith("analytics.int_deduped_events") for s in facts["validations"][0]["skipped"])
    assert "Not rerun: analytics.int_deduped_events" in page
    for c in checks[:5]:
        assert str(c["name"]).replace("'", "&#39;").replace("<", "&lt;") in page
    assert facts["plan"]["code_version"]["model_sha256"]["fct_revenue_daily"] in page
    # the diff as recorded, row for row
    with connect(case.settings) as e:
        recorded = e.scalar(
            f"select count(*) from {case.settings.meta_schema}.restatement_diffs where restatement_id = ?",
            [case.restatement_id],
        )
        exported = e.query(
            f"select payload_json from {case.settings.meta_schema}.changelog "
            "where restatement_id = ? and event = 'evidence_exported'",
            [case.restatement_id],
        )
    assert len((folder / "diff.csv").read_text().splitlines()) == recorded + 1
    # the export itself is audited with the manifest's sum
    assert json.loads(exported[-1][0])["manifest_sha256"] == pack["manifest_sha256"]
    # the chart is embedded, and nothing points outside the file
    assert "data:image/png;base64," in page
    links = _links(page)
    assert links and all(link.startswith("data:image/png;base64,") for link in links), links
    assert "<script" not in page and "&lt;script&gt;window.__pwned" in page


@pytest.mark.parametrize("name", ["evidence.html", "diff.csv", "changelog.json", "evidence.json", MANIFEST])
def test_one_edited_byte_fails_verification(pack: dict, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(pack["folder"], copy)
    data = bytearray((copy / name).read_bytes())
    middle = len(data) // 2
    data[middle] = data[middle] ^ 0x01
    (copy / name).write_bytes(bytes(data))
    problems, _ = verify_pack(copy)
    assert problems, f"an edited {name} passed"
    if name != MANIFEST:  # an edited manifest shows as the file whose sum or name it changed
        assert {p.file for p in problems} == {name}


def test_added_and_removed_files_fail(pack: dict, tmp_path: Path) -> None:
    added = tmp_path / "added"
    shutil.copytree(pack["folder"], added)
    (added / "note.txt").write_text("explanations")
    assert [p.file for p in verify_pack(added)[0]] == ["note.txt"]
    removed = tmp_path / "removed"
    shutil.copytree(pack["folder"], removed)
    (removed / "diff.csv").unlink()
    assert "diff.csv" in [p.file for p in verify_pack(removed)[0]]


def test_a_rehashed_manifest_over_an_edited_entry_is_caught_with_the_key(
    case: RestatedCase, pack: dict, tmp_path: Path
) -> None:
    """Whoever edits an entry and recomputes SHA256SUMS beats the sums, not the MACs, and
    the manifest's sum no longer matches the one the log recorded."""
    copy = tmp_path / "pack"
    shutil.copytree(pack["folder"], copy)
    entries = json.loads((copy / "changelog.json").read_text())
    approved = next(e for e in entries if e["event"] == "approved")
    approved["actor"] = "ana"  # the requester, as if she had approved herself
    (copy / "changelog.json").write_text(json.dumps(entries, indent=2, sort_keys=True))
    files = {p.name: p.read_bytes() for p in copy.iterdir() if p.name not in (MANIFEST, MANIFEST_MAC)}
    (copy / MANIFEST).write_text(manifest_text(files))
    problems, info = verify_pack(copy)
    assert problems == []  # the sums alone cannot tell
    assert info["manifest_sha256"] != pack["manifest_sha256"]  # the log's record can
    problems, _ = verify_pack(copy, _key(case))
    assert [str(p) for p in problems] == [
        "SHA256SUMS.mac: does not match: the sums were rewritten, or the key is another",
        f"changelog.json: entry v{approved['version']}: MAC does not match (changed entry)",
    ]


def test_with_the_key_no_file_can_change_even_under_new_sums(
    case: RestatedCase, pack: dict, tmp_path: Path
) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(pack["folder"], copy)
    diff = copy / "diff.csv"
    diff.write_text(diff.read_text().replace("-", "+", 1))  # one figure's sign
    files = {p.name: p.read_bytes() for p in copy.iterdir() if p.name not in (MANIFEST, MANIFEST_MAC)}
    (copy / MANIFEST).write_text(manifest_text(files))
    assert verify_pack(copy)[0] == []
    assert [p.file for p in verify_pack(copy, _key(case))[0]] == [MANIFEST_MAC]
    assert verify_pack(pack["folder"], _key(case)) == ([], verify_pack(pack["folder"], _key(case))[1])
    assert verify_pack(pack["folder"], _key(case))[1]["manifest_mac"] is True


def test_writing_a_pack_never_deletes_what_it_did_not_write(case: RestatedCase, tmp_path: Path) -> None:
    user = tmp_path / "share"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    with pytest.raises(PackError, match="is not an evidence pack"):
        export_pack(case.settings, case.restatement_id, user, record=False)
    assert (user / "notes.txt").read_text() == "mine" and (user / "sub").is_dir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(PackError):
        export_pack(case.settings, case.restatement_id, tmp_path / "link", record=False)
    assert (target / "keep.txt").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    # an earlier pack is replaced whole
    again = tmp_path / "pack"
    export_pack(case.settings, case.restatement_id, again, record=False)
    export_pack(case.settings, case.restatement_id, again, record=False)
    assert verify_pack(again)[0] == []


def test_ambiguous_or_hostile_packs_are_refused(pack: dict, tmp_path: Path) -> None:
    folder = Path(pack["folder"])
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    # a second line for a file (sha256sum -c would fail it), and a listed name outside the pack
    twice = tmp_path / "twice"
    shutil.copytree(folder, twice)
    (twice / MANIFEST).write_text("0" * 64 + "  diff.csv\n" + files[MANIFEST].decode())
    assert any("again" in p.reason for p in verify_pack(twice)[0])
    outside = tmp_path / "outside"
    shutil.copytree(folder, outside)
    (outside / MANIFEST).write_text(files[MANIFEST].decode() + "0" * 64 + "  ../etc/passwd\n")
    assert any(p.file == "../etc/passwd" for p in verify_pack(outside)[0])
    # a zip holding one file twice, a path-escaping name, a corrupted archive
    doubled = tmp_path / "doubled.zip"
    with zipfile.ZipFile(doubled, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        with pytest.warns(UserWarning):
            z.writestr("diff.csv", b"forged")
    with pytest.raises(PackError, match="twice"):
        verify_pack(doubled)
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(escaping, "w") as z:
        z.writestr("../SHA256SUMS", files[MANIFEST])
    with pytest.raises(PackError, match="not a pack file name"):
        verify_pack(escaping)
    broken = tmp_path / "broken.zip"
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    raw = bytearray(good.read_bytes())
    raw[200] ^= 0xFF
    broken.write_bytes(bytes(raw))
    with pytest.raises(PackError):
        verify_pack(broken)
    linked = tmp_path / "linked"
    shutil.copytree(folder, linked)
    (linked / "diff.csv").unlink()
    (linked / "diff.csv").symlink_to(folder / "diff.csv")
    with pytest.raises(PackError, match="not a plain file"):
        verify_pack(linked)


def test_cli_writes_and_verifies_a_zipped_pack(case: RestatedCase, tmp_path: Path) -> None:
    from restate.dbt.distributed import release_warehouse

    release_warehouse(case.settings)  # dbt keeps the file open in this process; the CLI needs it
    out = tmp_path / "pack"
    made = _cli(
        "evidence", str(case.restatement_id), "--out", str(out), "--json", env_dir=case.settings.data_dir
    )
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["chain"].startswith("intact")
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(out.iterdir()):
            z.write(p, f"restatement-{case.restatement_id}/{p.name}")
    ok = _cli("audit", "verify-pack", str(archive), env_dir=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 files match SHA256SUMS" in ok.stdout and "no key given" in ok.stdout
    with_key = _cli(
        "audit", "verify-pack", str(out), "--key-file", str(case.settings.audit_key_path), env_dir=tmp_path
    )
    assert with_key.returncode == 0 and "nothing was changed" in with_key.stdout, with_key.stdout
    page = out / "evidence.html"
    page.write_bytes(page.read_bytes().replace(b"cfo.maria", b"cfo.mario", 1))
    bad = _cli("audit", "verify-pack", str(out), env_dir=tmp_path)
    assert bad.returncode == 1
    assert "evidence.html: SHA-256 does not match" in bad.stdout
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(archive.read_bytes()[:-40])
    refused = _cli("audit", "verify-pack", str(corrupt), env_dir=tmp_path)
    assert refused.returncode == 1 and refused.stdout.startswith("BAD") and "Traceback" not in refused.stderr
    missing = _cli("evidence", "999", env_dir=case.settings.data_dir)
    assert missing.returncode == 1 and "no restatement with id 999" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
