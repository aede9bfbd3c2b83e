"""Start `lookalike serve` as a child process and wait until it is ready.

For callers that need a real server beside them: the demo, the service benchmark and the tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lookalike.errors import LookalikeError


class ServerStartError(LookalikeError, RuntimeError):
    """The server exited or did not become ready in time."""


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free on 127.0.0.1, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred or 0))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    bundle: Path,
    index: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 120,
    quiet: bool = False,
) -> tuple[subprocess.Popen, str]:
    """Launch the server on 127.0.0.1; return the process and its base URL once /readyz says 200."""
    port = free_port(port)
    output = subprocess.PIPE if quiet else None
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike.cli",
            "serve",
            "--bundle",
            str(bundle),
            "--index",
            str(index),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if quiet else None,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = process.stdout.read().decode()[-2000:] if quiet else "see its output above"
            raise ServerStartError(f"the server exited during start-up: {log}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise ServerStartError(f"the server did not become ready within {timeout_s:.0f}s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
