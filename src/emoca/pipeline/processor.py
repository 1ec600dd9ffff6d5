"""The contract between the batch runner and what it runs (EMOCA, or the open fit).

A processor computes, the runner and the writers do the rest:

- :meth:`FaceProcessor.detect` finds and crops every face of a photo (DECA's crop);
- :meth:`FaceProcessor.process` turns a batch of crops into one record per face, in one
  pass on the processor's device; records hold plain CPU arrays, ready to write;
- :meth:`FaceProcessor.write_face` writes one record's files (and only writes);
- the video hooks (:meth:`start_track`... :meth:`draw_frames`) let
  :mod:`emoca.pipeline.video` drive both processors through one frame loop.

:class:`emoca.pipeline.runner.Runner` owns inputs, output names, resume, per-input errors,
the summary and progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from emoca.detect.crop import FaceCrop
from emoca.pipeline.timing import StageTimer

__all__ = ["FaceJob", "FaceProcessor", "ImageSource", "TrackArrays"]

#: the original photo, or a function that re-reads it (big batches keep only paths)
ImageSource = np.ndarray | Callable[[], np.ndarray] | None
#: one video track: per-frame arrays with a leading T axis (``frame``, ``time``, ...): a
#: dict, or a :class:`~emoca.pipeline.spill.RowSpill` whose chunks are on disk (read those
#: with :func:`~emoca.pipeline.spill.track_chunks`, not whole)
TrackArrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class FaceJob:
    """A cropped face waiting for the processor, with where it came from."""

    crop: FaceCrop
    source: str
    face_index: int
    image: ImageSource = None
    frame: int | None = None
    time: float | None = None
    track_id: int | None = None

    def photo(self) -> np.ndarray | None:
        src = self.image
        return src() if callable(src) else src


@runtime_checkable
class FaceProcessor(Protocol):
    """What :class:`~emoca.pipeline.runner.Runner` drives (see the module doc)."""

    command: str
    batch_size: int
    timer: StageTimer

    def settings(self) -> dict[str, Any]:
        """JSON-able settings that change the outputs (recorded in ``done.json``)."""

    def detect(self, image: np.ndarray, name: str | None = None) -> list[FaceCrop]:
        """Every face of an (H, W, 3) uint8 image, left to right, cropped."""

    def process(self, jobs: Sequence[FaceJob]) -> list[Any]:
        """One record per job (CPU arrays), computed in batches on the device."""

    def write_face(self, face_dir: Path, record: Any) -> list[str]:
        """Write one record's files into ``face_dir``; returns their names."""

    # video: one track at a time is fed frame by frame (see emoca.pipeline.video)
    def start_video(self, scratch: Path | None = None) -> Any:
        """Fresh per-video state; ``scratch``: a folder for temporary files (the video's
        output folder), whose ``.*.spill.part`` files the caller removes at the end."""

    def add_face(self, state: Any, job: FaceJob) -> None:
        """A tracked face of one frame (``job.track_id``, ``job.frame`` set)."""

    def finish_video(self, state: Any) -> dict[int, TrackArrays]:
        """Per track id: per-frame arrays (``frame``, ``time`` and the results)."""

    def write_track(self, track_dir: Path, arrays: TrackArrays) -> list[str]:
        """Write one track's files; returns their names."""

    def draw_frames(self, frames: Sequence[tuple[np.ndarray, list[tuple[TrackArrays, int]]]]
                    ) -> list[np.ndarray]:
        """Each frame with its tracked faces (track arrays, row) drawn in."""
