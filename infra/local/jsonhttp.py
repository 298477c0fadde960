"""A tiny threaded JSON-over-HTTP server on 127.0.0.1 for the local stand-ins."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (path, request headers) -> (status, JSON body)
Route = Callable[[str, Mapping[str, str]], tuple[int, Any]]


class JsonServer:
    def __init__(self, route: Route, port: int = 0) -> None:
        self._route = route
        self.port = port
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        route = self._route

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = route(self.path, dict(self.headers.items()))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # these stand-ins are polled by SDKs; a line per request is noise

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
