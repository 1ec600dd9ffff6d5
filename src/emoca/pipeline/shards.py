"""Deterministic partition of a batch's inputs into N shards (Slurm / HTCondor arrays).

Every job of an array expands the same arguments and keeps the inputs whose *shard key*
hashes to its index: ``sha1(key) mod N == i``. The key is the input's path relative to the
common folder of all inputs (POSIX separators, case kept), so a dataset mounted at
``/mnt/a/data`` on one node and ``/scratch/data`` on another gives the same partition, and
adding files to the dataset never moves the files already assigned (unlike a round-robin
over the sorted list). The shards are disjoint and together cover every input; balance is
statistical (a binomial spread around ``len / N``).

Everything a shard writes lives in the usual per-input folders, so shards running into one
output folder never touch each other's files; only the summary is per shard
(``summary.shard-I-of-N.json``). :func:`emoca.pipeline.table.merge_outputs` (``emoca
merge-shards OUT``) then writes one table and one summary, equal to a single run's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from emoca.errors import UsageError

__all__ = ["Shard", "parse_shard", "shard_keys", "shard_of"]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """File-name part: ``shard-0003-of-0128``."""
        return f"shard-{self.index:04d}-of-{self.count:04d}"

    def keeps(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


def parse_shard(text: str | None) -> Shard | None:
    """``"3/128"`` -> ``Shard(3, 128)``; None -> None; anything else a one-line UsageError.

    Slurm's ``$SLURM_ARRAY_TASK_ID`` is 0-based when the array is ``--array=0-127``.
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise UsageError(f"--shard expects I/N (e.g. 0/8), got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise UsageError(f"--shard {text}: need 0 <= I < N and N >= 1")
    return Shard(index, count)


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) of one key: the first 8 bytes of its SHA-1, modulo count."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_keys(paths: Sequence[Path]) -> dict[Path, str]:
    """Per input: its path relative to the inputs' common folder, POSIX style.

    One input alone is keyed by its file name. Keys are unique because the inputs are.
    """
    if not paths:
        return {}
    absolute = [os.path.abspath(p) for p in paths]
    if len(absolute) == 1:
        return {paths[0]: Path(absolute[0]).name}
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    return {p: PurePosixPath(*Path(os.path.relpath(a, root)).parts).as_posix()
            for p, a in zip(paths, absolute, strict=True)}
