"""Package archives for the private-repository tests, built the way projects zip them."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any


def package_zip(
    name: str,
    version: str | None = None,
    *,
    top: str = "",
    requires: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
) -> bytes:
    """A zip with `composer.json` (under `top`, e.g. 'lib-1.0/') and a PSR-4 class."""
    document: dict[str, Any] = {
        "name": name,
        "type": "library",
        "require": requires or {},
        "autoload": {"psr-4": {"Acme\\": "src/"}},
        **(extra or {}),
    }
    if version is not None:
        document["version"] = version
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top}composer.json", json.dumps(document))
        archive.writestr(f"{top}src/Hello.php", "<?php\nnamespace Acme;\nclass Hello {}\n")
        for path, data in (files or {}).items():
            archive.writestr(f"{top}{path}", data)
    return out.getvalue()


def raw_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return out.getvalue()
