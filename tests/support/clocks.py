"""Injectable time for the tests: clocks that move only when the client sleeps."""

from __future__ import annotations

import time


class FakeTime:
    """Monotonic and wall clocks that move only when the client sleeps."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = time.time()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.mono

    def wall_clock(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
        self.wall += seconds
