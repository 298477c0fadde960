"""The Host header: refused unless it is the public URL's when one is configured; without
one, responses are safe across hosts (Vary, an ETag per rendering) and bad values refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.local.composer_repo import ComposerRepo
from tests.app.conftest import Mirror

MakeMirror = Callable[..., Mirror]


@pytest.fixture
def env(local_env: dict[str, str], repo: ComposerRepo, alias: str) -> dict[str, str]:
    return {
        **local_env,
        "SATCHEL_UPSTREAMS": f"{alias}={repo.url}",
        "SATCHEL_UPSTREAM_RETRIES": "0",
    }


def test_without_a_public_url_each_host_gets_its_own_rendering_and_validators(
    make_mirror: MakeMirror, env: dict[str, str]
) -> None:
    mirror = make_mirror(env)
    for path in ("/p2/acme/log.json", "/packages.json"):
        ours = mirror.get(path, Host="mirror.example")
        theirs = mirror.get(path, Host="attacker.example:8443")
        assert b"http://attacker.example:8443/" in theirs.content
        assert b"attacker" not in ours.content
        assert ours.headers["vary"] == theirs.headers["vary"] == "Host, Accept-Encoding"
        assert ours.headers["etag"] != theirs.headers["etag"]
        # A validator of one host's rendering never earns a 304 from another host.
        other = mirror.get(
            path, Host="attacker.example:8443", **{"If-None-Match": ours.headers["etag"]}
        )
        assert other.status_code == 200 and other.content == theirs.content
        same = mirror.get(path, Host="mirror.example", **{"If-None-Match": ours.headers["etag"]})
        assert same.status_code == 304 and same.headers["vary"] == "Host, Accept-Encoding"


@pytest.mark.parametrize(
    "host", ["evil.example/x", 'a"b', "a b", "user@host", "host:port", "[::1", "-x.example"]
)
def test_a_syntactically_invalid_host_is_a_400(
    make_mirror: MakeMirror, env: dict[str, str], host: str
) -> None:
    mirror = make_mirror(env)
    for path in ("/packages.json", "/p2/acme/log.json", "/dists/x/acme/log/1.0.zip"):
        refused = mirror.get(path, Host=host)
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("invalid Host header")
    assert mirror.get("/healthz", Host=host).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "[::1]:80", "mirror.example.", "a_b.local"])
def test_valid_hosts_are_served(make_mirror: MakeMirror, env: dict[str, str], host: str) -> None:
    assert make_mirror(env).get("/packages.json", Host=host).status_code == 200


def test_with_a_public_url_other_hosts_are_refused_but_probes_are_not(
    make_mirror: MakeMirror, env: dict[str, str], alias: str
) -> None:
    mirror = make_mirror(env, SATCHEL_PUBLIC_URL="https://packages.example.com/composer")
    for host in ("packages.example.com", "PACKAGES.example.com:443"):
        assert mirror.get("/packages.json", Host=host).status_code == 200
    for path in ("/packages.json", "/p2/acme/log.json", f"/dists/{alias}/acme/log/1.0.zip"):
        refused = mirror.get(path, Host="attacker.example")
        assert refused.status_code == 421
        assert "packages.example.com" in refused.json()["error"]
        assert "SATCHEL_PUBLIC_URL" in refused.json()["error"]
    # kubelet probes come with the pod IP as Host.
    assert mirror.get("/healthz", Host="10.1.2.3:8080").status_code == 200
    assert mirror.get("/readyz", Host="10.1.2.3:8080").status_code == 200


def test_a_public_url_with_a_port_wants_that_port(
    make_mirror: MakeMirror, env: dict[str, str]
) -> None:
    mirror = make_mirror(env, SATCHEL_PUBLIC_URL="http://127.0.0.1:8081")
    assert mirror.get("/packages.json", Host="127.0.0.1:8081").status_code == 200
    assert mirror.get("/packages.json", Host="127.0.0.1").status_code == 421
