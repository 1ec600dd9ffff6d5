"""What a batch run keeps on disk besides results: names, done-markers, the summary.

- :func:`unique_names`: one output folder name per input (the stem; ``stem_ext`` when two
  inputs share a stem; plus a short hash of the path when that still clashes), so
  ``a/x.png``, ``b/x.png`` and ``x.jpg`` never write into one folder.
- ``done.json`` (:func:`mark_done`, :func:`is_done`): written last in a face/video folder,
  it lists the files and the settings they were made with (command, model, mode, face
  model, fit steps...). A folder is done only when every listed file is there and the
  settings equal the current run's, so changing ``--face-model`` or ``--mode`` redoes it.
- :class:`RunSummary` -> ``summary.json``: written at the end, also after Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoca.io.atomic import atomic_write

__all__ = ["RunSummary", "is_done", "mark_done", "read_json", "remove_stale_temp_files",
           "unique_names", "write_json"]


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_done(folder: Path, settings: dict[str, Any]) -> bool:
    """``folder/done.json`` exists, records exactly ``settings`` and lists only files that
    are all there."""
    done = read_json(Path(folder) / "done.json")
    if not isinstance(done, dict) or done.get("settings") != json.loads(json.dumps(settings)):
        return False
    files = done.get("files")
    return isinstance(files, list) and all((Path(folder) / f).is_file() for f in files)


def mark_done(folder: Path, files: Iterable[str], settings: dict[str, Any]) -> None:
    """Write ``done.json`` (last, after every file of the folder)."""
    write_json(Path(folder) / "done.json", {"files": sorted(set(files)), "settings": settings})


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete this package's temporary files (``.NAME.*.part``, ``.STEM.*.partEXT``) that a
    killed run left in ``folder`` (not recursive); returns what was removed."""
    removed = []
    if Path(folder).is_dir():
        for p in Path(folder).iterdir():
            if p.is_file() and p.name.startswith(".") and ".part" in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def unique_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Output folder name per input: the stem; on clashes ``stem_ext``; then + path hash.

    Case-insensitive, so the names are safe on macOS/Windows file systems too.
    """
    names: dict[Path, str] = {}
    by_stem: dict[str, list[Path]] = {}
    for p in paths:
        by_stem.setdefault(p.stem.lower(), []).append(p)
    for group in by_stem.values():
        if len(group) == 1:
            names[group[0]] = group[0].stem
            continue
        with_ext = {p: f"{p.stem}_{p.suffix.lstrip('.')}" for p in group}
        counts: dict[str, int] = {}
        for n in with_ext.values():
            counts[n.lower()] = counts.get(n.lower(), 0) + 1
        for p, n in with_ext.items():
            if counts[n.lower()] > 1:
                digest = hashlib.sha1(os.fsencode(os.path.abspath(p))).hexdigest()[:8]
                n = f"{n}_{digest}"
            names[p] = n
    return names


@dataclass
class RunSummary:
    """What a run did (``summary.json``); shared by ``emoca reconstruct`` and ``emoca fit``.

    Attributes:
        command: ``"reconstruct"`` or ``"fit"``.
        written: face (or track) folders written by this run.
        skipped: folders already done by an earlier run with the same settings.
        no_face: inputs where the detector found no face.
        failed: input -> one-line reason (unreadable, not an image, failed to write...).
        videos: per video: tracks with their frame counts, skipped frames, frames read.
        problems: input -> non-fatal problems (undecodable frames, audio not copied).
        seconds: wall seconds per stage.
        interrupted: the run was stopped (Ctrl-C) before it finished.
    """

    command: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    table_rows: int | None = None  # faces written to Parquet (dataset engine)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def fail(self, source: str | os.PathLike, why: str) -> None:
        self.failed[str(source)] = " ".join(str(why).split())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "command": self.command, "settings": self.settings,
                "faces_written": len(self.written), "faces_skipped": len(self.skipped),
                "written": self.written, "skipped": self.skipped, "no_face": self.no_face,
                "failed": self.failed, "videos": self.videos, "problems": self.problems,
                "seconds": self.seconds, "interrupted": self.interrupted,
                **({} if self.table_rows is None else {"table_rows": self.table_rows})}
