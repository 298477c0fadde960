"""The private repository's HTTP side: its p2 documents and dists behind `read` tokens, and
the Nexus-style upload (`PUT /packages/upload/{vendor}/{package}[/{version}]`) that
`composer push` and Packeton use, behind `publish` tokens, and `DELETE
/packages/{vendor}/{package}/{version}` behind `admin` tokens.

What a worker read from the bucket (the index of private names, each package's p2
document) it keeps `SATCHEL_PRIVATE_TTL` seconds, then revalidates with one conditional
GET: a new version reaches every replica within that time. A private name is never looked
up in an upstream, nor is any name under `SATCHEL_PRIVATE_VENDORS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime import metrics
from runtime.app.caches import Lru
from runtime.app.composer import render
from runtime.app.config import ServeConfig
from runtime.app.http import (
    Encoded,
    StreamResponse,
    error,
    is_not_modified,
    metadata_response,
    not_modified,
    validator_headers,
)
from runtime.app.logs import note_cache
from runtime.app.objects import CachedObjects
from runtime.errors import NotFound, StorageError
from runtime.mirror import MetadataEntry
from runtime.mirror.filecache import FileCache, validators_of
from runtime.repository import InvalidArchive, Repository, VersionConflict
from runtime.repository.names import is_package_name
from runtime.repository.store import INDEX_KEY, archive_key, p2_key
from runtime.storage import Storage

log = logging.getLogger("satchel.repository")

PRIVATE_DIST_CACHE_CONTROL = "private, max-age=31536000, immutable"  # never a shared cache
UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries and fields around the archive
STALE_RETRY = 2.0  # seconds between bucket retries while serving a stale private document


@dataclass
class _Held:
    entry: MetadataEntry | None  # None: the bucket has no such document
    checked: float
    derived: Any = None  # what a caller parsed out of the body, kept with it
    rendered: dict[str, Encoded] = field(default_factory=dict)  # per base URL, with its gzip


@dataclass
class _TtlDocuments:
    """Documents of one storage, each read at most once per `ttl` per worker, then
    revalidated with a conditional GET (a 304 keeps what is held)."""

    storage: Storage
    ttl: float
    monotonic: Callable[[], float]
    _held: Lru[str, _Held] = field(default_factory=lambda: Lru(50_000, lambda _: 1))
    _locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )

    async def get(self, key: str, max_age: float | None = None) -> _Held:
        """The document, read again when older than `max_age` (default: the TTL)."""
        limit = self.ttl if max_age is None else min(max_age, self.ttl)
        held = self._held.get(key)
        if held is not None and self.monotonic() - held.checked < limit:
            return held
        async with self._locks.setdefault(key, asyncio.Lock()):  # one refresh per key
            held = self._held.get(key)
            if held is not None and self.monotonic() - held.checked < limit:
                return held
            current = held.entry if held is not None else None
            try:
                entry = await to_thread.run_sync(self._fetch, key, current)
            except StorageError:
                if held is None:
                    raise  # nothing to fall back on: the caller answers 503
                # Stale-if-error: keep what was read, ask the bucket again in a moment.
                held.checked = self.monotonic() - self.ttl + min(self.ttl, STALE_RETRY)
                return held
            same = held is not None and entry is current
            fresh = _Held(entry, self.monotonic())
            if same and held is not None:
                fresh.derived, fresh.rendered = held.derived, held.rendered
            self._held.put(key, fresh)
            return fresh

    def forget(self, key: str) -> None:
        self._held.pop(key)

    def fresh_for(self, key: str) -> float:
        """Seconds `get(key)` keeps answering what is held without asking the bucket."""
        held = self._held.get(key)
        return self.ttl - (self.monotonic() - held.checked) if held is not None else 0.0

    def _fetch(self, key: str, current: MetadataEntry | None) -> MetadataEntry | None:
        try:
            fetched = self.storage.get(key, if_none_match=current.etag if current else None)
        except NotFound:
            return None
        if fetched.not_modified:
            return current
        assert fetched.stream is not None and fetched.info is not None
        with fetched.stream as stream:
            return MetadataEntry.of(stream.read(), fetched.info)


class PrivateRepository:
    def __init__(
        self,
        repository: Repository,
        archives: FileCache,
        config: ServeConfig,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.vendors = config.private_vendors
        self.max_archive_size = config.max_archive_size
        self.documents = _TtlDocuments(repository.packages, config.private_ttl, monotonic)
        self.archives = CachedObjects(archives, monotonic)
        # Uploads are read into memory (bounded by max_archive_size): one at a time.
        self.uploads = asyncio.Semaphore(1)
        self.epoch = 0  # counts this worker's publishes and unpublishes (see reuse.py)

    async def names(self, max_age: float | None = None) -> frozenset[str]:
        held = await self.documents.get(INDEX_KEY, max_age)
        if held.derived is None:
            names = json.loads(held.entry.body)["packages"] if held.entry else []
            held.derived = frozenset(names)
        names_: frozenset[str] = held.derived
        return names_

    async def owns(self, name: str, *, recheck: bool = False) -> bool:
        """Whether `name` is private: never to be served from an upstream. With `recheck`
        (before serving what an upstream just sent), against the index as the bucket has
        it now, not as this worker read it up to the TTL ago: a name published on another
        replica a moment ago is never answered from an upstream."""
        if name.split("/", 1)[0] in self.vendors:
            return True
        return name in await self.names(0 if recheck else None)

    async def rendering(self, name: str, base: str) -> tuple[MetadataEntry, Encoded] | None:
        """The stored p2 document of `name` as served from `base`, or None."""
        held = await self.documents.get(p2_key(name))
        if held.entry is None:
            return None
        encoded = held.rendered.get(base)
        if encoded is None:
            if len(held.rendered) >= 2:  # bounded: a client inventing Host names
                held.rendered.clear()
            encoded = held.rendered[base] = Encoded(render(held.entry.body, base))
        return held.entry, encoded

    async def document(
        self, name: str, max_age: float | None = None
    ) -> tuple[MetadataEntry, frozenset[str]] | None:
        """The stored p2 document of `name` and the dist files it lists, or None."""
        held = await self.documents.get(p2_key(name), max_age)
        if held.entry is None:
            return None
        if held.derived is None:
            versions = json.loads(held.entry.body)["packages"][name]
            held.derived = frozenset(v["dist"]["url"].rsplit("/", 1)[-1] for v in versions)
        files: frozenset[str] = held.derived
        return held.entry, files

    def forget(self, name: str) -> None:
        """After a publish here: this worker sees it at once, not after the TTL."""
        self.documents.forget(p2_key(name))
        self.documents.forget(INDEX_KEY)
        self.epoch += 1

    def index_fresh_for(self) -> float:
        """Seconds `owns` keeps answering from the index as read, without the bucket."""
        return self.documents.fresh_for(INDEX_KEY)


def _private(request: Request) -> PrivateRepository:
    found: PrivateRepository = request.app.state.services.private
    return found


async def p2_response(
    request: Request, name: str, dev: bool, base: str, etag_of: Callable[[str], str]
) -> Response:
    """The private p2 document of `name` (the caller checked the token)."""
    found = None if dev else await _private(request).rendering(name, base)  # no dev versions
    note_cache(request.scope, "private")
    if found is None:
        return error(404, f"{name} is a private package name with nothing published")
    entry, encoded = found
    return await metadata_response(
        request.headers, encoded, etag_of(entry.etag), entry.last_modified, _P2_HEADERS
    )


_P2_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Host, Authorization"}


async def dist(request: Request) -> Response:
    """GET /private/dists/{vendor}/{package}/{file}: a dist the current p2 document lists."""
    private = _private(request)
    name = f"{request.path_params['vendor']}/{request.path_params['package']}"
    file = request.path_params["file"]
    note_cache(request.scope, "private")
    found = await private.document(name) if is_package_name(name) else None
    if found is not None and file not in found[1]:
        # Published moments ago (its p2 came from another replica or worker): read again.
        found = await private.document(name, max_age=0)
    if found is None or file not in found[1]:
        return error(404, "no such private dist")
    try:
        stream = await private.archives.open(archive_key(name, file))
    except StorageError as exc:
        return error(503, str(exc))
    if stream is None:
        return error(404, "no such private dist")
    size, etag, last_modified = validators_of(stream)
    headers = validator_headers(etag, last_modified)
    headers["Cache-Control"] = PRIVATE_DIST_CACHE_CONTROL
    if is_not_modified(request.headers, etag, last_modified):
        stream.close()
        return not_modified(headers)
    return StreamResponse(stream, size, headers, "application/zip")


async def upload(request: Request) -> Response:
    """PUT /packages/upload/{vendor}/{package}[/{version}]: the raw zip, or multipart with
    the zip in `package` and optional `src-type`, `src-url`, `src-ref`."""
    private = _private(request)
    name = f"{request.path_params['vendor']}/{request.path_params['package']}".lower()
    version = request.path_params.get("version")
    if not is_package_name(name):
        return error(400, f"{name!r} is not a Composer package name (vendor/package)")
    async with private.uploads:  # one upload in memory at a time per worker
        answer = await _publish(request, private, name, version)
    metrics.PUBLISHES.labels(_RESULTS.get(answer.status_code, "failed")).inc()
    return answer


_RESULTS = {201: "created", 200: "identical", 409: "conflict", 400: "invalid", 413: "too_large"}


async def _publish(
    request: Request, private: PrivateRepository, name: str, version: str | None
) -> Response:
    limit = private.max_archive_size
    body = await _read_bounded(request, limit + UPLOAD_OVERHEAD)
    if body is None:
        return error(413, f"the upload is larger than SATCHEL_MAX_ARCHIVE_SIZE ({limit} bytes)")
    try:
        data, source = await _archive_and_source(request, body)
    except ValueError as exc:
        return error(400, str(exc))
    del body  # the archive is all that is needed now
    if len(data) > limit:
        return error(413, f"the archive is larger than SATCHEL_MAX_ARCHIVE_SIZE ({limit} bytes)")
    try:
        published = await to_thread.run_sync(
            lambda: private.repository.publish(data, name=name, version=version, source=source)
        )
    except InvalidArchive as exc:
        return error(400, str(exc))
    except VersionConflict as exc:
        return error(409, str(exc))
    except StorageError as exc:
        return error(503, str(exc))
    private.forget(published.name)
    answer = {
        "name": published.name,
        "version": published.version,
        "shasum": published.sha1,
        "created": published.created,
    }
    return JSONResponse(answer, status_code=201 if published.created else 200)


async def unpublish(request: Request) -> Response:
    """DELETE /packages/{vendor}/{package}/{version}: remove one version (admin tokens)."""
    private = _private(request)
    name = f"{request.path_params['vendor']}/{request.path_params['package']}".lower()
    version = request.path_params["version"]
    if not is_package_name(name):
        return error(400, f"{name!r} is not a Composer package name (vendor/package)")
    try:
        removed = await to_thread.run_sync(private.repository.unpublish, name, version)
    except StorageError as exc:
        return error(503, str(exc))
    private.forget(name)
    if not removed:
        return error(404, f"{name} {version} is not published")
    return Response(status_code=204)


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    """The whole body, or None once it is over `limit` bytes (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _InMemoryParts(MultiPartParser):
    spool_max_size = 1 << 62  # the body is in memory already, and bounded: keep the part there


async def _archive_and_source(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return body, {}

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await _InMemoryParts(request.headers, stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise ValueError(f"the multipart body cannot be read: {exc.message}") from None
    try:
        package = form.get("package")
        if package is None or isinstance(package, str):
            raise ValueError("a multipart upload carries the zip in the file field 'package'")
        data = await package.read()
        fields = {"src-type": "type", "src-url": "url", "src-ref": "reference"}
        source = {
            key: value.strip()
            for field_name, key in fields.items()
            if isinstance(value := form.get(field_name), str) and value.strip()
        }
        return data, source
    finally:
        await form.close()
