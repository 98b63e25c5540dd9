"""A real ``redis-server`` for the tests: on a Unix socket in a temporary folder, no persistence.

There is no skipping: without the binary the tests fail and say to install Debian's
``redis-server``. Every wait is bounded: the start (until the socket answers PING), the stop
(SIGTERM, then SIGKILL) and a kill.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "raw", "redis_binary", "server"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def redis_binary() -> str:
    """The ``redis-server`` executable; fails the test loudly when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail(
            "redis-server is not installed: the limit-store tests run against a real one and "
            "are never skipped. Install it with: apt-get install -y redis-server",
            pytrace=False,
        )
    return found


class RedisServer:
    """One ``redis-server`` process; :meth:`start` again after :meth:`kill` reuses the socket."""

    def __init__(self) -> None:
        # A short folder: a Unix socket's path must fit in about 100 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="b24redis-"))
        self.socket = self.folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING on its socket."""
        command = [
            redis_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read() if self._process.stderr else b""
                pytest.fail(f"redis-server exited at start: {error.decode(errors='replace')}")
            if self.answers():
                return
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"redis-server did not answer on {self.socket} within {START_TIMEOUT} s")

    def answers(self) -> bool:
        """Whether the server answers PING now."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(self.socket))
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def kill(self) -> None:
        """SIGKILL: the server goes away at once, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=STOP_TIMEOUT)
        self._close_pipes()
        self.socket.unlink(missing_ok=True)

    def stop(self) -> None:
        """SIGTERM, bounded; SIGKILL if it does not go; then remove the folder."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_TIMEOUT)
        self._close_pipes()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close_pipes(self) -> None:
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()


# The fixtures the store tests share (tests/limits, tests/auth): their conftest imports them.


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One real redis-server for the module; ``raw`` flushes it before each test."""
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server, to look at and spoil what the store wrote."""
    client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2.0)
    client.flushall()
    yield client
    client.close()
