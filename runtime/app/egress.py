"""Which hosts the mirror's outbound fetches may reach, from the serve config.

- trusted: the hosts the operator named (each upstream's host on its port only, the hosts of
  SATCHEL_DIST_HOSTS on any port); they may resolve to private or loopback addresses. Every
  other host and port must be public (an upstream at `http://10.0.0.5:8080` does not open
  10.0.0.5:10250).
- dist hosts of an upstream: its own host and port, `DEFAULT_DIST_HOSTS` (where packagist's
  dists live) and SATCHEL_DIST_HOSTS. A dist URL elsewhere, or a redirect elsewhere, is
  refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from runtime.app.config import ServeConfig
from runtime.app.outbound import DEFAULT_DIST_HOSTS, HostRule, endpoint


def http_upstreams(config: ServeConfig) -> frozenset[tuple[str, int]]:
    """(host, port) of each upstream configured over plain http: credentials may go there."""
    return frozenset(endpoint(u.url) for u in config.upstreams if urlsplit(u.url).scheme == "http")


def trusted_hosts(config: ServeConfig) -> HostRule:
    return HostRule.at(endpoint(u.url) for u in config.upstreams) | HostRule.of(config.dist_hosts)


# Hosts run by an upstream's own operator that its packages.json names for `api-url` and
# `metadata-changes-url`: repo.packagist.org points both at packagist.org.
COMPANION_HOSTS: dict[tuple[str, int], tuple[tuple[str, int], ...]] = {
    ("repo.packagist.org", 443): (("packagist.org", 443),),
}
OWN_HOSTS_HINT = (
    "an upstream's metadata-url, api-url and metadata-changes-url are fetched from its own"
    " host and port only (its credentials and the package names asked stay there), and its"
    " packages.json points elsewhere; not fetched"
)


def own_hosts(config: ServeConfig, alias: str) -> HostRule:
    """Where an upstream's metadata-url, api-url and metadata-changes-url may be fetched
    from (every redirect hop too): its own host and port (and `COMPANION_HOSTS`)."""
    upstream = config.upstream(alias)
    assert upstream is not None, f"unknown alias {alias}"
    own = endpoint(upstream.url)
    return HostRule(frozenset(), frozenset([own, *COMPANION_HOSTS.get(own, ())]), OWN_HOSTS_HINT)


def dist_hosts(config: ServeConfig, alias: str) -> HostRule:
    upstream = config.upstream(alias)
    own = HostRule.at([endpoint(upstream.url)] if upstream is not None else [])
    return own | HostRule.of(list(DEFAULT_DIST_HOSTS) + list(config.dist_hosts))
