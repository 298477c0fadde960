"""Tokens on the real S3 target: hashes only in the bucket, one-time display, refusals, and
how long a new or revoked token takes to reach another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import runtime
from runtime.tokens import TokenError, TokenStore
from tests.cli_helpers import satchel


@pytest.fixture
def store(pod_env: dict[str, str]) -> TokenStore:
    return TokenStore(runtime.open_storages(runtime.load_settings(pod_env)).packages, ttl=0.5)


def _name(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def test_a_token_is_shown_once_and_stored_as_its_hash_only(store: TokenStore) -> None:
    name = _name("ci")
    token = store.create(name, "publish")
    assert token.startswith("sat_") and len(token) > 40
    stored = store.storage.read(f"tokens/{name}.json")
    assert token.encode() not in stored
    record = json.loads(stored)
    assert set(record) == {"name", "scope", "sha256", "created"}
    verified = store.verify(token)
    assert verified is not None and (verified.name, verified.scope) == (name, "publish")
    assert "sha256" not in verified.public()


def test_scopes_include_the_ones_below(store: TokenStore) -> None:
    token = store.create(_name("pub"), "publish")
    record = store.verify(token)
    assert record is not None
    assert (record.allows("read"), record.allows("publish"), record.allows("admin")) == (
        True,
        True,
        False,
    )


@pytest.mark.parametrize(
    ("name", "scope", "reason"),
    [
        ("CI", "read", "lowercase"),
        ("../x", "read", "lowercase"),
        ("ok", "root", "use one of read, publish, admin"),
    ],
)
def test_bad_names_and_scopes_are_refused(
    store: TokenStore, name: str, scope: str, reason: str
) -> None:
    with pytest.raises(TokenError, match=reason):
        store.create(name, scope)


def test_a_taken_name_is_refused(store: TokenStore) -> None:
    name = _name("dup")
    store.create(name, "read")
    with pytest.raises(TokenError, match="exists; revoke it first"):
        store.create(name, "admin")


def test_unknown_and_malformed_tokens_are_refused_without_a_bucket_request(
    store: TokenStore,
) -> None:
    store.verify("sat_warm")  # loads the table
    calls = 0
    real_list = store.storage.list

    def counted(prefix: str = "") -> object:
        nonlocal calls
        calls += 1
        return real_list(prefix)

    store.storage.list = counted  # type: ignore[method-assign]
    for guess in ("sat_" + "A" * 43, "not-even-prefixed", "", "sat_"):
        assert store.verify(guess) is None
    assert calls == 0


def test_a_new_and_a_revoked_token_reach_another_process_within_the_ttl(
    pod_env: dict[str, str], store: TokenStore
) -> None:
    """The other process polls once a millisecond; the delay is printed for the note."""
    name = _name("seen")
    probe = (
        "import sys, time, runtime\n"
        "from runtime.tokens import TokenStore\n"
        "store = TokenStore(runtime.open_storages(runtime.load_settings()).packages, ttl=0.5)\n"
        "store.verify('sat_warm')\n"  # the table is loaded before the token exists
        "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
        "token = sys.stdin.readline().strip()\n"
        "for want in (True, False):\n"
        "    if not want: sys.stdin.readline()\n"
        "    began = time.monotonic()\n"
        "    while (store.verify(token) is not None) != want: time.sleep(0.001)\n"
        "    sys.stdout.write(f'{time.monotonic() - began:.3f}\\n'); sys.stdout.flush()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", probe],
        env={**pod_env, "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None and other.stdout is not None
    assert other.stdout.readline().strip() == "ready"
    token = store.create(name, "read")  # after the other process loaded its table
    other.stdin.write(token + "\n")
    other.stdin.flush()
    accepted_after = float(other.stdout.readline())
    assert store.revoke(name)
    other.stdin.write("go\n")
    other.stdin.flush()
    refused_after = float(other.stdout.readline())
    other.stdin.close()
    other.stdout.close()
    assert other.wait(10) == 0
    print(f"\nnew token seen after {accepted_after:.3f}s, revocation after {refused_after:.3f}s")
    assert accepted_after <= 0.5 + 0.3 and refused_after <= 0.5 + 0.3


def test_the_cli_creates_lists_and_revokes_without_showing_secrets(
    pod_env: dict[str, str],
) -> None:
    name = _name("cli")
    created = satchel(pod_env, "token", "create", "--name", name, "--scope", "admin")
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert token.startswith("sat_")
    listed = satchel(pod_env, "token", "list", "--json")
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[name]["scope"] == "admin" and token not in listed.stdout
    assert "sha256" not in listed.stdout
    assert satchel(pod_env, "token", "revoke", name).exit_code == 0
    missing = satchel(pod_env, "token", "revoke", name)
    assert missing.exit_code == 1 and "no token named" in missing.stderr
    bad = satchel(pod_env, "token", "create", "--name", "x", "--scope", "root")
    assert bad.exit_code == 2 and "scope 'root'" in bad.stderr
