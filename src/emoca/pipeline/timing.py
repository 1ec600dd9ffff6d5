"""Seconds and item counts per named stage, for summaries and benchmarks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["StageTimer"]


class StageTimer:
    """Accumulated wall seconds and item counts per stage (read, detect, crop, networks...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}

    @contextlib.contextmanager
    def stage(self, name: str, items: int = 1) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.items[name] = self.items.get(name, 0) + items

    def reset(self) -> None:
        self.seconds.clear()
        self.items.clear()

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}
