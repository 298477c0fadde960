"""What a published archive says about itself: its `composer.json`, read the way Composer's
artifact repository finds it (at the zip's root, or in its single top-level directory),
without ever inflating more than `MAX_COMPOSER_JSON` bytes of it (zip bombs)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

from runtime.repository.names import is_package_name, is_tagged_version

MAX_COMPOSER_JSON = 256 * 1024


class InvalidArchive(ValueError):
    """The archive cannot be published; the message says why and how to fix it."""


@dataclass(frozen=True)
class Inspected:
    name: str
    version: str
    composer: dict[str, Any]  # the archive's composer.json, as the archive has it
    sha1: str
    size: int


def inspect_archive(
    data: bytes, *, name: str | None = None, version: str | None = None
) -> Inspected:
    """Check `data` as a package archive; `name` (from an upload URL) must match its
    composer.json, `version` (a flag or an upload URL) wins over composer.json's own.
    Raises InvalidArchive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise InvalidArchive("not a zip archive; publish the package as a .zip") from None
    with archive:
        composer = _composer_json(archive)
    declared = composer.get("name")
    if not isinstance(declared, str) or not is_package_name(declared.lower()):
        raise InvalidArchive(
            f"composer.json has no valid package name ({declared!r}); "
            "set \"name\": \"vendor/package\" in lowercase letters, digits, '-', '_' or '.'"
        )
    declared = declared.lower()
    if name is not None and name.lower() != declared:
        raise InvalidArchive(
            f"the archive is {declared}, not {name}; publish it under its own name"
        )
    chosen = version if version is not None else composer.get("version")
    if chosen is None:
        raise InvalidArchive(
            "no version: give one (satchel publish --version 1.2.0, or the upload URL's last "
            'segment) or set "version" in composer.json'
        )
    if not isinstance(chosen, str) or not is_tagged_version(chosen):
        raise InvalidArchive(
            f"{chosen!r} is not a tagged version; use one like 1.2.0 or 2.0.0-beta1"
        )
    sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    return Inspected(declared, chosen, composer, sha1, len(data))


def _composer_json(archive: zipfile.ZipFile) -> dict[str, Any]:
    member = _find_composer_json(archive)
    if member.file_size > MAX_COMPOSER_JSON:
        raise InvalidArchive(f"its composer.json is over {MAX_COMPOSER_JSON // 1024} KiB")
    try:
        with archive.open(member) as stream:
            raw = stream.read(MAX_COMPOSER_JSON + 1)  # the header may lie about the size
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, RuntimeError, zlib.error):
        # RuntimeError: an encrypted member; zlib.error: corrupt compressed data
        raise InvalidArchive(
            "its composer.json cannot be extracted (corrupt or encrypted)"
        ) from None
    if len(raw) > MAX_COMPOSER_JSON:
        raise InvalidArchive(f"its composer.json is over {MAX_COMPOSER_JSON // 1024} KiB")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArchive(f"its composer.json is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise InvalidArchive("its composer.json is not a JSON object")
    return document


def _find_composer_json(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
    names = [m.filename for m in members]
    if len(names) != len(set(names)):
        raise InvalidArchive("the archive has duplicate entries; zip it again")
    by_name = {m.filename: m for m in members}
    if "composer.json" in by_name:
        return by_name["composer.json"]
    tops = {m.filename.split("/", 1)[0] for m in members}
    if len(tops) == 1:
        nested = by_name.get(f"{tops.pop()}/composer.json")
        if nested is not None:
            return nested
    raise InvalidArchive(
        "no composer.json at the archive's root or in its single top-level directory"
    )
