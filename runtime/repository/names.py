"""Composer's rules for package names and the tagged versions a repository publishes."""

from __future__ import annotations

import re

# Composer's own rule for package names (lowercase, as p2 URLs use them).
_NAME = re.compile(r"^[a-z0-9]([_.-]?[a-z0-9]+)*/[a-z0-9](([_.]|-{1,2})?[a-z0-9]+)*\Z")
# Tagged versions as Composer writes them: 1, 1.2, v1.2.3, 1.2.3.4, 1.0.0-beta2, 1.0-RC.1, ...
_VERSION = re.compile(
    r"^v?(\d{1,9})((?:\.\d{1,9}){0,3})(?:[-.]?(alpha|beta|a|b|rc|patch|pl|p)(?:[.-]?(\d{1,9}))?)?\Z",
    re.IGNORECASE,
)
_STABILITY = {"a": "alpha", "alpha": "alpha", "b": "beta", "beta": "beta", "rc": "RC"}


# Where a stored document has the app's absolute base URL, filled in when served.
BASE_PLACEHOLDER = "satchel-mirror:"


def is_package_name(name: str) -> bool:
    return bool(_NAME.match(name))


def is_tagged_version(version: str) -> bool:
    return bool(_VERSION.match(version))


def normalize_version(version: str) -> str:
    """The version as Composer's VersionParser normalizes it: `v1.0`, `1.0.0` and
    `1.0.0.0` are one version, 1.0.0.0; `1.0-b2` is 1.0.0.0-beta2. A tagged version only."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a tagged version")
    numbers = [match.group(1), *(part for part in match.group(2).split(".") if part)]
    normalized = ".".join(numbers + ["0"] * (4 - len(numbers)))
    if match.group(3):
        stability = _STABILITY.get(match.group(3).lower(), "patch")  # pl, p, patch
        normalized += f"-{stability}{match.group(4) or ''}"
    return normalized
