"""`satchel serve`'s own variables, validated into one model (the storage env is `Settings`).

- `SATCHEL_UPSTREAMS` (`packagist=https://repo.packagist.org`): `alias=url,alias2=url2`, the
  Composer v2 repositories mirrored, in lookup order.
- `SATCHEL_HOST` (`127.0.0.1`), `SATCHEL_PORT` (`8080`), `SATCHEL_WORKERS` (`1`): where and
  how to listen; the `--host`, `--port` and `--workers` flags win.
- `SATCHEL_PUBLIC_URL` (empty): the absolute URL clients reach the mirror at (behind a proxy,
  or under a sub-path); requests with another Host are refused (421), probes excepted.
  Empty = taken from each request's Host (then `Vary: Host`, an ETag per rendering).
- `SATCHEL_UPSTREAM_TTL` (`300`): seconds mirrored metadata is served before a conditional
  request to the upstream.
- `SATCHEL_ADVISORIES_TTL` (`3600`): seconds a package's security advisories are served
  from the bucket before the upstream's advisories API is asked again (stale if it fails).
- `SATCHEL_CHANGES_INTERVAL` (`60`): with an upstream that advertises
  `metadata-changes-url` (packagist), seconds between two reads of its changes feed; its
  documents are then refreshed when the feed names them, not every `SATCHEL_UPSTREAM_TTL`.
- `SATCHEL_NEGATIVE_TTL` (`60`): seconds a package the upstream does not have is answered
  404 without asking it again.
- `SATCHEL_UPSTREAM_TIMEOUT` (`30`): seconds to wait for an upstream answer (connect: 5 max).
- `SATCHEL_UPSTREAM_RETRIES` (`2`): retries, with backoff, after a connection error or 5xx.
- `COMPOSER_AUTH` (empty) and `SATCHEL_UPSTREAM_AUTH_FILE` (empty): upstream credentials in
  auth.json form (`runtime.app.upstream_auth`); credentials inside upstream URLs are refused.
- `SATCHEL_DIST_HOSTS` (empty): comma-separated hosts (`cdn.example.com`, `*.example.com`)
  dists may come from besides each upstream's own host and `DEFAULT_DIST_HOSTS` (GitHub,
  GitLab, Bitbucket); they may be on private addresses (`runtime.app.outbound`).
- `SATCHEL_MAX_METADATA_SIZE` (`64M`): the largest upstream metadata document read.
- `SATCHEL_MAX_DIST_SIZE` (`512M`): the largest dist mirrored.
- `SATCHEL_HOT_CACHE_SIZE` (`64M`): the in-process cache of mirrored metadata, per worker.
- `SATCHEL_MAX_CONNECTIONS` (`512`): connections each worker serves at once; more wait until
  one closes (with the 64 KiB bound on a request's head, this bounds a worker's memory).

The private repository (packages published to the bucket, behind tokens):
- `SATCHEL_AUTH` (`private`): `private` = private packages and publishing need a token, the
  mirror is open; `all` = every endpoint but `/healthz` and `/readyz` needs a `read` token.
- `SATCHEL_PRIVATE_VENDORS` (empty): comma-separated vendors (`acme,internal`) whose
  packages are never looked up upstream, published yet or not (dependency confusion).
- `SATCHEL_PRIVATE_TTL` (`10`): seconds before a new version, a new token or a revocation
  reaches every replica (each keeps what it read of them that long).
- `SATCHEL_MAX_ARCHIVE_SIZE` (`64M`): the largest archive an upload may carry (413 beyond).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtime.app.upstream_auth import UpstreamAuth, load_upstream_auth
from runtime.errors import ConfigError
from runtime.settings import ByteSize

DEFAULT_UPSTREAMS = "packagist=https://repo.packagist.org"
# Aliases name URL path segments: these would shadow the mirror's own routes.
RESERVED_ALIASES = frozenset(
    {"p2", "dists", "healthz", "readyz", "packages.json", "packages", "private", "metrics"}
)
AUTH_MODES = ("private", "all")
_VENDOR = re.compile(r"^[a-z0-9]([_.-]?[a-z0-9]+)*\Z")
_ALIAS = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_DIST_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\Z|^\[[0-9a-f:.]+\]\Z")
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")

# variable -> (field, default)
VARIABLES: dict[str, tuple[str, str]] = {
    "SATCHEL_UPSTREAMS": ("upstreams", DEFAULT_UPSTREAMS),
    "SATCHEL_HOST": ("host", "127.0.0.1"),
    "SATCHEL_PORT": ("port", "8080"),
    "SATCHEL_WORKERS": ("workers", "1"),
    "SATCHEL_PUBLIC_URL": ("public_url", ""),
    "SATCHEL_UPSTREAM_TTL": ("upstream_ttl", "300"),
    "SATCHEL_NEGATIVE_TTL": ("negative_ttl", "60"),
    "SATCHEL_ADVISORIES_TTL": ("advisories_ttl", "3600"),
    "SATCHEL_CHANGES_INTERVAL": ("changes_interval", "60"),
    "SATCHEL_UPSTREAM_TIMEOUT": ("upstream_timeout", "30"),
    "SATCHEL_UPSTREAM_RETRIES": ("upstream_retries", "2"),
    "SATCHEL_DIST_HOSTS": ("dist_hosts", ""),
    "SATCHEL_MAX_METADATA_SIZE": ("max_metadata_size", "64M"),
    "SATCHEL_MAX_DIST_SIZE": ("max_dist_size", "512M"),
    "SATCHEL_HOT_CACHE_SIZE": ("hot_cache_size", "64M"),
    "SATCHEL_MAX_CONNECTIONS": ("max_connections", "512"),
    "SATCHEL_AUTH": ("auth", "private"),
    "SATCHEL_PRIVATE_VENDORS": ("private_vendors", ""),
    "SATCHEL_PRIVATE_TTL": ("private_ttl", "10"),
    "SATCHEL_MAX_ARCHIVE_SIZE": ("max_archive_size", "64M"),
}
_VAR_OF_FIELD = {field: var for var, (field, _) in VARIABLES.items()}


class Upstream(BaseModel):
    model_config = ConfigDict(frozen=True)

    alias: str
    url: str  # no trailing slash


class ServeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    upstreams: tuple[Upstream, ...]
    host: str = Field(min_length=1)
    port: int = Field(ge=0, le=65535)  # 0: any free port (tests)
    workers: int = Field(ge=1, le=512)
    public_url: str | None
    upstream_ttl: float = Field(ge=0)
    negative_ttl: float = Field(ge=0)
    advisories_ttl: float = Field(ge=0)
    changes_interval: float = Field(ge=1)
    upstream_timeout: float = Field(gt=0)
    upstream_retries: int = Field(ge=0, le=10)
    dist_hosts: tuple[str, ...]
    max_metadata_size: ByteSize
    max_dist_size: ByteSize
    upstream_auth: UpstreamAuth = Field(default_factory=UpstreamAuth, repr=False)
    hot_cache_size: ByteSize
    max_connections: int = Field(ge=2, le=100_000)
    auth: str
    private_vendors: frozenset[str]
    private_ttl: float = Field(ge=0, le=3600)
    max_archive_size: ByteSize

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: Any) -> Any:
        if value not in AUTH_MODES:
            raise ValueError(f"use {' or '.join(AUTH_MODES)}")
        return value

    @field_validator("private_vendors", mode="before")
    @classmethod
    def _vendors(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        vendors = {v.strip().lower() for v in value.split(",") if v.strip()}
        bad = sorted(v for v in vendors if not _VENDOR.match(v))
        if bad:
            raise ValueError(f"{', '.join(bad)}: not a Composer vendor name")
        return frozenset(vendors)

    @field_validator("dist_hosts", mode="before")
    @classmethod
    def _dist_hosts(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        hosts = [h.strip().lower() for h in value.split(",") if h.strip()]
        bad = [h for h in hosts if not _DIST_HOST.match(h)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not a host name (host, or *.domain)")
        return tuple(hosts)

    @field_validator("upstreams", mode="before")
    @classmethod
    def _parse_upstreams(cls, value: Any) -> Any:
        return parse_upstreams(value) if isinstance(value, str) else value

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        return http_url(str(value))

    def upstream(self, alias: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.alias == alias), None)


def http_url(text: str) -> str:
    """An absolute http(s) URL without query or fragment, trailing slash removed."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} has a query or fragment; give the repository's base URL")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return text.strip().rstrip("/")


