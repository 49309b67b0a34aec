"""The one retry schedule: linear for reconnects, exponential for deliveries and uploads.

    backoff = Backoff.linear(step=5, cap=30, max_attempts=5)   # 5, 10, 15, 20, 25, then None
    backoff = Backoff.exponential(base=0.5, cap=30)             # 0.5, 1, 2, 4 ... 30, 30 ...

`next_delay()` counts an attempt and returns how long to wait before it, or None once
`max_attempts` are used up (never, when it is None). `reset()` after a success. Pure: it
reads no clock and sleeps nowhere, so callers test it with zero delays.
"""
from __future__ import annotations

from collections.abc import Callable


class Backoff:
    def __init__(self, delay_of: Callable[[int], float], cap: float, max_attempts: int | None = None):
        """`delay_of(n)` is the wait before attempt n (1, 2, ...), before the cap."""
        if cap < 0 or (max_attempts is not None and max_attempts < 0):
            raise ValueError("cap and max_attempts must not be negative")
        self._delay_of = delay_of
        self.cap = cap
        self.max_attempts = max_attempts
        self.attempts = 0

    @classmethod
    def linear(cls, step: float, cap: float, max_attempts: int | None = None) -> Backoff:
        """Attempt n waits n x step, capped (the contract's reconnect policy)."""
        return cls(lambda n: n * step, cap, max_attempts)

    @classmethod
    def exponential(cls, base: float, cap: float, max_attempts: int | None = None) -> Backoff:
        """Attempt n waits base x 2^(n-1), capped."""
        return cls(lambda n: base * 2.0 ** min(n - 1, 64), cap, max_attempts)

    @property
    def exhausted(self) -> bool:
        return self.max_attempts is not None and self.attempts >= self.max_attempts

    def next_delay(self) -> float | None:
        if self.exhausted:
            return None
        self.attempts += 1
        return min(self._delay_of(self.attempts), self.cap)

    def reset(self) -> None:
        self.attempts = 0
