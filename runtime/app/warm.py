"""Seeding the mirror from lock files (`satchel mirror warm`): every package document and
dist a composer.lock names, fetched into the bucket through the app's own documents and
dists (so the same guards, single flight and storage layout apply), from every upstream,
skipping what is stored already. Private packages are skipped: they live in the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runtime.app.composer import DIST_EXTENSIONS, dist_file, p2_path
from runtime.app.documents import UpstreamUnavailable
from runtime.app.routes import Services
from runtime.app.upstream import UpstreamError
from runtime.errors import StorageError
from runtime.repository.names import is_package_name


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    dist: dict[str, Any]

    @property
    def dev(self) -> bool:
        return self.version.startswith("dev-") or self.version.endswith("-dev")


@dataclass
class Outcome:
    fetched: int = 0
    stored: int = 0  # already in the bucket: skipped
    skipped: int = 0  # private, or not a zip/tar dist
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        failed = len(self.failures)
        return (
            f"warm: {self.fetched} fetched, {self.stored} already stored, {self.skipped} skipped,"
            f" {failed} failed"
        )


def read_lock(path: Path) -> list[Locked]:
    """The packages (and dev packages) of a composer.lock. Raises ValueError."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable composer.lock ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a composer.lock")
    out: list[Locked] = []
    for section in ("packages", "packages-dev"):
        for package in document.get(section) or []:
            name = str(package.get("name", "")).lower() if isinstance(package, dict) else ""
            if is_package_name(name):
                dist = package.get("dist")
                out.append(
                    Locked(
                        name, str(package.get("version")), dist if isinstance(dist, dict) else {}
                    )
                )
    return out


async def warm(
    services: Services, packages: list[Locked], progress: Callable[[str], None]
) -> Outcome:
    outcome = Outcome()
    aliases = [u.alias for u in services.config.upstreams]
    for package in packages:
        try:
            await _warm_one(services, aliases, package, outcome)
        except (UpstreamError, UpstreamUnavailable, StorageError) as exc:
            outcome.failures.append(f"{package.name} {package.version}: {exc}")
        progress(package.name)
    return outcome


async def _warm_one(
    services: Services, aliases: list[str], package: Locked, outcome: Outcome
) -> None:
    if await services.private.owns(package.name):
        outcome.skipped += 1
        return
    found = False
    for alias in aliases:
        if not (await services.documents.root(alias)).allows(package.name):
            continue
        lookup = await services.documents.get(alias, p2_path(package.name, package.dev))
        if lookup.doc is None:
            continue
        found = True
        outcome.stored += lookup.outcome in ("stored", "hot")
        outcome.fetched += lookup.outcome not in ("stored", "hot")
        file = _dist_file(alias, package, lookup.doc.state.dists if lookup.doc.state else {})
        if file is None:
            continue
        opened = await services.dists.open(alias, package.name, file)
        if opened is None:
            outcome.failures.append(
                f"{package.name} {package.version}: upstream {alias!r} has no dist"
            )
            continue
        opened.stream.close()
        outcome.stored += opened.outcome == "stored"
        outcome.fetched += opened.outcome != "stored"
    if not found:
        outcome.failures.append(f"{package.name} {package.version}: in no upstream")


def _dist_file(alias: str, package: Locked, dists: Any) -> str | None:
    """The mirror's file name of the locked dist: from a lock made through the mirror (its
    URL names the file), or matched on the reference in the upstream's p2 document."""
    url, reference = package.dist.get("url"), package.dist.get("reference")
    extension = DIST_EXTENSIONS.get(str(package.dist.get("type")))
    if not isinstance(url, str) or extension is None:
        return None
    prefix = f"/dists/{alias}/{package.name}/"
    path = urlsplit(url).path
    if prefix in path:
        return path.rsplit("/", 1)[-1]
    file = dist_file(
        package.version, reference if isinstance(reference, str) else None, url, extension
    )
    if f"{package.name}/{file}" in dists:
        return file
    token = f"-{reference}." if isinstance(reference, str) and reference else None
    for key in dists:
        if token and key.startswith(f"{package.name}/") and token in key:
            return str(key).rsplit("/", 1)[-1]
    return None
