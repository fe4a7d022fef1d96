"""Entity ids (accounts, customers, stores) a user names: checked before they reach SQL."""

from __future__ import annotations

import re
from collections.abc import Iterable


class EntityIdError(ValueError):
    """An entity id does not match the declared pattern; the message names it."""


def check_entity_ids(ids: Iterable[str], pattern: str) -> list[str]:
    """The ids, unchanged, when every one matches the pattern as a whole; else raise."""
    compiled = re.compile(pattern)
    out = []
    for value in ids:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise EntityIdError(
                f"{value!r} is not a valid entity id (allowed: {pattern}; "
                "set RESTATE_ENTITY_ID_PATTERN if your ids differ)"
            )
        out.append(value)
    return out
