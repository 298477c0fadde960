"""The Composer v2 repository protocol: package names, the root document, and p2 documents
whose dist URLs are rewritten to the mirror.

Stored documents hold `satchel-mirror:` where the mirror's public base URL goes; `render`
puts the base in when serving, so one stored copy serves any host name or sub-path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from runtime.repository.names import BASE_PLACEHOLDER, is_package_name

PLACEHOLDER = BASE_PLACEHOLDER
_QUOTED_PLACEHOLDER = b'"' + PLACEHOLDER.encode()

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_DIST_FILE = re.compile(r"^[A-Za-z0-9._+-]+\.(zip|tar)\Z")
# Dist types the mirror stores; other types keep pointing at the upstream.
DIST_EXTENSIONS = {"zip": "zip", "tar": "tar"}


def is_dist_file(file: str) -> bool:
    """Whether `file` is shaped like the names `dist_file` makes."""
    return bool(_DIST_FILE.match(file))


def p2_path(name: str, dev: bool) -> str:
    return f"p2/{name}{'~dev' if dev else ''}.json"


def split_p2_file(stem: str) -> tuple[str, bool]:
    """`package~dev` -> (`package`, True)."""
    return (stem[: -len("~dev")], True) if stem.endswith("~dev") else (stem, False)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _token(text: str) -> str:
    """A file-name-safe form of `text`; a hash keeps lossy forms distinct."""
    safe = _UNSAFE.sub("_", text)[:100]
    return safe if safe == text else f"{safe}.{_sha1(text)[:8]}"


def dist_file(version: str, reference: str | None, url: str, extension: str) -> str:
    """`{version}-{reference}.{ext}`: immutable, as the reference pins the content. Without
    a reference the upstream URL stands in for it."""
    return f"{_token(version)}-{_token(reference or _sha1(url)[:20])}.{extension}"


@dataclass(frozen=True)
class Dist:
    url: str  # where the upstream serves it
    shasum: str | None


def rewrite_p2(alias: str, body: bytes) -> tuple[bytes, dict[str, Dist]]:
    """Point every zip/tar dist at the mirror; return the stored body and, for each mirror
    path (`vendor/package/file`), the upstream dist. `shasum`, `type` and `reference` stay.

    Works on the minified form too: a version without `dist` inherits the previous one's,
    which is the same archive, so its rewritten URL is right as well."""
    document = json.loads(body)
    packages = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(packages, dict):
        raise ValueError("not a Composer p2 document (no 'packages' object)")
    dists: dict[str, Dist] = {}
    for name, versions in packages.items():
        if not is_package_name(name) or not isinstance(versions, list):
            continue
        for version in versions:
            dist = version.get("dist") if isinstance(version, dict) else None
            if isinstance(dist, dict):
                _rewrite_dist(alias, name, str(version.get("version") or "0"), dist, dists)
    stored = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return stored, dists


def _rewrite_dist(
    alias: str, name: str, version: str, dist: dict[str, Any], dists: dict[str, Dist]
) -> None:
    url, extension = dist.get("url"), DIST_EXTENSIONS.get(str(dist.get("type")))
    if not isinstance(url, str) or not url or extension is None:
        return
    reference = dist.get("reference")
    file = dist_file(version, reference if isinstance(reference, str) else None, url, extension)
    shasum = dist.get("shasum")
    dists[f"{name}/{file}"] = Dist(url, shasum if isinstance(shasum, str) and shasum else None)
    dist["url"] = f"{PLACEHOLDER}/dists/{alias}/{name}/{file}"


def render(stored: bytes, base: str) -> bytes:
    """The stored document as served from `base` (the mirror's absolute URL)."""
    if _QUOTED_PLACEHOLDER not in stored:
        return stored
    escaped = json.dumps(base)[1:-1].encode()  # a Host header must not break the JSON
    return stored.replace(_QUOTED_PLACEHOLDER, b'"' + escaped)


# -- the root document (packages.json) --------------------------------------------------


@dataclass(frozen=True)
class RootInfo:
    """What the mirror keeps of an upstream's packages.json."""

    metadata_url: str  # absolute, with %package%
    available_packages: tuple[str, ...] | None = None
    available_patterns: tuple[str, ...] | None = None
    advisories_url: str | None = None  # its security advisories API (`api-url`), absolute
    advisories_metadata: bool = False  # its p2 files carry `security-advisories`
    changes_url: str | None = None  # its `metadata-changes-url`, absolute

    @property
    def restricted(self) -> bool:
        return self.available_packages is not None or self.available_patterns is not None

    def allows(self, name: str) -> bool:
        """Whether the upstream may have `name` (Composer asks only for these)."""
        if not self.restricted:
            return True
        patterns = self._patterns
        return name in self._names or (patterns is not None and patterns.match(name) is not None)

    # Asked on every /p2 request: a set and one compiled pattern, made once per document.
    @functools.cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(self.available_packages or ())

    @functools.cached_property
    def _patterns(self) -> re.Pattern[str] | None:
        if not self.available_patterns:
            return None
        globs = "|".join(re.escape(glob).replace(r"\*", ".*") for glob in self.available_patterns)
        return re.compile(f"^(?:{globs})\\Z", re.IGNORECASE)

    def p2_url(self, name: str, dev: bool) -> str:
        return self.metadata_url.replace("%package%", f"{name}{'~dev' if dev else ''}")


def parse_upstream_root(upstream_url: str, body: bytes) -> bytes:
    """The stored form of an upstream's packages.json: only what a v2 mirror needs."""
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("metadata-url"), str):
        raise ValueError("not a Composer v2 repository: its packages.json has no metadata-url")
    stored: dict[str, Any] = {"metadata-url": urljoin(upstream_url + "/", document["metadata-url"])}
    for key in ("available-packages", "available-package-patterns"):
        value = document.get(key)
        if isinstance(value, list):
            stored[key] = sorted({str(item).lower() for item in value})
    advisories = document.get("security-advisories")
    if isinstance(advisories, dict):
        api = advisories.get("api-url")
        stored["security-advisories"] = {
            "metadata": advisories.get("metadata") is True,
            "api-url": urljoin(upstream_url + "/", api) if isinstance(api, str) and api else None,
        }
    changes = document.get("metadata-changes-url")
    if isinstance(changes, str) and changes:
        stored["metadata-changes-url"] = urljoin(upstream_url + "/", changes)
    return json.dumps(stored, sort_keys=True, separators=(",", ":")).encode()


