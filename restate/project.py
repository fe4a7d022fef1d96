"""The user's dbt project as restate sees it: its manifest's contract (restate/contract.py)."""

from __future__ import annotations

from restate.contract import ProjectContract, read_contract
from restate.dbt_runner import DbtProject
from restate.settings import Settings


def project_contract(settings: Settings, dbt: DbtProject | None = None) -> ProjectContract:
    """Every restatable model and the landing the project declares (parses the project)."""
    return read_contract((dbt or DbtProject(settings)).manifest())


def default_selector(settings: Settings) -> str | None:
    """RESTATE_DEFAULT_SELECTOR, else every restatable model with its descendants."""
    if settings.default_selector:
        return settings.default_selector
    models = sorted(project_contract(settings).models)
    return " ".join(f"{m}+" for m in models) or None
