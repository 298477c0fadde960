"""`satchel serve`: a lazy, stateless mirror of Composer v2 repositories.

Metadata and dists live in the bucket through the mirror store (runtime.mirror); each
worker keeps a hot cache of rendered metadata. Modules: config (variables), upstream
(HTTP client), composer (protocol), documents / dists (mirroring), routes, http, health,
logs, reuse (warm answers sent again for up to a second), main (the ASGI app) and server
(granian).
"""

from runtime.app.main import create_app

__all__ = ["create_app"]
