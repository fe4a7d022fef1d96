"""The Snowflake emulator (fakesnow) in server mode, with a query-tag recording shim.

Runs under the emulator's own virtualenv (.venv-fakesnow), never the project's: fakesnow
pins its own sqlglot. Usage: python fakesnow_server.py PORT STATEMENT_LOG

Shim: fakesnow 0.12 rejects `alter session set query_tag` ("not implemented"). Snowflake
uses it to attribute cost per statement, so production SQL keeps it; this wrapper answers
it itself, remembers the tag per session, and writes every other statement with the
tag in force and the session's login name to STATEMENT_LOG (one JSON object per line).
Tests read that log to prove that every statement the tool, dbt and Soda ran was tagged
with its restatement and chunk, and which login ran it.

Shim: the Python connector binds a Decimal as type FIXED with its text ("12.34"), which
Snowflake accepts; fakesnow 0.12 reads every FIXED binding with int() and answers HTTP 500
(the connector then retries for minutes). This wrapper re-labels non-integer FIXED
bindings as TEXT, which the emulator casts to the column's decimal type on insert.

Shim: Snowflake's INFORMATION_SCHEMA.COLUMNS has DATETIME_PRECISION, which Soda's
schema check selects; fakesnow 0.12's view of it lacks that column. The view's
definition gets DuckDB's own datetime_precision added before the server starts.
"""

from __future__ import annotations

import gzip
import importlib
import json
import re
import sys
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Patched before fakesnow.server is imported: importing it creates the shared instance.
info_schema = importlib.import_module("fakesnow.info_schema")

_COLUMNS_VIEW = info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW
_PRECISION_SCALE = "as NUMERIC_SCALE,"
assert _PRECISION_SCALE in _COLUMNS_VIEW, "fakesnow's columns view changed: revisit the shim"
info_schema.SQL_CREATE_GLOBAL_INFORMATION_SCHEMA_COLUMNS_VIEW = _COLUMNS_VIEW.replace(
    _PRECISION_SCALE, f"{_PRECISION_SCALE}\ncolumns.datetime_precision as DATETIME_PRECISION,", 1
)

# `fakesnow.server` the attribute is a function; the module holds the ASGI routes.
server = importlib.import_module("fakesnow.server")

SET_TAG = re.compile(r"^\s*alter\s+session\s+set\s+query_tag\s*=\s*'((?:[^']|'')*)'\s*;?\s*$", re.I | re.S)
UNSET_TAG = re.compile(r"^\s*alter\s+session\s+unset\s+query_tag\s*;?\s*$", re.I)

tags: dict[str, str | None] = {}
users: dict[str, str | None] = {}
_log_lock = threading.Lock()


def _body_json(raw: bytes, headers: Any) -> dict[str, Any]:
    if headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    data: dict[str, Any] = json.loads(raw)
    return data


def _replay(request: Request, raw: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(request.scope, receive)


def _decimal_bindings_as_text(body: dict[str, Any]) -> bool:
    """Re-label FIXED bindings whose value is not an integer as TEXT; True if any changed."""
    changed = False
    for binding in (body.get("bindings") or {}).values():
        values = binding["value"] if isinstance(binding["value"], list) else [binding["value"]]
        if binding.get("type") == "FIXED" and any(v is not None and not _is_int(v) for v in values):
            binding["type"] = "TEXT"
            changed = True
    return changed


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


async def login_request(request: Request) -> Response:
    raw = await request.body()
    data = _body_json(raw, request.headers)["data"]
    params = data.get("SESSION_PARAMETERS", {})
    response = await server.login_request(_replay(request, raw))
    token = json.loads(bytes(response.body))["data"]["token"]
    tags[token] = params.get("QUERY_TAG")
    users[token] = data.get("LOGIN_NAME")
    return response


def _without_gzip(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in (b"content-encoding", b"content-length")]


def _ok() -> JSONResponse:
    return JSONResponse(
        {
            "data": {
                "rowtype": [
                    {
                        "name": "status",
                        "type": "text",
                        "nullable": True,
                        "length": 16777216,
                        "byteLength": 16777216,
                        "precision": None,
                        "scale": None,
                    }
                ],
                "rowset": [["Statement executed successfully."]],
                "queryResultFormat": "json",
                "total": 1,
                "queryId": "tag",
                "statementTypeId": 0x4000,
            },
            "success": True,
        }
    )


async def query_request(request: Request) -> Response:
    raw = await request.body()
    body = _body_json(raw, request.headers)
    if _decimal_bindings_as_text(body):
        raw = json.dumps(body).encode()
        request = Request({**request.scope, "headers": _without_gzip(request.scope["headers"])})
    sql = body.get("sqlText", "")
    token = (request.headers.get("Authorization") or "")[17:-1]
    if match := SET_TAG.match(sql):
        tags[token] = match.group(1).replace("''", "'")
        return _ok()
    if UNSET_TAG.match(sql):
        tags[token] = None
        return _ok()
    with _log_lock, open(LOG_PATH, "a") as log:
        log.write(json.dumps({"tag": tags.get(token), "user": users.get(token), "sql": sql}) + "\n")
    return await server.query_request(_replay(request, raw))


routes = [
    Route("/session/v1/login-request", login_request, methods=["POST"]),
    Route("/queries/v1/query-request", query_request, methods=["POST"]),
    *[r for r in server.routes if r.path not in ("/session/v1/login-request", "/queries/v1/query-request")],
]

if __name__ == "__main__":
    port, LOG_PATH = int(sys.argv[1]), sys.argv[2]
    app = Starlette(routes=routes)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
