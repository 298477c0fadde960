"""The access log's batched writer: whole lines, each write within PIPE_BUF."""

from __future__ import annotations

import asyncio
import json
import os
import select
from pathlib import Path

from runtime.app.logs import _BatchedLines, _encode, _now


def test_batched_lines_reach_the_fd_after_one_loop_turn_as_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lines = _BatchedLines(fd)
    writes: list[int] = []
    real_write = os.write

    def counting_write(target: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        return real_write(target, data)

    async def burst() -> bool:
        for i in range(100):
            lines.add(_encode({"n": i, "pad": "x" * 100}))
        before = log.stat().st_size
        await asyncio.sleep(0)  # one loop turn: the flush runs
        return before == 0

    # A loop of its own, not asyncio.run(): that would unset the thread's current loop,
    # which the Pulumi mock tests share for the whole session.
    loop = asyncio.new_event_loop()
    os.write = counting_write  # type: ignore[assignment]
    try:
        assert loop.run_until_complete(burst())  # nothing was written during the burst itself
    finally:
        os.write = real_write
        os.close(fd)
        loop.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["n"] for r in records] == list(range(100))
    assert 1 < len(writes) < 100  # batched, but split to stay atomic on a pipe
    assert max(writes) <= select.PIPE_BUF


def test_without_a_loop_a_line_is_written_at_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _BatchedLines(fd).add(b'{"a":1}\n')
    finally:
        os.close(fd)
    assert log.read_text() == '{"a":1}\n'


def test_timestamps_are_iso_utc_with_milliseconds() -> None:
    stamp = _now()
    assert len(stamp) == len("2026-11-27T17:42:32.566Z") and stamp.endswith("Z")
    assert stamp[10] == "T" and stamp[19] == "."