def load_root(stored: bytes) -> RootInfo:
    document = json.loads(stored)
    names, patterns = document.get("available-packages"), document.get("available-package-patterns")
    advisories = document.get("security-advisories") or {}
    return RootInfo(
        metadata_url=document["metadata-url"],
        available_packages=tuple(names) if names is not None else None,
        available_patterns=tuple(patterns) if patterns is not None else None,
        advisories_url=advisories.get("api-url"),
        advisories_metadata=bool(advisories.get("metadata")),
        changes_url=document.get("metadata-changes-url"),
    )


def render_root(
    metadata_url: str,
    roots: list[RootInfo | None],
    private: tuple[list[str], list[str]] = ([], []),
    advisories_url: str | None = None,
) -> bytes:
    """The mirror's packages.json over `roots` (None: an upstream not known yet) and the
    private repository's (names, patterns). The availability lists are kept only when
    every upstream restricts itself; then the private ones join them.

    With `advisories_url` (the mirror's own API), `security-advisories` is advertised when
    an upstream offers advisories, or while one is not known yet (its API then answers 502,
    never "none"); `metadata: true` only when every known upstream's p2 files carry them
    (Composer then reads them there, and asks the API for the rest)."""
    document: dict[str, Any] = {"packages": [], "metadata-url": metadata_url}
    known_roots = [root for root in roots if root is not None]
    offered = [r for r in known_roots if r.advisories_url or r.advisories_metadata]
    if advisories_url is not None and (offered or len(known_roots) < len(roots)):
        document["security-advisories"] = {
            "metadata": bool(known_roots) and all(r.advisories_metadata for r in known_roots),
            "api-url": advisories_url,
        }
    if roots and all(root is not None and root.restricted for root in roots):
        known = [root for root in roots if root is not None]
        names = sorted(
            {n for root in known for n in root.available_packages or ()} | set(private[0])
        )
        patterns = sorted(
            {p for root in known for p in root.available_patterns or ()} | set(private[1])
        )
        document["available-packages"] = names  # even empty: the upstreams have nothing else
        if patterns:
            document["available-package-patterns"] = patterns
    return json.dumps(document, separators=(",", ":")).encode()
