"""A project's root-cause explainer, named in config (RESTATE_EXPLAINER="package.module:function").

restate measures *that* production disagrees with a reference; *why* depends on the
project (its landing, its logic versions). A project may declare a function

    def explain_period(engine, settings, start, end) -> tuple[dict, str]

returning (evidence as JSON-able data, the same as readable text). The nightly
reconciliation attaches it to drift alerts and `restate explain` prints it. Without one,
both say that the project declares none.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import date
from typing import Any

from restate.engines.base import Engine
from restate.settings import Settings

Explainer = Callable[[Engine, Settings, date, date], tuple[dict[str, Any], str]]


class ExplainerError(ValueError):
    """The configured explainer cannot be loaded; the message names it."""


def load_explainer(settings: Settings) -> Explainer | None:
    """The configured function, or None when the project declares none."""
    target = settings.explainer
    if not target:
        return None
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ExplainerError(f"RESTATE_EXPLAINER {target!r} must be 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ExplainerError(f"RESTATE_EXPLAINER {target!r} cannot be loaded: {exc}") from exc
    if not callable(func):
        raise ExplainerError(f"RESTATE_EXPLAINER {target!r} is not a function")
    return func


def run_explainer(
    engine: Engine, settings: Settings, start: date, end: date
) -> tuple[dict[str, Any], str] | None:
    """(evidence, text) from the project's explainer for [start, end]; None without one."""
    func = load_explainer(settings)
    if func is None:
        return None
    evidence, text = func(engine, settings, start, end)
    return json.loads(json.dumps(evidence, default=str)), text
