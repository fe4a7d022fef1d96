"""YAML files parsed once per distinct text."""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml


def load_yaml(text: str) -> Any:
    """YAML text as Python objects, parsed once per distinct text (with libyaml where
    PyYAML has it): a validation reads each contract several times, and one parse of a
    contract in pure Python costs tens of milliseconds. Callers may change what they
    get: it is a copy."""
    return copy.deepcopy(_parsed(text))


@functools.lru_cache(maxsize=128)
def _parsed(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
