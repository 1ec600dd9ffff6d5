"""Background decoding (:func:`emoca.io.prefetch.prefetch`): order, errors, bounded lead,
and a stopped producer when the consumer leaves early."""

from __future__ import annotations

import threading
import time

import pytest

from emoca.io.prefetch import prefetch


def test_items_come_in_order_and_all() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch([], depth=1)) == []


def test_a_producer_error_is_raised_at_its_item() -> None:
    def items():
        yield 1
        yield 2
        raise OSError("frame 3 is damaged")

    got = []
    with pytest.raises(OSError, match="frame 3"):
        for x in prefetch(items(), depth=2):
            got.append(x)
    assert got == [1, 2]


def test_the_producer_runs_at_most_depth_ahead_and_stops_on_close() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    before = threading.active_count()
    gen = prefetch(items(), depth=4)
    assert next(gen) == 0
    time.sleep(0.3)
    # one handed out, depth queued, one more waiting to be queued
    assert len(produced) <= 1 + 4 + 1
    gen.close()
    assert threading.active_count() == before
    assert len(produced) < 1000


def test_mmap_threshold_fix_is_idempotent() -> None:
    import sys

    from emoca.io.malloc import fix_mmap_threshold

    first = fix_mmap_threshold()
    assert fix_mmap_threshold() is first
    if sys.platform.startswith("linux"):
        import platform

        assert first == (platform.libc_ver()[0] == "glibc")
