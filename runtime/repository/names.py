"""Composer's rules for package names and the tagged versions a repository publishes."""

from __future__ import annotations

import re

# Composer's own rule for package names (lowercase, as p2 URLs use them).
_NAME = re.compile(r"^[a-z0-9]([_.-]?[a-z0-9]+)*/[a-z0-9](([_.]|-{1,2})?[a-z0-9]+)*\Z")
# Tagged versions as Composer writes them: 1, 1.2, v1.2.3, 1.2.3.4, 1.0.0-beta2, 1.0-RC.1, ...
_VERSION = re.compile(
    r"^v?\d{1,9}(\.\d{1,9}){0,3}([-.]?(alpha|beta|a|b|rc|patch|pl|p)([.-]?\d{1,9})?)?\Z",
    re.IGNORECASE,
)


# Where a stored document has the app's absolute base URL, filled in when served.
BASE_PLACEHOLDER = "satchel-mirror:"


def is_package_name(name: str) -> bool:
    return bool(_NAME.match(name))


def is_tagged_version(version: str) -> bool:
    return bool(_VERSION.match(version))
