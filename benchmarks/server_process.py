"""A real `contextd serve` process on a free loopback port, for the crash test and the soak.

    >>> server = ServerProcess(Path("/tmp/data"), {"CONTEXTD_EMBEDDER": "hash"})  # doctest: +SKIP
    >>> ready_s = server.start()  # doctest: +SKIP
    >>> server.kill()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_S = 60.0
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server on `data_dir`; the same port across restarts, so clients keep their URL."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "CONTEXTD_API_KEY": "",
                    "HF_HUB_OFFLINE": "1", "CONTEXTD_LOG_LEVEL": "warning", **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "contextd.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if self.log_path:
            log.close()  # type: ignore[union-attr]

    def wait_ready(self, timeout: float = STARTUP_S) -> float:
        """Seconds from now until /readyz answers 200; RuntimeError if it exits or times out."""
        started = time.monotonic()
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() - started < timeout:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}")
                try:
                    if http.get(self.url + "/readyz").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"server not ready within {timeout} s")

    def start(self) -> float:
        """Spawn and wait: seconds from spawn to ready."""
        started = time.monotonic()
        self.spawn()
        self.wait_ready()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; its return code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        return int(self.process.returncode)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid
