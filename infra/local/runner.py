"""Run the local target in the foreground (`satchel local up`) and stop it (`satchel local down`).

Like kubelet, the runner rotates the pod's token at 80% of its lifetime, so a process that
sources `pod.env` keeps working for as long as the target runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from infra.config import load_stack_config
from infra.local.target import LocalTarget

PID_FILE = "target.pid"
ROTATE_AT = 0.8


def run_foreground(
    stack: str,
    config_root: Path,
    state_dir: Path,
    announce: Callable[[LocalTarget, contextlib.ExitStack], None],
    stop: threading.Event | None = None,
) -> None:
    """Bring the target up, call `announce` (which may start more processes on the exit
    stack), rotate tokens until SIGINT/SIGTERM, then stop all of it, the target last."""
    target = LocalTarget(load_stack_config(stack, config_root), state_dir, stack=stack)
    stop = stop or threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    pid_file = state_dir / PID_FILE
    extras = contextlib.ExitStack()
    try:
        target.up()
        pid_file.write_text(str(os.getpid()))
        announce(target, extras)
        while not stop.wait(target.token_lifetime * ROTATE_AT):
            target.rotate_token()
    finally:
        extras.close()
        target.down()
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_running(state_dir: Path, timeout: float = 60) -> bool:
    """SIGTERM the runner recorded in `state_dir` and wait for it; False if none was running."""
    pid_file = state_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_file.exists():
        time.sleep(0.1)
    return True
