"""What a client is told when an upstream fetch fails: general terms and a request id.

The details (URLs, hosts, addresses, checksums; never a credential) go to the app log on
the line that carries the same request id, and the access-log line carries it too.
"""

from __future__ import annotations

import logging
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime.app.logs import note_request_id

log = logging.getLogger("satchel.mirror")
DEFAULT_PUBLIC = "the upstream is unavailable"


def public_reason(exc: BaseException) -> str:
    """The general terms of a failure (`public` of the error or of its cause)."""
    for candidate in (exc, exc.__cause__):
        public = getattr(candidate, "public", None)
        if isinstance(public, str):
            return public
    return DEFAULT_PUBLIC


def upstream_failure(request: Request, exc: BaseException, what: str) -> JSONResponse:
    """A 502 for `what` (e.g. "the dist") that failed with `exc`, logged under a new id."""
    request_id = secrets.token_hex(8)
    note_request_id(request.scope, request_id)
    log.warning(
        "request %s %s: %s could not be fetched: %s", request_id, request.url.path, what, exc
    )
    return JSONResponse(
        {
            "error": f"upstream unavailable: {what} could not be fetched ({public_reason(exc)});"
            f" request id {request_id}",
            "request_id": request_id,
        },
        status_code=502,
    )
