"""Every prefect.yaml deployment names an importable flow, real parameters and its schedule."""

from __future__ import annotations

import inspect

import pytest
import yaml

from restate.settings import PROJECT_ROOT

SPEC = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_team_deployments_are_declared() -> None:
    assert set(DEPLOYMENTS) == {
        "incremental",
        "restatement",
        "nightly-reconciliation",
        "rollback",
        "orders",
        "payments",
        "fulfilment",
    }
    assert DEPLOYMENTS["orders"]["schedules"] == [{"interval": 900, "timezone": "UTC"}]
    assert DEPLOYMENTS["payments"]["schedules"] == [{"interval": 900, "timezone": "UTC"}]
    assert DEPLOYMENTS["fulfilment"]["schedules"] == [{"interval": 3600, "timezone": "UTC"}]
    assert all(d["work_pool"]["name"] == "restate" for d in DEPLOYMENTS.values())
    assert DEPLOYMENTS["incremental"]["schedules"] == [{"interval": 900, "timezone": "UTC"}]
    assert DEPLOYMENTS["nightly-reconciliation"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    assert "schedules" not in DEPLOYMENTS["restatement"] and "schedules" not in DEPLOYMENTS["rollback"]


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_imports_and_parameters_exist(name: str, monkeypatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(PROJECT_ROOT)
    flow = load_flow_from_entrypoint(DEPLOYMENTS[name]["entrypoint"])
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(DEPLOYMENTS[name].get("parameters", {})) <= accepted


def test_restatement_form_and_rollback_parameters() -> None:
    from prefect.flows import load_flow_from_entrypoint

    restatement = load_flow_from_entrypoint(str(PROJECT_ROOT / "flows/restatement.py") + ":restatement")
    form = restatement.parameters.model_dump()["properties"]
    assert {"selector", "start", "end", "accounts", "reason", "ticket", "requested_by"} <= set(form)
    assert {"format": "date", "type": "string"} in form["start"]["anyOf"]  # a date picker
    assert form["reason"]["description"].startswith("why")  # labels come from the docstring
    assert DEPLOYMENTS["restatement"]["parameters"]["await_approval"] is True
    rollback = load_flow_from_entrypoint(str(PROJECT_ROOT / "flows/rollback.py") + ":rollback")
    assert list(inspect.signature(rollback.fn).parameters) == ["restatement_id", "by", "reason", "cascade"]
