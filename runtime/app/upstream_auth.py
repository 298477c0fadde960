"""Upstream credentials in Composer's own `auth.json` format.

Read from `SATCHEL_UPSTREAM_AUTH_FILE` (a path, e.g. a mounted Kubernetes Secret) and from
`COMPOSER_AUTH` (the JSON of an auth.json), the latter winning per host as in Composer.
Supported sections, each sent only to the hosts Composer sends it to:

- `http-basic`: `{"host": {"username": ..., "password": ...}}` -> Basic auth to `host`;
- `bearer`: `{"host": "token"}` -> `Authorization: Bearer` to `host`;
- `github-oauth`: `{"github.com": "token"}` -> `Authorization: token ...` to github.com,
  api.github.com and codeload.github.com (another key, a GitHub Enterprise host, only to it);
- `gitlab-token`: `{"host": "token"}` -> `PRIVATE-TOKEN` to `host` (the `{"username",
  "token"}` form -> Basic auth, as Composer does).

A key may carry a port (`host:8443`), then it applies to that port only. Credentials are
never sent after a redirect to another host (`runtime.app.outbound`). Values never appear
in a repr, a message or a log: only hosts and kinds do.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

AUTH_FILE_VARIABLE = "SATCHEL_UPSTREAM_AUTH_FILE"
AUTH_JSON_VARIABLE = "COMPOSER_AUTH"
KINDS = ("http-basic", "bearer", "github-oauth", "gitlab-token")
REDACTED = "**********"
# Composer's own GitHub hosts: the token for github.com goes to its API and download hosts.
GITHUB_HOSTS = ("github.com", "api.github.com", "codeload.github.com")


@dataclass(frozen=True)
class Credential:
    """What one host gets: the auth.json section it came from and the headers to send."""

    kind: str
    key: str  # the auth.json key it was given under
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"Credential({self.kind!r}, {self.key!r}, {REDACTED!r})"


class UpstreamAuth:
    """Credentials by host (`host` or `host:port`, lowercase)."""

    def __init__(
        self, by_host: Mapping[str, Credential] | None = None, sources: tuple[str, ...] = ()
    ):
        self._by_host = dict(by_host or {})
        self.sources = sources  # the variables they came from, for doctor and env

    def __repr__(self) -> str:
        return f"UpstreamAuth(hosts={sorted(self._by_host)!r})"

    def __bool__(self) -> bool:
        return bool(self._by_host)

    def for_host(self, host: str, port: int | None = None) -> Credential | None:
        """The credential for a request to `host` (and `port`, when the URL names one)."""
        host = host.lower().strip("[]")
        if port is not None:
            found = self._by_host.get(f"{host}:{port}")
            if found is not None:
                return found
        return self._by_host.get(host)

    def hosts(self) -> dict[str, str]:
        """host -> kind, never the values (for `satchel doctor` and `satchel env`)."""
        return {host: cred.kind for host, cred in sorted(self._by_host.items())}


def load_upstream_auth(environ: Mapping[str, str] | None = None) -> UpstreamAuth:
    """The credentials from the file and COMPOSER_AUTH. Raises ConfigError naming the
    variable (and the auth.json section), never a value."""
    env = os.environ if environ is None else environ
    by_host: dict[str, Credential] = {}
    sources: list[str] = []
    path = env.get(AUTH_FILE_VARIABLE, "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            )
            raise ConfigError(f"{AUTH_FILE_VARIABLE}: cannot read {path}: {reason}") from None
        by_host.update(parse_auth_json(text, where=f"{AUTH_FILE_VARIABLE} ({path})"))
        sources.append(AUTH_FILE_VARIABLE)
    text = env.get(AUTH_JSON_VARIABLE, "").strip()
    if text:
        by_host.update(parse_auth_json(text, where=AUTH_JSON_VARIABLE))
        sources.append(AUTH_JSON_VARIABLE)
    return UpstreamAuth(by_host, tuple(sources))


def parse_auth_json(text: str, where: str) -> dict[str, Credential]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        # The position only: the decoder's message may quote the document.
        line = getattr(exc, "lineno", "?")
        raise ConfigError(
            f"{where}: not valid JSON (line {line}); give an auth.json document"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: give a JSON object in the shape of an auth.json")
    unknown = sorted(set(document) - set(KINDS))
    if unknown:
        raise ConfigError(
            f"{where}: unsupported section(s) {', '.join(unknown)}; supported: {', '.join(KINDS)}"
        )
    out: dict[str, Credential] = {}
    for kind in KINDS:
        section = document.get(kind, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: {kind} must be an object of host -> credential")
        for key, value in section.items():
            host = _host_key(key, f"{where}: {kind}")
            credential = Credential(kind, host, _headers(kind, value, f"{where}: {kind}.{host}"))
            for target in _targets(kind, host):
                previous = out.get(target)
                if previous is not None and previous.kind != kind:
                    raise ConfigError(
                        f"{where}: host {target} has credentials in both {previous.kind} and"
                        f" {kind}; keep one"
                    )
                out[target] = credential
    return out


def _host_key(key: Any, where: str) -> str:
    host = str(key).strip().lower()
    if not host or any(c in host for c in "/@?# \t\r\n") or "://" in host:
        raise ConfigError(f"{where}: {str(key)[:100]!r} is not a host name (host or host:port)")
    return host


def _targets(kind: str, host: str) -> tuple[str, ...]:
    if kind == "github-oauth" and host == "github.com":
        return GITHUB_HOSTS
    return (host,)


def _text(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {what} must be a non-empty string")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{where}: {what} contains a line break or NUL")
    return value


def _basic(username: str, password: str) -> tuple[tuple[str, str], ...]:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return (("Authorization", f"Basic {pair}"),)


def _headers(kind: str, value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if kind == "http-basic":
        if not isinstance(value, dict):
            raise ConfigError(f'{where}: give {{"username": ..., "password": ...}}')
        return _basic(
            _text(value.get("username"), where, "username"),
            _text(value.get("password"), where, "password"),
        )
    if kind == "bearer":
        return (("Authorization", f"Bearer {_text(value, where, 'the token')}"),)
    if kind == "github-oauth":
        return (("Authorization", f"token {_text(value, where, 'the token')}"),)
    # gitlab-token
    if isinstance(value, dict):
        return _basic(
            _text(value.get("username"), where, "username"),
            _text(value.get("token"), where, "token"),
        )
    return (("PRIVATE-TOKEN", _text(value, where, "the token")),)
