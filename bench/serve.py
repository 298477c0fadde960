"""`satchel serve` under load: warm `/p2/...` metadata with wrk, beside nginx serving the same
bytes from disk, in the same run; bucket requests during the warm runs, counted at a relay."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import Bench, median
from bench.relay import CountingRelay
from bench.report import Row
from infra.local.composer_repo import standard_repo
from infra.local.ports import free_port

WRK_SECONDS = 5
ROUNDS = 3
WORKERS = 2
PRIVATE_TTL = 10.0  # SATCHEL_PRIVATE_TTL's default
GZIP = {"Accept-Encoding": "gzip"}
PACKAGE = "acme/app-lib"  # a package of the standard repository, with dependencies
SPEED_TARGET = 0.5  # issue 13: warm /p2 req/s vs nginx, both modes
P99_TARGET = 1.5  # and p99 latency at most this much nginx's


def figures(bench: Bench) -> tuple[list[Row], dict[str, Any]]:
    repo = standard_repo().start()
    assert bench.target.seaweed is not None
    relay = CountingRelay(upstream_port=bench.target.seaweed.ports["s3"]).start()
    try:
        args = json.loads(bench.env["STORAGE_AWS_ARGS"])
        env = {
            **bench.env,
            "STORAGE_AWS_ARGS": json.dumps({**args, "endpoint": relay.url}),
            "SATCHEL_UPSTREAMS": f"bench={repo.url}",
        }
        results: dict[str, dict[str, Any]] = {}
        www = bench.scratch / "www"
        with _nginx(www) as nginx_url:
            for mode in ("cached", "stateless"):
                caches = bench.scratch / f"caches-{mode}"
                mode_env = {
                    **env,
                    "MIRROR_METADATA_CACHE_DIR": str(caches / "meta") if mode == "cached" else "",
                    "MIRROR_DIST_CACHE_DIR": str(caches / "dist") if mode == "cached" else "",
                }
                with _serve(mode_env, bench.scratch / f"logs-{mode}") as app_url:
                    path = f"/p2/{PACKAGE}.json"
                    body, modified = b"", ""
                    for _ in range(3):  # mirror it, then fill every worker's caches
                        with urllib.request.urlopen(app_url + path, timeout=30) as response:
                            body, modified = response.read(), response.headers["Last-Modified"]
                    target = www / path.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(body)
                    conditional = {"If-Modified-Since": modified}  # as Composer revalidates
                    assert _status(app_url + path, conditional) == 304, "no 304 to measure"
                    results[mode] = _compare(app_url + path, nginx_url + path, relay, conditional)
                    results[mode]["bytes"] = len(body)
                    results[mode]["gzip_bytes"] = len(_get(app_url + path, GZIP))
    finally:
        relay.stop()
        repo.stop()
    return _rows(results), {"serve": results}


def _compare(
    app: str, nginx: str, relay: CountingRelay, conditional: dict[str, str]
) -> dict[str, Any]:
    """wrk against the app and nginx in turns; requests the app sent to the bucket meanwhile."""
    runs: dict[str, list[dict[str, float]]] = {"app": [], "nginx": [], "gzip": [], "304": []}
    bucket_requests = 0
    app_seconds = 0.0
    for _ in range(ROUNDS):
        before, _bytes = relay.snapshot()
        began = time.monotonic()
        runs["app"].append(_wrk(app))
        runs["gzip"].append(_wrk(app, GZIP))
        runs["304"].append(_wrk(app, conditional))
        app_seconds += time.monotonic() - began
        bucket_requests += relay.snapshot()[0] - before
        runs["nginx"].append(_wrk(nginx))
    return {
        "app_rps": median([r["rps"] for r in runs["app"]]),
        "app_gzip_rps": median([r["rps"] for r in runs["gzip"]]),
        "app_304_rps": median([r["rps"] for r in runs["304"]]),
        "nginx_rps": median([r["rps"] for r in runs["nginx"]]),
        "app_p99_ms": median([r["p99_ms"] for r in runs["app"]]),
        "nginx_p99_ms": median([r["p99_ms"] for r in runs["nginx"]]),
        "app_requests": sum(r["requests"] for r in runs["app"] + runs["gzip"] + runs["304"]),
        "bucket_requests": bucket_requests,
        # Warm answers need no bucket request; each worker revalidates the private index
        # once per SATCHEL_PRIVATE_TTL (one conditional GET), a round may straddle two.
        "bucket_allowed": WORKERS * (math.ceil(app_seconds / PRIVATE_TTL) + ROUNDS),
    }


def _get(url: str, headers: dict[str, str]) -> bytes:
    """The body as sent (urllib does not decode gzip)."""
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers.get("Content-Encoding") == "gzip", "not gzip-encoded"
        body: bytes = response.read()
        return body


def _status(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30):
            return 200
    except urllib.error.HTTPError as exc:  # urllib raises for a 304 too
        return exc.code


def _wrk(url: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    flags = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{WRK_SECONDS}s", "--latency", *flags, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=WRK_SECONDS + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    total = re.search(r"(\d+) requests in", out)
    assert total is not None, out
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses under load")
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "requests": float(total.group(1))}


def _rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for mode, figure in results.items():
        label = "/tmp caches" if mode == "cached" else "stateless"
        target = mode == "cached"
        rows.append(
            Row(
                6,
                f"warm /p2 metadata, 2 workers, {label}: req/s vs nginx from disk",
                "req/s",
                figure["app_rps"],
                figure["nginx_rps"],
                f">= {SPEED_TARGET}x",
                figure["app_rps"] / figure["nginx_rps"] >= SPEED_TARGET,
                f"{figure['bytes']} bytes, wrk -t2 -c32 -d{WRK_SECONDS}s, median of {ROUNDS}",
            )
        )
        rows.append(
            Row(
                6,
                f"warm /p2 metadata gzip-encoded, 2 workers, {label}: req/s vs plain",
                "req/s",
                figure["app_gzip_rps"],
                figure["app_rps"],
                ">= 0.8x" if target else "",
                figure["app_gzip_rps"] / figure["app_rps"] >= 0.8 if target else None,
                f"Accept-Encoding: gzip, {figure['gzip_bytes']} of {figure['bytes']} bytes"
                " (compressed once per rendering)",
            )
        )
        rows.append(
            Row(
                6,
                f"warm /p2 metadata revalidated (304), 2 workers, {label}: req/s vs plain",
                "req/s",
                figure["app_304_rps"],
                figure["app_rps"],
                "",
                None,
                "If-Modified-Since: the document's Last-Modified, as Composer sends",
            )
        )
        rows.append(
            Row(
                6,
                f"warm /p2 metadata, {label}: p99 latency vs nginx",
                "ms",
                figure["app_p99_ms"],
                figure["nginx_p99_ms"],
                f"<= {P99_TARGET}x",
                figure["app_p99_ms"] <= P99_TARGET * figure["nginx_p99_ms"],
            )
        )
        per_request = figure["bucket_requests"] / max(figure["app_requests"], 1)
        rows.append(
            Row(
                6,
                f"bucket requests during the warm runs, {label}",
                "requests",
                figure["bucket_requests"],
                None,
                f"<= {figure['bucket_allowed']}" if target else "",
                figure["bucket_requests"] <= figure["bucket_allowed"] if target else None,
                f"{figure['app_requests']:.0f} app responses, {per_request:.2f} per response",
            )
        )
    return rows


@contextmanager
def _serve(env: dict[str, str], logs: Path) -> Iterator[str]:
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORAGE_", "SATCHEL_", "MIRROR_", "AWS_"))
    }
    satchel = str(Path(sys.executable).with_name("satchel"))
    with (logs / "access.log").open("wb") as out, (logs / "serve.err").open("wb") as err:
        process = subprocess.Popen(
            [satchel, "serve", "--port", str(port), "--workers", str(WORKERS)],
            env={**base, **env},
            stdout=out,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/healthz", process)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def _nginx(root: Path) -> Iterator[str]:
    """nginx serving `root`, configured for the same job: small files, keep-alive, 2 workers."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix = root.parent / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        textwrap.dedent(f"""
        worker_processes 2;
        user root;  # the bench's files live in a private temp dir
        pid {prefix}/nginx.pid;
        error_log {prefix}/logs/error.log warn;
        events {{ worker_connections 1024; }}
        http {{
            access_log off;
            sendfile on;
            tcp_nodelay on;
            keepalive_requests 100000;
            client_body_temp_path {prefix}/tmp;
            proxy_temp_path {prefix}/tmp;
            fastcgi_temp_path {prefix}/tmp;
            uwsgi_temp_path {prefix}/tmp;
            scgi_temp_path {prefix}/tmp;
            server {{
                listen 127.0.0.1:{port};
                root {root};
                default_type application/json;
            }}
        }}
    """)
    )
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url + "/", process, ok_statuses=(200, 403, 404))
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _wait_for(
    url: str, process: subprocess.Popen[bytes], ok_statuses: tuple[int, ...] = (200,)
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code in ok_statuses:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within 30 s")
