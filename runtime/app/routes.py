"""The endpoints. `/packages.json` and `/p2/...` serve all upstreams (the first that has a
package wins); `/{alias}/packages.json` and `/{alias}/p2/...` serve one upstream.

Every endpoint but the probes passes the Host policy first (`HostPolicy`). Metadata is
rendered with the base URL (the public URL, or the request's Host): its responses carry
`Vary: Host` and an ETag that covers the base, so no cache and no 304 mixes two hosts'
renderings. Metadata (packages.json, p2 documents, advisories) goes out gzip-encoded to
clients that accept it, compressed once per rendering (`http.Encoded`), with its own ETag.

`/api/security-advisories/` (POST form `packages[]=...`, or the same as a GET query) is the
`api-url` packages.json advertises when an upstream offers advisories (`advisories.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime import metrics
from runtime.app import private as private_routes
from runtime.app.advisories import Advisories, AdvisoriesUnavailable
from runtime.app.auth import Auth
from runtime.app.composer import (
    is_dist_file,
    p2_path,
    render_root,
    split_p2_file,
)
from runtime.app.config import ServeConfig
from runtime.app.dists import Dists, dist_key
from runtime.app.documents import ROOT, Documents, Lookup, UpstreamUnavailable
from runtime.app.failures import upstream_failure
from runtime.app.health import ReadinessProbe
from runtime.app.http import (
    DIST_CACHE_CONTROL,
    METADATA_CACHE_CONTROL,
    Encoded,
    HostPolicy,
    StreamResponse,
    base_tag,
    error,
    is_not_modified,
    metadata_response,
    not_modified,
    validator_headers,
    without_validators,
)
from runtime.app.logs import note_cache
from runtime.app.private import PrivateRepository, p2_response
from runtime.app.reuse import allow_reuse, keep_instead, wants_the_200
from runtime.app.upstream import UpstreamError
from runtime.errors import StorageError
from runtime.repository.names import is_package_name

JSON = "application/json"
# Lookup outcomes of a document the upstream sent just now (see Documents.get).
FROM_UPSTREAM = frozenset({"miss", "refreshed"})
DIST_TYPES = {"zip": "application/zip", "tar": "application/x-tar"}


@dataclass
class Services:
    config: ServeConfig
    documents: Documents
    dists: Dists
    readiness: ReadinessProbe
    auth: Auth
    private: PrivateRepository
    advisories: Advisories
    hosts: HostPolicy = field(init=False)
    # packages.json renderings: rebuilt only when what they are made of changes
    roots: dict[tuple[object, ...], tuple[Encoded, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hosts = HostPolicy(self.config.public_url)

    def base_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url
        # Starlette's request.base_url builds a URL object per request: too slow for the hot
        # path. Same result from the scope: scheme, Host (or the server address), root path.
        scope = request.scope
        host = request.headers.get("host")
        if not host:
            server = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}".rstrip("/")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Endpoint = Callable[[Request], Awaitable[Response]]
MIRROR = "mirror"  # the scope SATCHEL_AUTH gives the public mirror: none, or read with `all`


def checked(endpoint: Endpoint, scope: str | None = MIRROR) -> Endpoint:
    """The endpoint behind the one gate every endpoint but the probes passes: the Host
    policy, then the token check for `scope`."""

    async def gated(request: Request) -> Response:
        found = services(request)
        refusal: Response | None = found.hosts.refusal(request.headers.get("host"))
        if refusal is None:
            needed = found.auth.mirror_scope if scope == MIRROR else scope
            refusal = await found.auth.check(request, needed)
        return refusal if refusal is not None else await endpoint(request)

    gated.__name__ = endpoint.__name__
    return gated


def _aliases(request: Request) -> list[str] | None:
    """The upstreams a request is about: all of them, or the one its path names."""
    config = services(request).config
    alias = request.path_params.get("alias")
    if alias is None:
        return [u.alias for u in config.upstreams]
    return [alias] if config.upstream(alias) is not None else None


async def packages_json(request: Request) -> Response:
    mirror = services(request)
    aliases = _aliases(request)
    if aliases is None:
        return error(404, "no such upstream")

    async def root(alias: str) -> Lookup | None:
        try:
            return await mirror.documents.get(alias, ROOT)
        except UpstreamUnavailable:
            return None  # served without its availability lists

    try:
        lookups = await asyncio.gather(*(root(alias) for alias in aliases))
    except StorageError as exc:
        return error(503, str(exc))
    docs = [lookup.doc if lookup else None for lookup in lookups]
    prefix = f"/{request.path_params['alias']}" if "alias" in request.path_params else ""
    base = mirror.base_url(request)
    # Private names are listed only to those who may read them (anonymous root documents
    # must not disclose them); private vendors are patterns the operator chose.
    private = mirror.private
    names = await private.names() if await mirror.auth.allowed(request, "read") else frozenset()
    key = (base, prefix, names, *(doc.entry.etag if doc else None for doc in docs))
    found = mirror.roots.get(key)
    if found is None:
        patterns = [f"{vendor}/*" for vendor in sorted(private.vendors)]
        roots = [doc.root() if doc else None for doc in docs]
        body = render_root(
            f"{base}{prefix}/p2/%package%.json",
            roots,
            private=(sorted(names), patterns),
            advisories_url=f"{base}{prefix}/api/security-advisories/",
        )
        # Derived from what is stored, so every replica sends the same validators; the body
        # holds the base URL, so the ETag covers it.
        found = Encoded(body), hashlib.sha1(body, usedforsecurity=False).hexdigest()
        if len(mirror.roots) >= 64:  # bounded: clients inventing Host names
            mirror.roots.clear()
        mirror.roots[key] = found
    dates = [doc.entry.last_modified for doc in docs if doc is not None]
    note_cache(request.scope, ",".join(lookup.outcome if lookup else "down" for lookup in lookups))
    return await _metadata_response(request, found[0], found[1], max(dates) if dates else None)


async def p2(request: Request) -> Response:
    mirror = services(request)
    aliases = _aliases(request)
    name, dev = split_p2_file(f"{request.path_params['vendor']}/{request.path_params['file']}")
    if aliases is None or not is_package_name(name):
        return error(404, "no such package")
    base = mirror.base_url(request)
    try:
        private = await mirror.private.owns(name)  # then never looked up upstream
        if not private:
            lookup = await _find_package(mirror.documents, aliases, name, dev)
            # Fresh from an upstream: served only if nobody published the name meanwhile.
            if lookup.outcome in FROM_UPSTREAM:
                private = await mirror.private.owns(name, recheck=True)
    except UpstreamUnavailable as exc:
        note_cache(request.scope, "down")
        return upstream_failure(request, exc, "the package's metadata")
    except StorageError as exc:
        return error(503, str(exc))
    if private:
        refusal = await mirror.auth.check(request, "read")
        if refusal is not None:
            return refusal
        return await p2_response(request, name, dev, base, lambda etag: f"{etag}.{base_tag(base)}")
    note_cache(request.scope, lookup.outcome)
    if lookup.doc is None:
        return error(404, f"{name} is not in the mirrored repositories")
    doc = lookup.doc
    etag = f"{doc.entry.etag}.{base_tag(base)}"  # one ETag per rendering
    # Served hot, the same request gets the same answer while the document and the private
    # index stay fresh here (a request with a token never reaches the reuse; not hot: 0 s).
    allow_reuse(request.scope, min(lookup.reusable, mirror.private.index_fresh_for()))
    rendering, modified = doc.render(base), doc.entry.last_modified
    response = await _metadata_response(request, rendering, etag, modified)
    if response.status_code == 304 and wants_the_200(request.scope):
        # What later requests are answered from is the 200 (their validators compared).
        unconditional = without_validators(request.headers)
        full = await metadata_response(unconditional, rendering, etag, modified, _METADATA_HEADERS)
        keep_instead(request.scope, full)
    return response


async def _find_package(documents: Documents, aliases: list[str], name: str, dev: bool) -> Lookup:
    """The first upstream's document for `name`; UpstreamUnavailable only when an upstream
    that could have it failed and no other has it."""
    failure: UpstreamUnavailable | None = None
    outcome = "absent"
    for alias in aliases:
        try:
            try:
                if not (await documents.root(alias)).allows(name):
                    continue
            except UpstreamUnavailable:
                pass  # a stored copy may still be servable
            lookup = await documents.get(alias, p2_path(name, dev))
        except UpstreamUnavailable as exc:
            failure = failure or exc
            continue
        if lookup.doc is not None:
            return lookup
        outcome = lookup.outcome
    if failure is not None:
        raise failure
    return Lookup(None, outcome)


_METADATA_HEADERS = {
    "Cache-Control": METADATA_CACHE_CONTROL,
    "Vary": "Host",  # rendered with the base URL, which may come from Host
}


async def _metadata_response(
    request: Request, body: Encoded, etag: str, last_modified: datetime | None
) -> Response:
    return await metadata_response(request.headers, body, etag, last_modified, _METADATA_HEADERS)


async def security_advisories(request: Request) -> Response:
    """Composer's `api-url`: POST `packages[]=NAME&...` (form-encoded), or the same query
    on a GET. Answers `{"advisories": {NAME: [...]}}` for every name asked."""
    mirror = services(request)
    aliases = _aliases(request)
    if aliases is None:
        return error(404, "no such upstream")
    names = _package_fields(request.query_params.multi_items())
    if request.method == "POST":
        try:
            form = await request.form(max_files=0, max_fields=10_000)
        except Exception:  # any unreadable body is the client's error
            return error(400, "the body is not a form (packages[]=vendor/name&...)")
        try:
            names += _package_fields(form.multi_items())
        finally:
            await form.close()
    if not names:
        return error(400, "ask for packages: packages[]=vendor/name (form or query)")
    names = [n for n in names if is_package_name(n.lower())]
    try:
        private = frozenset([n.lower() for n in names if await mirror.private.owns(n.lower())])
        body, etag, outcome = await mirror.advisories.answer(aliases, names, private)
    except AdvisoriesUnavailable as exc:
        note_cache(request.scope, "down")
        return upstream_failure(request, exc, "the security advisories")
    except StorageError as exc:
        return error(503, str(exc))
    note_cache(request.scope, outcome)
    return await metadata_response(request.headers, body, etag, None, _ADVISORY_HEADERS)


_ADVISORY_HEADERS = {"Cache-Control": METADATA_CACHE_CONTROL}


def _package_fields(items: list[tuple[str, Any]]) -> list[str]:
    """The names in `packages[]=...`, `packages=...` and PHP's `http_build_query` form
    `packages[0]=...` (what Composer sends)."""
    return [
        value
        for key, value in items
        if isinstance(value, str) and (key == "packages" or key.startswith("packages["))
    ]


async def dist(request: Request) -> Response:
    mirror = services(request)
    alias, vendor, package, file = (
        request.path_params[k] for k in ("alias", "vendor", "package", "file")
    )
    name = f"{vendor}/{package}"
    if not (mirror.config.upstream(alias) and is_package_name(name) and is_dist_file(file)):
        return error(404, "no such dist")
    try:
        if await mirror.private.owns(name):  # mirrored before it went private: not any more
            return error(404, "no such dist")
    except StorageError as exc:
        return error(503, str(exc))
    extension = file.rsplit(".", 1)[-1]
    key = dist_key(alias, name, file)
    known = mirror.dists.known.get(key)
    if known is not None and is_not_modified(request.headers, known.etag, known.last_modified):
        note_cache(request.scope, "hot")
        return not_modified(_dist_headers(known.etag, known.last_modified))
    try:
        opened = await mirror.dists.open(alias, name, file)
        fresh = opened is not None and opened.outcome == "miss"  # just from an upstream
        if fresh and opened and await mirror.private.owns(name, recheck=True):
            opened.stream.close()
            return error(404, "no such dist")
    except UpstreamError as exc:
        note_cache(request.scope, "down")
        return upstream_failure(request, exc, "the dist")
    except StorageError as exc:
        return error(503, str(exc))
    if opened is None:
        note_cache(request.scope, "absent")
        return error(404, f"{file} is not a dist of {name} in upstream {alias!r}")
    note_cache(request.scope, opened.outcome)
    info = opened.info
    headers = _dist_headers(info.etag, info.last_modified)
    if is_not_modified(request.headers, info.etag, info.last_modified):
        opened.stream.close()
        return not_modified(headers)
    return StreamResponse(opened.stream, info.size, headers, DIST_TYPES[extension])


def _dist_headers(etag: str, last_modified: datetime) -> dict[str, str]:
    headers = validator_headers(etag, last_modified)
    headers["Cache-Control"] = DIST_CACHE_CONTROL
    return headers


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})  # liveness: the process answers; no I/O


async def readyz(request: Request) -> Response:
    readiness = await services(request).readiness.check()
    body = {"ok": readiness.ok} | ({"reason": readiness.reason} if readiness.reason else {})
    return JSONResponse(body, status_code=200 if readiness.ok else 503)


async def metrics_text(request: Request) -> Response:
    """Prometheus's scrape: no Host policy (scrapers use the pod's address); a read token
    only with SATCHEL_AUTH=all."""
    found = services(request)
    refusal = await found.auth.check(request, found.auth.mirror_scope)
    if refusal is not None:
        return refusal
    caches = request.app.state.local_caches
    metrics.flush_requests()  # this worker's requests of this event-loop turn too
    body = await to_thread.run_sync(metrics.exposition, caches)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [  # the busiest first: Starlette tries them in order
    Route("/p2/{vendor}/{file}.json", checked(p2)),
    Route("/dists/{alias}/{vendor}/{package}/{file}", checked(dist)),
    Route("/packages.json", checked(packages_json)),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics_text),
    Route("/private/dists/{vendor}/{package}/{file}", checked(private_routes.dist, "read")),
    Route(
        "/packages/upload/{vendor}/{package}/{version}",
        checked(private_routes.upload, "publish"),
        methods=["PUT", "POST"],
    ),
    Route(
        "/packages/upload/{vendor}/{package}",
        checked(private_routes.upload, "publish"),
        methods=["PUT", "POST"],
    ),
    Route(
        "/packages/{vendor}/{package}/{version}",
        checked(private_routes.unpublish, "admin"),
        methods=["DELETE"],
    ),
    Route("/api/security-advisories/", checked(security_advisories), methods=["GET", "POST"]),
    Route(
        "/{alias}/api/security-advisories/", checked(security_advisories), methods=["GET", "POST"]
    ),
    Route("/{alias}/packages.json", checked(packages_json)),
    Route("/{alias}/p2/{vendor}/{file}.json", checked(p2)),
]
