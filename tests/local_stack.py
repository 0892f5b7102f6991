"""A throw-away local Prefect stack: `nightrec server` on a free loopback port and
`nightrec serve` beside it, as subprocesses with their own Prefect home.

Used by the server tests, the deployment backfill benchmark and the UI screenshot script; a
team running nightrec for real starts the two commands itself (README, Operations).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]  # tests/ is one level below the repository


@dataclass
class LocalStack:
    api_url: str
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """`nightrec ARGS` in its own process group, output to `logs/NAME.log`."""
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            cwd=REPO,
            env=self.env,
            stdout=(self.logs / f"{name}.log").open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal the process group of `name` (its flow-run subprocesses included)."""
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def serve(self) -> None:
        self.start("serve", "serve")
        wait_until(
            lambda: self.api("GET", "/deployments/name/nightly/nightly").is_success,
            120,
            "the nightly deployment",
        )

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; 503 (SQLite busy) is retried as Prefect's own client does."""
        for _ in range(20):
            response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
            if response.status_code != 503:
                break
            time.sleep(0.5)
        return response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def local_stack(root: Path, nightrec_env: dict[str, str]) -> Iterator[LocalStack]:
    """Start a server (and `serve`) under `root`; stop both on exit.

    `nightrec_env` holds the NIGHTREC_* settings the served runs use.
    """
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "NIGHTREC_OPS__SERVER_PORT": str(port),
        **nightrec_env,
    }
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(api_url, env, logs)
    try:
        stack.start("server", "server")
        wait_until(lambda: stack.api("GET", "/health").is_success, 120, "the Prefect API")
        stack.serve()
        yield stack
    finally:
        for name in ("serve", "server"):
            if name in stack.processes:
                stack.kill(name)