def parse_upstreams(text: str) -> tuple[Upstream, ...]:
    upstreams: list[Upstream] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        alias, sep, url = item.partition("=")
        alias = alias.strip()
        if not sep:
            raise ValueError(f"{item!r} is not alias=url")
        if not _ALIAS.match(alias) or alias in RESERVED_ALIASES:
            raise ValueError(
                f"alias {alias!r}: use lowercase letters, digits, '-' or '_' "
                f"(not {', '.join(sorted(RESERVED_ALIASES))})"
            )
        if "@" in urlsplit(url.strip()).netloc:
            raise ValueError(
                f"upstream {alias!r}: credentials inside the URL are refused (they would end up"
                " in logs and errors); give them in COMPOSER_AUTH (auth.json format, e.g."
                ' {"http-basic": {"host": {"username": ..., "password": ...}}}) or in a file'
                " named by SATCHEL_UPSTREAM_AUTH_FILE"
            )
        if any(u.alias == alias for u in upstreams):
            raise ValueError(f"alias {alias!r} is given twice")
        upstreams.append(Upstream(alias=alias, url=http_url(url)))
    if not upstreams:
        raise ValueError("no upstream; give alias=url[,alias=url...]")
    return tuple(upstreams)


def load_serve_config(
    environ: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> ServeConfig:
    """The config from the environment (default `os.environ`); flags win. Raises ConfigError."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {
        field: env.get(var, default) for var, (field, default) in VARIABLES.items()
    }
    flags = {"host": host, "port": port, "workers": workers}
    raw.update({name: value for name, value in flags.items() if value is not None})
    raw["upstream_auth"] = load_upstream_auth(env)
    try:
        return ServeConfig(**raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        where = f"--{field}" if flags.get(field) is not None else _VAR_OF_FIELD[field]
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error["input"]
        if isinstance(given, str):  # never echo a credential given inside a URL
            given = _USERINFO.sub("***@", given)
        raise ConfigError(f"{where}: {message}, got {given!r}") from None
