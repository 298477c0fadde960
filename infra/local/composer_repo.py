"""A small Composer v2 repository on 127.0.0.1: the offline upstream of tests, demo and bench.

Packages have real zip dists with correct SHA-1 shasums; p2 files come in the minified form
packagist.org uses. The server counts requests, honours If-Modified-Since / If-None-Match,
can fail on purpose, and stops and restarts on the same port.

`packagist_repo()` is shaped like repo.packagist.org: p2 files gzip-encoded to clients that
accept it, security advisories (in the p2 files, `metadata: true`, and from an API that
takes Composer's POST and the GET form), and a changes feed (`/metadata/changes.json?since=`,
timestamps in 1/10000 s, `update` / `delete` actions, `resync` for a `since` too old).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from infra.local.ports import free_port


def make_zip(name: str, version: str, requires: dict[str, str]) -> bytes:
    """A real package archive: composer.json and one PHP class, under a top directory."""
    composer_json = {"name": name, "version": version, "require": requires}
    top = name.replace("/", "-") + "-" + version
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top}/composer.json", json.dumps(composer_json, indent=2))
        archive.writestr(f"{top}/src/Version.php", f"<?php // {name} {version}\n")
    return buffer.getvalue()


@dataclass
class Release:
    name: str
    version: str
    requires: dict[str, str]
    archive: bytes
    reference: str

    @property
    def shasum(self) -> str:
        return hashlib.sha1(self.archive).hexdigest()


def minify(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Composer's MetadataMinifier::minify: each version lists what changed from the last."""
    out: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for version in versions:
        if previous is None:
            out.append(version)
        else:
            diff = {k: v for k, v in version.items() if previous.get(k) != v}
            diff.update({k: "__unset" for k in previous if k not in version})
            out.append(diff)
        previous = version
    return out


