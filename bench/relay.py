"""A TCP relay in front of the bucket endpoint that counts what the app sends to it.

GET/HEAD/PUT request lines are counted from the client's byte stream: a warm run that
sends no byte at all sent no request, whatever the protocol details. With `pace`, what the
bucket sends back reaches the client at that many bytes a second per connection: a bucket
across a network, where one GET stream is what limits a read.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|HEAD|PUT|POST|DELETE) /")


@dataclass
class CountingRelay:
    upstream_port: int
    port: int = 0
    pace: float | None = None  # bytes/s per connection, bucket to client
    bytes_sent: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CountingRelay:
        server = socket.create_server(("127.0.0.1", self.port))
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.requests, self.bytes_sent

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        paced = None if counted else self.pace
        due = 0.0  # when the bytes relayed so far are due at the client, at the pace
        try:
            while data := source.recv(1 << 16):
                if counted:
                    with self._lock:
                        self.bytes_sent += len(data)
                        self.requests += len(_REQUEST_LINE.findall(data))
                elif paced is not None:
                    # A link saves no credit while idle: a gap is never made up by a burst.
                    now = time.monotonic()
                    due = max(due, now) + len(data) / paced
                    time.sleep(due - now)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
