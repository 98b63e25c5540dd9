"""Ctrl+C for the tests: a real SIGINT to the main thread, sent when a condition holds."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

BOUND = 10.0
"""Seconds any wait for the portal may take before a test gives up."""


def interrupt() -> None:
    """Ctrl+C, as the terminal sends it: SIGINT to the main thread."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Run ``then`` on a thread once ``condition()`` holds (polled, within ``BOUND``)."""

    def watch() -> None:
        deadline = time.monotonic() + BOUND
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.005)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
