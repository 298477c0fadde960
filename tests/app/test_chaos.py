"""Chaos under load: two `satchel serve` processes answer a few hundred requests a second
(warm and cold metadata and dists) while SeaweedFS is SIGKILLed and restarted, the upstream
stops and returns, the token file rotates under 6 s STS sessions, and the dist cache's disk
fills up. Every answer is checked: no 500, warm documents always 200, failures fast, every
dist byte right, recovery quick, /readyz following the storage."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.composer_repo import ComposerRepo, standard_repo
from infra.local.target import LocalTarget
from runtime.app.health import REMEMBER_SECONDS
from runtime.settings import ADVISORY_VAR, MANDATORY_VAR
from tests.app.processes import ServeProcess
from tests.conftest import running_target

WARM = ("acme/util", "acme/log", "acme/app-lib")
COLD = 400  # packages only ever asked for during the chaos
CLIENTS = 8
FAIL_FAST = 5.0  # seconds: upstream timeout 2 s, storage failures are refusals


@pytest.fixture(scope="module")
def chaos_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    options = {"token_duration": "6s", "token_lifetime": 5}
    with running_target(tmp_path_factory, "chaos", **options) as local:
        yield local


@dataclass
class Answer:
    at: float
    kind: str  # warm-p2, warm-dist, cold-p2, cold-dist, readyz
    status: int
    seconds: float
    right: bool = True  # the body is what it must be


class Load:
    def __init__(self, ports: list[int], repo: ComposerRepo, dists: dict[str, str]) -> None:
        self.ports, self.repo, self.dists = ports, repo, dists  # dists: path -> sha1
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self._cold = itertools.count()
        self._lock = threading.Lock()

    def get(self, port: int, path: str) -> tuple[int, bytes, float]:
        began = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read(), time.monotonic() - began
        finally:
            connection.close()

    def client(self, seed: int) -> None:
        chance = random.Random(seed)
        while not self.stop.is_set():
            port = chance.choice(self.ports)
            roll = chance.random()
            if roll < 0.5:
                kind, path = "warm-p2", f"/p2/{chance.choice(WARM)}.json"
            elif roll < 0.75:
                kind, path = "warm-dist", chance.choice(list(self.dists))
            else:
                kind, path = "cold-p2", f"/p2/acme/cold{next(self._cold) % COLD}.json"
            status, body, seconds = self.get(port, path)
            answer = Answer(time.monotonic(), kind, status, seconds)
            if kind == "warm-dist" and status == 200:
                answer.right = hashlib.sha1(body).hexdigest() == self.dists[path]
            if kind == "cold-p2" and status == 200:
                answer = self._cold_dist(port, body, answer)
            with self._lock:
                self.answers.append(answer)

    def _cold_dist(self, port: int, body: bytes, p2: Answer) -> Answer:
        """The cold package's dist too: fetched through the mirror, checked byte for byte."""
        (_, versions), *_ = json.loads(body)["packages"].items()
        dist = versions[0]["dist"]
        path = dist["url"].split(f":{port}", 1)[1]
        status, data, seconds = self.get(port, path)
        with self._lock:
            self.answers.append(p2)
        right = status != 200 or hashlib.sha1(data).hexdigest() == dist["shasum"]
        return Answer(time.monotonic(), "cold-dist", status, seconds, right)

    def kubelet(self, target: LocalTarget) -> None:
        """Rotates the projected token well before it expires (5 s), as kubelet does."""
        while not self.stop.wait(2.0):
            target.rotate_token()

    def readiness(self, port: int) -> None:
        while not self.stop.is_set():
            status, _, seconds = self.get(port, "/readyz")
            with self._lock:
                self.answers.append(Answer(time.monotonic(), "readyz", status, seconds))
            time.sleep(0.1)


def _first_ok_after(answers: list[Answer], kind: str, moment: float) -> float | None:
    later = [a.at for a in answers if a.kind == kind and a.at >= moment and a.status == 200]
    return min(later) - moment if later else None


