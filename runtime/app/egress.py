"""Which hosts the mirror's outbound fetches may reach, from the serve config.

- trusted: the hosts the operator named (each upstream's host, SATCHEL_DIST_HOSTS); they
  may resolve to private or loopback addresses. Every other host must be public.
- dist hosts of an upstream: its own host, `DEFAULT_DIST_HOSTS` (where packagist's dists
  live) and SATCHEL_DIST_HOSTS. A dist URL elsewhere, or a redirect elsewhere, is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from runtime.app.config import ServeConfig
from runtime.app.outbound import DEFAULT_DIST_HOSTS, HostRule


def _hostname(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def http_upstreams(config: ServeConfig) -> frozenset[tuple[str, int]]:
    """(host, port) of each upstream configured over plain http: credentials may go there."""
    out = set()
    for upstream in config.upstreams:
        parts = urlsplit(upstream.url)
        if parts.scheme == "http" and parts.hostname:
            out.add((parts.hostname.lower(), parts.port or 80))
    return frozenset(out)


def trusted_hosts(config: ServeConfig) -> HostRule:
    return HostRule.of([_hostname(u.url) for u in config.upstreams] + list(config.dist_hosts))


def dist_hosts(config: ServeConfig, alias: str) -> HostRule:
    upstream = config.upstream(alias)
    own = [_hostname(upstream.url)] if upstream is not None else []
    return HostRule.of(own + list(DEFAULT_DIST_HOSTS) + list(config.dist_hosts))
