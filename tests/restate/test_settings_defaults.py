"""A user's own dbt project never inherits a bundled example's checks, reference exports,
explainer or demo; the bundled examples keep theirs; a value that is set always wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from restate.settings import PROJECT_ROOT, Settings

EXAMPLE_KEYS = ("soda_contracts_dir", "reference_exports", "explainer", "demo")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DBT_PROJECT_DIR", "SODA_CONTRACTS_DIR", "REFERENCE_EXPORTS", "EXPLAINER", "DEMO"):
        monkeypatch.delenv(f"RESTATE_{key}", raising=False)


def test_a_users_project_gets_no_example_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTATE_DBT_PROJECT_DIR", str(tmp_path / "adco"))
    s = Settings()
    assert {k: getattr(s, k) for k in EXAMPLE_KEYS} == dict.fromkeys(EXAMPLE_KEYS)


def test_the_bundled_examples_keep_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    billing = Settings()  # the default project
    assert billing.explainer == "examples.billing.explain:explain_period"
    assert billing.soda_contracts_dir == PROJECT_ROOT / "soda_checks" / "billing"
    # The same example named by a relative path from the repository root.
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.setenv("RESTATE_DBT_PROJECT_DIR", "dbt/northstar")
    northstar = Settings()
    assert northstar.soda_contracts_dir == PROJECT_ROOT / "soda_checks" / "northstar"
    assert northstar.reference_exports == PROJECT_ROOT / "examples" / "northstar" / "reference_exports.yml"
    assert northstar.explainer == "examples.northstar.explain:explain_period" and northstar.demo is None


def test_a_set_value_wins_even_when_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTATE_EXPLAINER", "")
    monkeypatch.setenv("RESTATE_SODA_CONTRACTS_DIR", str(tmp_path))
    s = Settings()  # billing
    assert not s.explainer
    assert s.soda_contracts_dir == tmp_path
    assert s.demo == "examples.billing.demo:run_demo"


def test_an_empty_optional_path_means_none_not_the_current_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # RESTATE_REFERENCE_EXPORTS="" once became Path("."): "reference exports file . does
    # not exist" at validation time instead of "no reference exports".
    monkeypatch.setenv("RESTATE_REFERENCE_EXPORTS", "")
    monkeypatch.setenv("RESTATE_SODA_CONTRACTS_DIR", "")
    monkeypatch.setenv("RESTATE_EXPLAINER", "")
    s = Settings()  # billing, whose defaults would otherwise fill all three
    assert (s.reference_exports, s.soda_contracts_dir, s.explainer) == (None, None, None)


@pytest.mark.parametrize(
    "name",
    ["RESTATE_CLOSE_DATE", "RESTATE_REQUIRE_APPROVAL", "RESTATE_SLACK_SIGNING_SECRET", "RESTATE_STRIPE_WEBHOOK_SECRET",
     "RESTATE_AUDIT_KEY"],
)  # fmt: skip
def test_an_empty_date_or_flag_is_still_refused(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # An unset variable in a deploy template must not switch a finance control off.
    from pydantic import ValidationError

    monkeypatch.setenv(name, "")
    with pytest.raises(ValidationError):
        Settings()
