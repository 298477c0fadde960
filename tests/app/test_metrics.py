"""/metrics: Prometheus text, merged over a real 2-worker `satchel serve`, with only
bounded label values (no package names, paths or tokens)."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import runtime
from infra.local.composer_repo import ComposerRepo
from runtime.tokens import TokenStore
from tests.app.conftest import Mirror
from tests.app.processes import ServeProcess

MakeMirror = Callable[..., Mirror]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_requests_outcomes_and_storage_without_unbounded_labels(
    make_mirror: MakeMirror, mirror_env: dict[str, str], pod_env: dict[str, str]
) -> None:
    token = TokenStore(runtime.open_storages(runtime.load_settings(pod_env)).packages).create(
        f"m-{secrets.token_hex(4)}", "read"
    )
    mirror = make_mirror(mirror_env)
    before = samples(mirror.get("/metrics").text, "satchel_http_requests_total")
    for _ in range(3):
        assert mirror.get("/p2/acme/util.json").status_code == 200
    assert mirror.get("/p2/acme/nothing-here.json").status_code == 404
    assert mirror.get("/p2/acme/util.json", Authorization=f"Bearer sat_{'x' * 43}").status_code
    text = mirror.get("/metrics").text
    after = samples(text, "satchel_http_requests_total")
    ok = (("route", "p2"), ("status", "2xx"))
    assert after[ok] - before.get(ok, 0) == 4  # an unknown token does not matter to the mirror
    assert after[(("route", "p2"), ("status", "4xx"))] >= 1
    outcomes = samples(text, "satchel_cache_outcomes_total")
    assert {dict(k)["outcome"] for k in outcomes} >= {"miss", "hot"}
    storage = samples(text, "satchel_storage_requests_total")
    assert any(dict(k)["storage"] == "mirror_meta" for k in storage)
    assert "satchel_http_request_duration_seconds_bucket" in text
    assert "acme/util" not in text and "nothing-here" not in text and token not in text


def test_metrics_of_two_workers_are_merged(
    pod_env: dict[str, str], repo: ComposerRepo, alias: str, tmp_path: Path
) -> None:
    # What `satchel serve` sets up by itself (in a pod nothing sets PROMETHEUS_MULTIPROC_DIR):
    # a fresh directory in the temp dir.
    metrics_dir = tmp_path / "satchel-metrics"
    env = {**pod_env, "SATCHEL_UPSTREAMS": f"{alias}={repo.url}", "TMPDIR": str(tmp_path)}
    sent = 0
    with ServeProcess(env, tmp_path / "logs", workers=2) as serve:
        # A new connection each: the kernel hands them to either worker; go on until both
        # have answered some (each worker's counts live in files of its own).
        while sent < 40 or (len(list(metrics_dir.glob("counter_*.db"))) < 2 and sent < 2000):
            urllib.request.urlopen(f"{serve.url}/p2/acme/log.json", timeout=10).close()
            sent += 1
        text = urllib.request.urlopen(f"{serve.url}/metrics", timeout=10).read().decode()
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2
    counted = samples(text, "satchel_http_requests_total")
    assert counted[(("route", "p2"), ("status", "2xx"))] == sent  # merged over both
