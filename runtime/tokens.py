"""API tokens for the private repository, stored in the `packages` storage as hashes only.

    tokens/{name}.json   {"name", "scope", "sha256", "created"}   (never the token itself)

A token is `sat_` + 43 URL-safe characters (256 random bits), shown once at creation. Its
SHA-256 is what is stored and compared: with that much entropy a slow hash adds nothing.
Every process keeps the table in memory and re-lists it every `ttl` seconds (one LIST; a
record is fetched again only when its ETag changed), so a new token works, and a revoked
one stops working, on every replica within `ttl` seconds, with no restart. An unknown
token costs no bucket request: spraying random tokens cannot amplify into bucket traffic.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runtime.errors import AlreadyExists, NotFound, StorageError
from runtime.storage import Storage

SCOPES = ("read", "publish", "admin")  # each includes the ones before it
PREFIX = "tokens"
TOKEN_PREFIX = "sat_"
STALE_RETRY = 2.0  # seconds between bucket retries while the bucket fails
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")


class TokenError(ValueError):
    """A token operation was refused; the message says why."""


@dataclass(frozen=True)
class TokenRecord:
    name: str
    scope: str
    sha256: str = field(repr=False)  # never in a log line or traceback
    created: str = ""

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def public(self) -> dict[str, str]:
        """What `token list` shows: never the hash."""
        return {"name": self.name, "scope": self.scope, "created": self.created}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(
        self,
        storage: Storage,
        ttl: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.ttl = ttl
        self._monotonic = monotonic
        self._by_digest: dict[str, TokenRecord] = {}
        self._etags: dict[str, tuple[str, TokenRecord]] = {}  # key -> (etag, record)
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def create(self, name: str, scope: str) -> str:
        """A new token, returned once. Raises TokenError for a bad or taken name."""
        if not _NAME.match(name):
            raise TokenError(
                f"token name {name!r}: use lowercase letters, digits, '.', '_' or '-' (max 63)"
            )
        if scope not in SCOPES:
            raise TokenError(f"scope {scope!r}: use one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = {
            "name": name,
            "scope": scope,
            "sha256": digest(token),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            self.storage.create(_key(name), json.dumps(record).encode())
        except AlreadyExists:
            # A create the client retried may have succeeded the first time: ours, then.
            try:
                stored = json.loads(self.storage.read(_key(name)))
            except NotFound:
                stored = {}
            if stored.get("sha256") != record["sha256"]:
                raise TokenError(f"a token named {name!r} exists; revoke it first") from None
        return token

    def revoke(self, name: str) -> bool:
        """Delete a token's record. False when there is none."""
        if not _NAME.match(name) or not self.storage.exists(_key(name)):
            return False
        self.storage.delete(_key(name))
        return True

    def list(self) -> list[TokenRecord]:
        self._reload()
        return sorted(self._by_digest.values(), key=lambda r: r.name)

    def verify(self, token: str) -> TokenRecord | None:
        """The token's record, or None for an unknown (or revoked) token. Re-lists the
        tokens first when the table is older than `ttl` (bucket I/O: not on an event loop)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with self._lock:
            if not self.fresh():
                self._reload_locked()
        return self.lookup(token)

    def fresh(self) -> bool:
        """Whether the table in memory is younger than `ttl` (then `lookup` is enough)."""
        loaded = self._loaded_at
        return loaded is not None and self._monotonic() - loaded < self.ttl

    def lookup(self, token: str) -> TokenRecord | None:
        """The token's record in the table in memory, without any I/O."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        return self._by_digest.get(digest(token))

    def _reload(self) -> None:
        with self._lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        try:
            self._fetch_table()
        except StorageError:
            if self._loaded_at is None:
                raise  # never loaded: no token can be checked
            # Stale-if-error: the table read last keeps answering; retry in a moment (a
            # revocation made meanwhile takes effect once the bucket answers again).
            self._loaded_at = self._monotonic() - self.ttl + min(self.ttl, STALE_RETRY)

    def _fetch_table(self) -> None:
        fresh: dict[str, tuple[str, TokenRecord]] = {}
        for info in self.storage.list(PREFIX):
            known = self._etags.get(info.key)
            if known is not None and known[0] == info.etag:
                fresh[info.key] = known
                continue
            try:
                document = json.loads(self.storage.read(info.key))
            except NotFound:
                continue  # revoked while we listed
            fresh[info.key] = (info.etag, TokenRecord(**document))
        self._etags = fresh
        self._by_digest = {record.sha256: record for _, record in fresh.values()}
        self._loaded_at = self._monotonic()


def _key(name: str) -> str:
    return f"{PREFIX}/{name}.json"
