"""One lineage walk for the plan's affected dashboards and the notices' recipients."""

from __future__ import annotations

import pytest

from restate.contract.exposures import LineageError, downstream_exposures
from restate.plan import plans as planning

MANIFEST = {
    "nodes": {
        "model.p.fct": {"name": "fct"},
        "model.p.rollup": {"name": "rollup"},  # downstream of fct, not restated itself
        "test.p.not_null_fct": {"name": "not_null_fct"},
        "model.p.other": {"name": "other"},
    },
    "child_map": {
        "model.p.fct": ["model.p.rollup", "test.p.not_null_fct", "exposure.p.direct"],
        "model.p.rollup": ["exposure.p.through_rollup"],
        "test.p.not_null_fct": ["exposure.p.through_a_test"],
        "model.p.other": ["exposure.p.unrelated"],
    },
    "exposures": {
        "exposure.p.direct": {
            "name": "direct",
            "label": "Revenue",
            "owner": {"name": "Fin", "email": "fin@x.test"},
            "config": {"meta": {"slack_channel": "#fin"}},
            "depends_on": {"nodes": ["model.p.fct"]},
        },
        "exposure.p.through_rollup": {"name": "through_rollup", "depends_on": {"nodes": ["model.p.rollup"]}},
        # A tests-only path is not a data path: never reached.
        "exposure.p.through_a_test": {"name": "through_a_test", "depends_on": {"nodes": []}},
        # Older manifests: only depends_on names the model.
        "exposure.p.legacy": {"name": "legacy", "depends_on": {"nodes": ["model.p.fct"]}},
        "exposure.p.unrelated": {"name": "unrelated", "depends_on": {"nodes": ["model.p.other"]}},
    },
}


def test_the_walk_reaches_dashboards_through_downstream_models_only() -> None:
    found = downstream_exposures(MANIFEST, ["fct"])
    assert [e.name for e in found] == ["direct", "legacy", "through_rollup"]
    direct = found[0]
    assert (direct.label, direct.owner_email, direct.slack_channel, direct.unique_id) == (
        "Revenue",
        "fin@x.test",
        "#fin",
        "exposure.p.direct",
    )
    assert downstream_exposures(MANIFEST, ["model.p.fct"]) == found
    with pytest.raises(LineageError, match="nosuch"):
        downstream_exposures(MANIFEST, ["nosuch"])


def test_plan_and_notices_use_the_same_walk() -> None:
    from notifications import routing

    assert planning.downstream_exposures is downstream_exposures
    assert routing.downstream_exposures is downstream_exposures