def test_two_processes_under_load_survive_every_dependency_failing(
    chaos_target: LocalTarget, mount_tmpfs: Any, tmp_path: Path
) -> None:
    repo = standard_repo()
    for i in range(COLD):
        repo.add(f"acme/cold{i}", "1.0.0")
    repo.start()
    disk = mount_tmpfs("chaos-dists", size="24m")
    chaos_target.rotate_token()
    env = {
        **chaos_target.pod_env(),
        ADVISORY_VAR: "2",
        MANDATORY_VAR: "1",
        "SATCHEL_UPSTREAMS": f"up={repo.url}",
        "SATCHEL_UPSTREAM_RETRIES": "0",
        "SATCHEL_UPSTREAM_TIMEOUT": "2",
        "SATCHEL_MIRROR_DIST_CACHE_SIZE": "16M",
    }
    processes = [
        ServeProcess(
            {
                **env,
                "MIRROR_METADATA_CACHE_DIR": str(tmp_path / name / "meta"),
                "MIRROR_DIST_CACHE_DIR": str(disk / name),
            },
            tmp_path / "logs",
            name,
        )
        for name in ("a", "b")
    ]
    events: dict[str, float] = {}
    load = Load([p.port for p in processes], repo, {})
    # Rotating from the start, as kubelet does: two processes starting on a loaded machine
    # can take longer than one token's 5 s.
    threads = [threading.Thread(target=load.kubelet, args=(chaos_target,))]
    threads[0].start()
    try:
        for process in processes:
            process.start()
        for process in processes:  # warm: documents in every hot cache, dists in every cache
            for name in WARM:
                status, body, _ = load.get(process.port, f"/p2/{name}.json")
                assert status == 200
                for version in json.loads(body)["packages"][name]:
                    path = version["dist"]["url"].split(f":{process.port}", 1)[1]
                    assert load.get(process.port, path)[0] == 200
                    load.dists[path] = version["dist"]["shasum"]
        clients = [threading.Thread(target=load.client, args=(seed,)) for seed in range(CLIENTS)]
        clients.append(threading.Thread(target=load.readiness, args=(processes[0].port,)))
        for thread in clients:
            thread.start()
        threads += clients
        began = time.monotonic()

        def at(second: float, name: str) -> None:
            time.sleep(max(0.0, began + second - time.monotonic()))
            events[name] = time.monotonic()

        at(2, "storage killed")
        chaos_target.stop_storage(crash=True)
        at(6, "storage restarting")
        chaos_target.start_storage()
        events["storage back"] = time.monotonic()  # SeaweedFS answers again
        at(9, "upstream stopped")
        repo.stop()
        at(12, "upstream back")
        repo.start()
        at(16, "disk full")  # (the token rotates every 2 s throughout; sessions last 6 s)
        filler = disk / "filler"
        with filler.open("wb") as out, pytest.raises(OSError):
            while True:
                out.write(b"\0" * (1 << 20))
        at(19, "disk freed")
        filler.unlink()
        at(23, "end")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)
        for process in processes:
            process.stop()
        repo.stop()
        if not chaos_target.seaweed or not chaos_target.seaweed.process:
            chaos_target.start_storage()

    answers = load.answers
    duration = events["end"] - began
    by_status: dict[str, int] = {}
    for answer in answers:
        key = f"{answer.kind} {answer.status}"
        by_status[key] = by_status.get(key, 0) + 1
    worst = max(a.seconds for a in answers)
    storage_recovery = _first_ok_after(answers, "cold-p2", events["storage back"])
    upstream_recovery = _first_ok_after(answers, "cold-p2", events["upstream back"])
    ready_again = _first_ok_after(answers, "readyz", events["storage back"])
    print(
        f"\nchaos: {len(answers)} answers in {duration:.1f}s ({len(answers) / duration:.0f}/s); "
        f"{dict(sorted(by_status.items()))}; worst latency {worst:.2f}s; recovery after "
        f"storage {storage_recovery}s, upstream {upstream_recovery}s, readyz {ready_again}s"
    )
    assert len(answers) / duration > 100
    assert not [a for a in answers if a.status >= 500 and a.status not in (502, 503)]
    assert not [a for a in answers if not a.right], "a wrong byte was served"
    assert {a.status for a in answers if a.kind in ("warm-p2", "warm-dist")} == {200}
    assert all(a.seconds < FAIL_FAST for a in answers if a.status != 200)
    # Asked once readiness's memory (REMEMBER_SECONDS) of the storage being up had passed:
    # A probe may take up to its timeout (3 s), so the window runs until SeaweedFS answers
    # again; only probes that started while it was still down must all say 503.
    killed, restarting = events["storage killed"], events["storage restarting"]
    down = [
        a
        for a in answers
        if a.kind == "readyz"
        and killed + REMEMBER_SECONDS + 0.5 < a.at - a.seconds < events["storage back"]
    ]
    assert 503 in {a.status for a in down}  # readiness tracks the storage
    assert {a.status for a in down if a.at - a.seconds < restarting} <= {503}
    assert storage_recovery is not None and storage_recovery < 5
    assert ready_again is not None and ready_again < 5
    assert upstream_recovery is not None and upstream_recovery < 12
