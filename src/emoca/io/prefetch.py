"""Overlap producing items (video decode) with consuming them (detection, networks).

:func:`prefetch` runs an iterator in a background thread, ``depth`` items ahead. PyAV and
numpy release the GIL while decoding and converting frames, so a video's next frames are
decoded while the current batch is in the networks; memory stays bounded by ``depth``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead in a background thread.

    An exception in the producer is raised here, at the item where it happened. Closing
    the generator early (``break``, an error downstream) stops the producer.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Raised(e))

    thread = threading.Thread(target=work, name="emoca-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Raised):
                raise x.error
            yield x  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
