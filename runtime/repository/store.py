"""The private repository in the bucket: archives as published in `artifacts`, what is
derived from them in `packages`.

    artifacts  {vendor}/{package}/{version}-{sha1}.zip   the archive, unchanged
    packages   versions/{vendor}/{package}/{version}.json one immutable record per version
               p2/{vendor}/{package}.json                 the p2 document, rendered from them
               index.json                                 the names of all private packages

A version is published by creating its record create-only: the backend lets exactly one
publisher win, so a version never changes bytes, even when two replicas race. The p2
document and the index are derived data: whoever changes a record rebuilds them from the
records, then lists the records again and rebuilds until what it wrote covers what it
listed. Since every publisher rebuilds after writing its record, the last writer always
sees every record: concurrent publishes of other versions are never lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runtime.errors import AlreadyExists, NotFound
from runtime.repository.archive import Inspected, inspect_archive
from runtime.repository.names import BASE_PLACEHOLDER, normalize_version
from runtime.storage import Storage

log = logging.getLogger("satchel.repository")

INDEX_KEY = "index.json"
_REBUILD_ROUNDS = 20


class VersionConflict(Exception):
    """The version exists with other bytes: versions are immutable."""


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    sha1: str
    created: bool  # False: the same bytes were published before (idempotent)


def record_key(name: str, version: str) -> str:
    """One record per version as Composer tells versions apart: `v1.0` is `1.0.0`."""
    return f"versions/{name}/{normalize_version(version)}.json"


def p2_key(name: str) -> str:
    return f"p2/{name}.json"


def dist_file(version: str, sha1: str) -> str:
    return f"{version}-{sha1}.zip"


def archive_key(name: str, file: str) -> str:
    return f"{name}/{file}"


class Repository:
    def __init__(
        self,
        packages: Storage,
        artifacts: Storage,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.packages = packages
        self.artifacts = artifacts
        self._clock = clock

    # -- publishing ------------------------------------------------------------------

    def publish(
        self,
        data: bytes,
        *,
        name: str | None = None,
        version: str | None = None,
        source: Mapping[str, str] | None = None,
    ) -> Published:
        """Store an archive as a new version. Raises InvalidArchive (nothing stored),
        VersionConflict (the version exists with other bytes) and StorageError."""
        inspected = inspect_archive(data, name=name, version=version)
        file = dist_file(inspected.version, inspected.sha1)
        # Content-addressed: rewriting the same bytes is harmless, and a record that
        # loses the race below never points at it.
        self.artifacts.write(archive_key(inspected.name, file), data)
        record = self._record(inspected, source)
        try:
            self.packages.create(record_key(inspected.name, inspected.version), record)
            created = True
        except AlreadyExists:
            existing = self.record(inspected.name, inspected.version)
            if existing is None or existing.get("sha1") != inspected.sha1:
                self.artifacts.delete(archive_key(inspected.name, file))  # referenced by none
                spelled = f" (as {existing['version']})" if existing else ""
                raise VersionConflict(
                    f"{inspected.name} {inspected.version} exists{spelled} with other "
                    "contents; publish a new version (versions are immutable)"
                ) from None
            created = False
        self.rebuild(inspected.name)
        log.info(
            "published %s %s (%s)",
            inspected.name,
            inspected.version,
            "new" if created else "identical",
        )
        return Published(inspected.name, inspected.version, inspected.sha1, created)

    def unpublish(self, name: str, version: str) -> bool:
        """Remove a version (its record, then its archive). False when there is none."""
        existing = self.record(name, version)
        if existing is None:
            return False
        self.packages.delete(record_key(name, version))
        self.rebuild(name)
        self.artifacts.delete(archive_key(name, dist_file(version, str(existing["sha1"]))))
        log.info("unpublished %s %s", name, version)
        return True

    def _record(self, inspected: Inspected, source: Mapping[str, str] | None) -> bytes:
        document: dict[str, Any] = {
            "name": inspected.name,
            "version": inspected.version,
            "version_normalized": normalize_version(inspected.version),
            "sha1": inspected.sha1,
            "size": inspected.size,
            "published": self._clock().isoformat(timespec="seconds"),
            "composer": inspected.composer,
        }
        if source:
            document["source"] = dict(source)
        return json.dumps(document, sort_keys=True).encode()

    # -- reading ---------------------------------------------------------------------

    def record(self, name: str, version: str) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = json.loads(self.packages.read(record_key(name, version)))
        except NotFound:
            return None
        return document

    def names(self) -> list[str]:
        """Every private package's name (from the records, not the index)."""
        names = {"/".join(info.key.split("/")[1:3]) for info in self.packages.list("versions")}
        return sorted(names)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every published version's record, newest publication first."""
        listed = self.packages.list(f"versions/{name}")
        records = [json.loads(self.packages.read(info.key)) for info in listed]
        return sorted(records, key=lambda r: str(r["published"]), reverse=True)

    # -- derived documents -------------------------------------------------------------

    def rebuild(self, name: str) -> None:
        """Rewrite the p2 document of `name` and the index from the records."""
        self._converge(
            lambda: tuple(sorted((i.key, i.etag) for i in self.packages.list(f"versions/{name}"))),
            lambda: self._write_p2(name),
        )
        self._converge(lambda: tuple(self.names()), self._write_index)

    def _converge(self, state: Callable[[], tuple[Any, ...]], write: Callable[[], None]) -> None:
        before = state()
        for _ in range(_REBUILD_ROUNDS):
            write()
            after = state()
            if after == before:
                return
            before = after  # someone published meanwhile: once more, with theirs
        log.warning("records kept changing during %d rebuilds", _REBUILD_ROUNDS)

    def _write_p2(self, name: str) -> None:
        records = self.versions(name)
        if not records:
            self.packages.delete(p2_key(name))
            return
        self.packages.write(p2_key(name), render_p2(name, records))

    def _write_index(self) -> None:
        body = json.dumps({"packages": self.names()}, separators=(",", ":")).encode()
        self.packages.write(INDEX_KEY, body)


def render_p2(name: str, records: list[dict[str, Any]]) -> bytes:
    """The stored p2 document: each version's composer.json with its dist on the app."""
    versions = []
    for record in records:
        entry = {k: v for k, v in record["composer"].items() if k not in ("dist", "source")}
        entry["name"] = name
        entry["version"] = record["version"]
        entry["version_normalized"] = normalize_version(record["version"])
        entry["time"] = record["published"]
        file = dist_file(record["version"], record["sha1"])
        entry["dist"] = {
            "type": "zip",
            "url": f"{BASE_PLACEHOLDER}/private/dists/{name}/{file}",
            "reference": record["sha1"],
            "shasum": record["sha1"],
        }
        source = record.get("source")
        if source and source.get("url"):
            entry["source"] = {
                "type": source.get("type") or "git",
                "url": source["url"],
                "reference": source.get("reference") or "",
            }
        versions.append(entry)
    return json.dumps({"packages": {name: versions}}, separators=(",", ":")).encode()
