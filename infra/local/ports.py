"""Free loopback ports. SeaweedFS also binds gRPC on port + 10000, so pairs are checked."""

from __future__ import annotations

import random
import socket

GRPC_OFFSET = 10000


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pairs(count: int, *, low: int = 10000, high: int = 22699) -> list[int]:
    """`count` distinct ports p with p and p + 10000 both free on 127.0.0.1."""
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(2000):
        port = rng.randint(low, high)
        if port in chosen or port + GRPC_OFFSET in chosen:
            continue
        if _is_free(port) and _is_free(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError("no free port pairs on 127.0.0.1 between 10000 and 22699")
