"""Notices a finance lead reads, from a real restatement (dbt, Soda, a forced validation,
an approval, the promotion): what changed in the code said in words (the setting, the
commit by its subject, author and date), the scope and the override stated, and no hash,
no Python repr anywhere in the text, the HTML or the Slack blocks."""

from __future__ import annotations

import json
import re

import pytest

from notifications.composer import compose
from notifications.dispatch import build_context
from restate.engines import connect
from tests.evidence_case import RestatedCase, restated_case

pytestmark = pytest.mark.slow

# 7+ hex digits in a row (a commit, a MAC, a digest), or Python's spelling of values.
HASHLIKE = re.compile(r"\b[0-9a-f]{7,}\b")
REPRS = ("{'", "Decimal(", "datetime.", "None", "[]", "\\u")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> RestatedCase:
    return restated_case(tmp_path_factory.mktemp("wording") / "wh")


def _author(commit: str | None) -> str | None:
    import subprocess

    if not commit:
        return None
    done = subprocess.run(["git", "log", "-1", "--format=%an", commit], capture_output=True, text=True)
    return done.stdout.strip() or None


@pytest.mark.parametrize("event", ["approval_needed", "promoted"])
def test_notices_say_what_changed_in_plain_words(case: RestatedCase, event: str) -> None:
    s = case.settings
    with connect(s) as e:
        ctx = build_context(e, s, case.restatement_id, event)
        commit = json.loads(
            e.scalar("select plan_json from restate_meta.restatements where restatement_id = ?", [1])
        )["code_version"]["git_commit"]
    msg = compose(ctx)
    said = ctx.code_change or ""
    assert said.startswith(
        "fct_revenue_daily: the setting revenue_logic was v1, is now the project default "
        "since production was last built ("
    ), said
    if commit:  # a checkout with git history: the commit by its subject, author and date
        assert re.search(
            r"restated with the dbt project as of the commit “.+” by .+ on \d{4}-\d{2}-\d{2}", said
        )
    assert f"What changed: {said}" in msg.text
    assert "Scope: only 2 entities" in msg.text
    assert "forced by controller.li: scoped fix: other accounts follow in FIN-8" in msg.text
    # What Slack shows: a button's value (here the validation it approves) is never displayed.
    shown = [
        {**b, "elements": [{k: v for k, v in e.items() if k != "value"} for e in b["elements"]]}
        if b["type"] == "actions"
        else b
        for b in msg.blocks
    ]
    slack = json.dumps(shown, ensure_ascii=False)
    # A committer's configured name is theirs to choose (hex digits included): not checked.
    author = _author(commit)
    for where, text in (("text", msg.text), ("html", msg.html), ("slack", slack)):
        text = text.replace(author, "AUTHOR") if author else text
        assert not HASHLIKE.search(text), (where, HASHLIKE.search(text).group(0))
        for spelling in REPRS:
            assert spelling not in text, (where, spelling)
    assert msg.audit_head and msg.audit_head.startswith("changelog v")  # kept, for the email header
