"""Who may do what: the one check every endpoint passes before doing anything.

Tokens come as HTTP Basic (any username, the token as password: what Composer's
`http-basic` in auth.json and `composer push` send) or as `Authorization: Bearer`. No
token, hash or header value is ever logged or echoed; a refusal names only what is missing.
"""

from __future__ import annotations

import base64
import binascii

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime import metrics
from runtime.errors import StorageError
from runtime.tokens import TokenRecord, TokenStore

REALM = "satchel"


def presented_token(authorization: str | None) -> str | None:
    """The token in an Authorization header, or None."""
    if not authorization:
        return None
    kind, _, value = authorization.strip().partition(" ")
    kind, value = kind.lower(), value.strip()
    if kind == "bearer":
        return value or None
    if kind == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None  # some tools send the token as the username
    return None


class Auth:
    def __init__(self, tokens: TokenStore, mode: str) -> None:
        self.tokens = tokens
        self.mode = mode

    @property
    def mirror_scope(self) -> str | None:
        """What the public mirror's endpoints need: nothing, unless SATCHEL_AUTH=all."""
        return "read" if self.mode == "all" else None

    async def check(self, request: Request, scope: str | None) -> Response | None:
        """None when the request may go on; else the 401/403 answer to send."""
        if scope is None:
            return None
        token = presented_token(request.headers.get("authorization"))
        if token is None:
            metrics.AUTH_FAILURES.labels("missing").inc()
            return _unauthorized(f"this needs a token with the {scope!r} scope")
        try:
            record = await self._verify(token)
        except StorageError as exc:  # the token table could never be read
            return JSONResponse({"error": f"cannot check tokens: {exc}"}, status_code=503)
        if record is None:
            metrics.AUTH_FAILURES.labels("unknown").inc()
            return _unauthorized("unknown or revoked token")
        if not record.allows(scope):
            metrics.AUTH_FAILURES.labels("scope").inc()
            message = f"token {record.name!r} has the {record.scope!r} scope; this needs {scope!r}"
            return JSONResponse({"error": message}, status_code=403)
        request.scope["satchel.token"] = record.name  # a name, not a secret: for the log
        return None

    async def allowed(self, request: Request, scope: str) -> bool:
        """Whether the request carries a token with `scope` (no answer is made)."""
        token = presented_token(request.headers.get("authorization"))
        try:
            record = await self._verify(token) if token is not None else None
        except StorageError:
            return False
        return record is not None and record.allows(scope)

    async def _verify(self, token: str) -> TokenRecord | None:
        if self.tokens.fresh():  # the hot path: a dict lookup on the event loop
            return self.tokens.lookup(token)
        return await to_thread.run_sync(self.tokens.verify, token)


def _unauthorized(message: str) -> Response:
    return JSONResponse(
        {"error": message},
        status_code=401,
        headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
    )
