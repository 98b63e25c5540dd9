"""The other Python Bitrix24 clients, pinned, each in a virtual environment of its own.

A peer is installed once into ``$B24BATCH_BENCH_CACHE`` (default ``~/.cache/b24batch-bench``),
outside the repository, with the same interpreter that runs the harness, and reused while its
pins are unchanged. A peer that cannot be installed or cannot be pointed at the loopback server
is listed with the reason, never patched into shape.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import attrs

__all__ = ["PEERS", "Peer", "cache_dir", "ensure_venv"]


@attrs.frozen(kw_only=True)
class Peer:
    """One peer client.

    Attributes:
        name: The client name ``clients.py`` knows it by.
        dist: Its PyPI distribution name.
        version: The pinned version.
        pins: Pins for its dependencies (installed in the same ``pip install``).
        batch_call: How the benchmark calls its batch, for the doc.
        throttles: Whether it has a client-side request-rate limiter.
        unmeasured: Why it is not measured, or None when it is.
    """

    name: str
    dist: str
    version: str
    pins: tuple[str, ...] = ()
    batch_call: str
    throttles: bool
    unmeasured: str | None = None

    @property
    def requirement(self) -> str:
        """``dist==version``."""
        return f"{self.dist}=={self.version}"


PEERS: tuple[Peer, ...] = (
    Peer(
        name="b24pysdk",
        dist="b24pysdk",
        version="1.3.2",
        batch_call="Client.call_batch(...) (classic batch.json)",
        throttles=False,
        unmeasured=(
            "hard-codes https:// for every call (api/callers/call_method.py builds "
            'f"https://{domain}/rest"), so it cannot reach the plain-http loopback server'
        ),
    ),
    Peer(
        name="fast_bitrix24",
        dist="fast-bitrix24",
        version="1.8.14",
        pins=("aiohttp==3.14.5",),
        batch_call='Bitrix(webhook).call_batch({"halt": 0, "cmd": {...}})',
        throttles=True,
    ),
    Peer(
        name="bitrix24-api-client",
        dist="bitrix24-api-client",
        version="0.1.2",
        pins=("requests==2.34.2", "urllib3==2.8.0"),
        batch_call='Bitrix24Client(...).call_method("batch", {"halt": 0, "cmd": {...}})',
        throttles=False,
    ),
    Peer(
        name="pybitrix24",
        dist="pybitrix24",
        version="1.1.0",
        batch_call="Bitrix24(hostname).call_batch_webhook(code, calls)",
        throttles=False,
        unmeasured=(
            "hard-codes https:// (its URL templates start 'https://{hostname}/'), so it cannot "
            "reach the plain-http loopback server"
        ),
    ),
)


def cache_dir() -> Path:
    """Where the peers' virtual environments live (outside the repository)."""
    configured = os.environ.get("B24BATCH_BENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "b24batch-bench"


def ensure_venv(peer: Peer, log: bool = True) -> Path:
    """Return the Python of ``peer``'s virtual environment, creating it on first use.

    Raises:
        RuntimeError: The environment could not be created or the peer not installed; the
            message carries pip's last lines.
    """
    requirements = [peer.requirement, *peer.pins]
    tag = hashlib.sha256(" ".join([sys.version, *requirements]).encode()).hexdigest()[:10]
    home = cache_dir() / f"{peer.name}-{peer.version}-{tag}"
    python = home / "bin" / "python"
    marker = home / ".installed"
    if marker.exists() and python.exists():
        return python
    if log:
        print(f"installing {' '.join(requirements)} into {home} ...", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(home)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"{' '.join(step[:4])} failed: {tail}")
    marker.write_text(" ".join(requirements) + "\n")
    return python
