"""Worker child processes of `conjure serve`, and the bind check, with light imports: `conjure serve` starts
the workers before it imports the web app, so the workers' imports and model loading overlap the server's own
start-up instead of following it."""

from __future__ import annotations

import ipaddress
import logging
import signal
import subprocess
import sys
import threading
import time

from conjure.config import Settings

log = logging.getLogger("conjure.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse a bind beyond loopback without auth, or with the public development secret (ValueError)."""
    if not is_loopback(host) and not settings.require_auth:
        raise ValueError(f"refusing to listen on {host} without authentication: set CONJURE_REQUIRE_AUTH=true "
                         "(and create keys with `conjure keys create`), or bind 127.0.0.1")
    if not is_loopback(host) and not settings.secret:
        raise ValueError(f"refusing to listen on {host} with the public development secret (anyone could sign "
                         "file URLs): set CONJURE_SECRET to at least 32 random characters, e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")


class WorkerProcesses:
    """Worker child processes (`python -m conjure.cli worker`), restarted when one exits unexpectedly."""

    def __init__(self, count: int, env: dict | None = None):
        self.count, self.env = count, env
        self.procs: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "conjure.cli", "worker"], env=self.env)

    def start(self) -> None:
        """Start the children (once: a second call does nothing)."""
        if self.procs or self._thread.is_alive():
            return
        self.procs = [self._spawn() for _ in range(self.count)]
        if self.count:
            self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            for i, p in enumerate(self.procs):
                if p.poll() is not None and not self._stop.is_set():
                    log.warning("worker exited: restarting", extra={"pid": p.pid, "rc": p.returncode})
                    self.procs[i] = self._spawn()

    def stop(self, grace_s: float = 20.0) -> None:
        self._stop.set()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