@dataclass
class ComposerRepo:
    port: int = field(default_factory=free_port)
    releases: dict[str, list[Release]] = field(default_factory=dict)
    available_packages: list[str] | None = None
    requests: Counter[str] = field(default_factory=Counter)
    conditional: list[tuple[str, str | None]] = field(default_factory=list)  # (path, IMS)
    fail_with: int | None = None  # answer every request with this status
    gzip: bool = False  # p2 files gzip-encoded to clients that accept it
    advisories_api: bool = False  # advertise and serve /api/security-advisories/
    advisories_in_metadata: bool = False  # p2 files carry `security-advisories` (metadata)
    changes_feed: bool = False  # advertise and serve /metadata/changes.json
    feed_horizon: float = 3600.0  # a `since` older than this gets a resync
    advisories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changes: list[tuple[int, str, str]] = field(default_factory=list)  # (timestamp, type, name)
    advisory_queries: list[list[str]] = field(default_factory=list)  # names per API request
    keep_alive: bool = False  # HTTP/1.1 keep-alive (faster for many requests)
    _modified: dict[str, float] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, version: str, requires: dict[str, str] | None = None) -> Release:
        requires = requires or {}
        archive = make_zip(name, version, requires)
        reference = hashlib.sha1(f"{name}@{version}".encode()).hexdigest()
        release = Release(name, version, requires, archive, reference)
        with self._lock:
            self.releases.setdefault(name, []).append(release)
            self._touch(name)
            self.changes.append((feed_timestamp(), "update", name))
        return release

    def remove(self, name: str) -> None:
        """The package is gone (a `delete` action in the feed)."""
        with self._lock:
            self.releases.pop(name, None)
            self._modified.pop(name, None)
            self.changes.append((feed_timestamp(), "delete", name))

    def add_advisory(self, name: str, affected: str, title: str = "") -> dict[str, Any]:
        """A full advisory, in packagist's API shape."""
        number = sum(len(v) for v in self.advisories.values()) + 1
        advisory = {
            "advisoryId": f"PKSA-test-{number:04d}",
            "packageName": name,
            "remoteId": f"test-{number}",
            "title": title or f"Test advisory {number} for {name}",
            "link": f"https://example.invalid/advisories/{number}",
            "cve": f"CVE-2099-{number:04d}",
            "affectedVersions": affected,
            "source": "test",
            "reportedAt": "2024-01-02 03:04:05",
            "composerRepository": "https://packagist.org",
            "severity": "high",
            "sources": [{"name": "test", "remoteId": f"test-{number}"}],
        }
        with self._lock:
            self.advisories.setdefault(name, []).append(advisory)
            if name in self._modified:
                self._touch(name)
        return advisory

    def _touch(self, name: str) -> None:
        """The package's p2 file changed (under the lock). Whole seconds, strictly
        increasing: If-Modified-Since must see every change."""
        last = self._modified.get(name, 0.0)
        self._modified[name] = max(float(int(time.time())), last + 1)

    def release(self, name: str, version: str) -> Release:
        return next(r for r in self.releases[name] if r.version == version)

    def p2_document(self, name: str) -> dict[str, Any]:
        versions = [
            {
                "name": name,
                "version": r.version,
                "version_normalized": r.version + ".0",
                "require": r.requires or {"php": ">=7.4"},
                "type": "library",
                "autoload": {"psr-4": {"Acme\\": "src/"}},
                "dist": {
                    "type": "zip",
                    "url": f"{self.url}/dists/{name}/{r.version}.zip",
                    "reference": r.reference,
                    "shasum": r.shasum,
                },
            }
            for r in reversed(self.releases[name])  # newest first, as packagist does
        ]
        document: dict[str, Any] = {"packages": {name: minify(versions)}}
        document["minified"] = "composer/2.0"
        if self.advisories_in_metadata:
            document["security-advisories"] = [
                {"advisoryId": a["advisoryId"], "affectedVersions": a["affectedVersions"]}
                for a in self.advisories.get(name, [])
            ]
        return document

    def root_document(self) -> dict[str, Any]:
        root: dict[str, Any] = {"packages": [], "metadata-url": "/p2/%package%.json"}
        if self.available_packages is not None:
            root["available-packages"] = self.available_packages
        if self.advisories_api or self.advisories_in_metadata:
            advisories: dict[str, Any] = {"metadata": self.advisories_in_metadata}
            if self.advisories_api:
                advisories["api-url"] = f"{self.url}/api/security-advisories/"
            root["security-advisories"] = advisories
        if self.changes_feed:
            root["metadata-changes-url"] = f"{self.url}/metadata/changes.json"
        return root

    def feed(self, since: int | None) -> tuple[int, dict[str, Any]]:
        """Packagist's answer to /metadata/changes.json?since=`since`."""
        now = feed_timestamp()
        if since is None:
            message = "Invalid or missing since query parameter"
            return 400, {"error": message, "timestamp": now}
        if since < now - int(self.feed_horizon * 10000):
            resync = {"type": "resync", "package": "*", "time": now // 10000}
            return 200, {"actions": [resync], "timestamp": now}
        actions = [
            {"type": kind, "package": name, "time": stamp // 10000}
            for stamp, kind, name in self.changes
            if stamp >= since
        ]
        return 200, {"actions": actions, "timestamp": now}

    def advisories_for(self, names: list[str]) -> dict[str, Any]:
        with self._lock:
            self.advisory_queries.append(names)
        return {"advisories": {n: self.advisories.get(n, []) for n in names if n}}

    # -- the server ----------------------------------------------------------------------

    def start(self) -> ComposerRepo:
        repo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if repo.keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                repo._serve(self)

            def do_POST(self) -> None:
                repo._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path, _, query = handler.path.partition("?")
        with self._lock:
            self.requests[path] += 1
            since = handler.headers.get("If-Modified-Since")
            if since or handler.headers.get("If-None-Match"):
                self.conditional.append((path, since))
        if self.fail_with is not None:
            return self._send(handler, self.fail_with, b"failing on purpose")
        if path == "/packages.json":
            return self._send(handler, 200, json.dumps(self.root_document()).encode())
        if path == "/metadata/changes.json" and self.changes_feed:
            since = parse_qs(query).get("since", [""])[0]
            status, answer = self.feed(int(since) if since.isdigit() else None)
            return self._send(handler, status, json.dumps(answer).encode())
        if path == "/api/security-advisories/" and self.advisories_api:
            form = parse_qs(query)
            if handler.command == "POST":
                length = int(handler.headers.get("Content-Length") or 0)
                form = parse_qs(handler.rfile.read(length).decode())
            names = form.get("packages[]", []) + form.get("packages", [])
            body = json.dumps(self.advisories_for(names)).encode()
            return self._send(handler, 200, body)
        if path.startswith("/p2/") and path.endswith(".json"):
            name = path[len("/p2/") : -len(".json")]
            if name.endswith("~dev") or name not in self.releases:
                return self._send(handler, 404, b"{}")
            modified = self._modified[name]
            etag = f'"{name}-{modified:.0f}"'
            if _not_modified(handler, etag, modified):
                return self._send(handler, 304, b"", etag=etag, modified=modified)
            body = json.dumps(self.p2_document(name), separators=(",", ":")).encode()
            accepts = "gzip" in (handler.headers.get("Accept-Encoding") or "")
            if self.gzip and accepts:
                body, encoding = gzip.compress(body), "gzip"
            else:
                encoding = None
            return self._send(handler, 200, body, etag=etag, modified=modified, encoding=encoding)
        if path.startswith("/dists/") and path.endswith(".zip"):
            name, _, file = path[len("/dists/") :].rpartition("/")
            for release in self.releases.get(name, []):
                if file == f"{release.version}.zip":
                    return self._send(handler, 200, release.archive, "application/zip")
        return self._send(handler, 404, b"not found")

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        etag: str | None = None,
        modified: float | None = None,
        encoding: str | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if encoding:
            handler.send_header("Content-Encoding", encoding)
            handler.send_header("Vary", "Accept-Encoding")
        if etag:
            handler.send_header("ETag", etag)
        if modified is not None:
            handler.send_header("Last-Modified", formatdate(modified, usegmt=True))
        if status != 304:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if status != 304:
            handler.wfile.write(body)


def _not_modified(handler: BaseHTTPRequestHandler, etag: str, modified: float) -> bool:
    if_none_match = handler.headers.get("If-None-Match")
    if if_none_match is not None:
        return etag in [tag.strip() for tag in if_none_match.split(",")]
    since = handler.headers.get("If-Modified-Since")
    if since is None:
        return False
    return modified <= parsedate_to_datetime(since).timestamp()


def feed_timestamp() -> int:
    """Packagist's feed clock: 1/10000 s since the epoch."""
    return int(time.time() * 10000)


def packagist_repo() -> ComposerRepo:
    """The standard packages, served the way repo.packagist.org serves them, with one
    advisory against acme/log 1.1.0."""
    repo = standard_repo()
    repo.gzip = repo.advisories_api = repo.advisories_in_metadata = repo.changes_feed = True
    repo.add_advisory("acme/log", ">=1.1.0,<1.1.1", "Log injection in acme/log")
    return repo


def standard_repo() -> ComposerRepo:
    """Three packages with a dependency chain, two versions for some."""
    repo = ComposerRepo()
    repo.add("acme/log", "1.0.0")
    repo.add("acme/log", "1.1.0")
    repo.add("acme/util", "1.0.0", {"acme/log": "^1.0"})
    repo.add("acme/app-lib", "1.0.0", {"acme/util": "^1.0"})
    repo.add("acme/app-lib", "1.2.0", {"acme/util": "^1.0"})
    return repo
