"""The evidence page in a real browser: it renders the whole story with no console error
and asks the network for nothing (not even with its Content-Security-Policy removed), and
hostile text in the request shows as text instead of running."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from notifications.evidence import export_pack
from tests.browser.conftest import Watched
from tests.evidence_case import ACCOUNTS, HOSTILE_REASON, RestatedCase, restated_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    case: RestatedCase = restated_case(tmp_path_factory.mktemp("evidence-browser") / "wh")
    return export_pack(case.settings, case.restatement_id)


def _open(w: Watched, page: Path) -> None:
    w.page.goto(page.as_uri(), wait_until="load")


def test_evidence_page_renders_offline_with_no_error(
    pack: dict[str, Any], watched_page: Watched, artifacts: Path
) -> None:
    w = watched_page
    page = Path(pack["page"])
    _open(w, page)
    w.page.screenshot(path=str(artifacts / "evidence-top.png"))
    w.page.screenshot(path=str(artifacts / "evidence-full.png"), full_page=True)
    assert w.requests == [page.as_uri()], w.requests
    assert w.console_errors == [] and w.page_errors == []
    text = w.page.inner_text("body")
    # the request, shown as typed, including its markup
    assert w.page.inner_text("#reason") == HOSTILE_REASON
    assert w.page.evaluate("() => window.__pwned") is None
    assert w.page.inner_text("#scope") == f"only 2 entities: {', '.join(ACCOUNTS)}"
    assert re.search(r"intact: \d+ entries, every MAC and link", w.page.inner_text("#chain"))
    for section in ("Request", "Plan", "As reported vs restated", "Checks", "Overrides", "Approvals"):
        assert section in text
    assert "forced by controller.li" in text and "scoped fix: other accounts follow in FIN-8" in text
    # the chart decoded and drawn at a readable size
    width = w.page.evaluate("() => document.querySelector('img.chart').naturalWidth")
    assert width >= 800
    w.page.locator("img.chart").first.screenshot(path=str(artifacts / "evidence-chart.png"))
    # every number cell of the month table right-aligned for reading down a column
    aligns = w.page.evaluate(
        "() => [...document.querySelectorAll('table.months td.num')].map(td => getComputedStyle(td).textAlign)"
    )
    assert aligns and set(aligns) == {"right"}


def test_the_page_itself_references_nothing_outside(
    pack: dict[str, Any], watched_page: Watched, tmp_path: Path
) -> None:
    """With the Content-Security-Policy taken out, the page still loads nothing else: the
    absence of requests comes from the content, not only from the policy."""
    bare = tmp_path / "evidence.html"
    html = Path(pack["page"]).read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    shutil.copy(pack["page"], bare)
    bare.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html))
    _open(watched_page, bare)
    assert watched_page.requests == [bare.as_uri()]
    assert watched_page.console_errors == [] and watched_page.page_errors == []
    assert watched_page.page.evaluate("() => window.__pwned") is None
