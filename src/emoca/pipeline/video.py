"""One video loop for every processor: stream, detect, track, crop; write; overlay.

Pass 1 decodes the video frame by frame, detects and crops every face, assigns stable
track ids (:class:`~emoca.pipeline.tracking.FaceTracker`, ids survive faces crossing) and
hands each tracked crop to the processor, which batches as it likes (EMOCA: across tracks;
the fit: per track, in chunks sharing one identity). Then each track's arrays are written
to ``dest/track_T/``. Pass 2 (``overlay=True``) decodes the video again and lets the
processor draw its faces into the frames, in batches; the input's audio is copied.

Memory stays bounded by the batch: a processor may spill its tracks' per-frame arrays to
chunk files in ``dest`` (:mod:`emoca.pipeline.spill`; EMOCA's does), which pass 2 reads
one chunk per track at a time; those files are removed when the video ends, also when it
fails. Undecodable frames are skipped and listed; a detector failure on a frame ends only
that frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emoca.pipeline.bookkeeping import remove_stale_temp_files
from emoca.pipeline.processor import FaceJob, FaceProcessor, TrackArrays
from emoca.pipeline.spill import remove_spill_files, track_chunks, track_length
from emoca.pipeline.tracking import FaceTracker

__all__ = ["VideoOptions", "iter_tracked_faces", "process_video"]


@dataclass(frozen=True)
class VideoOptions:
    """How videos are processed.

    Attributes:
        max_missed: frames a face may go undetected before its track ends.
        overlay: write ``overlay.mp4`` (input | drawn faces, or drawn over the input).
        overlay_style: ``"beside"`` or ``"over"``.
        prefetch: frames decoded ahead in a background thread (0: decode inline).
    """

    max_missed: int = 5
    overlay: bool = True
    overlay_style: str = "beside"
    prefetch: int = 8

    def __post_init__(self) -> None:
        if self.overlay_style not in ("beside", "over"):
            raise ValueError(f"overlay style must be 'beside' or 'over', "
                             f"got {self.overlay_style!r}")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {self.max_missed}")


def iter_tracked_faces(path: Path, detect: Callable[[np.ndarray, str], list[Any]],
                       options: VideoOptions, problems: list[str], reader: Any,
                       stage: Callable[[str], contextlib.AbstractContextManager[Any]],
                       on_frame: Callable[[], None] = lambda: None) -> Iterator[FaceJob]:
    """Decode ``reader`` frame by frame, detect, track: one :class:`FaceJob` per tracked
    face (``track_id``, ``frame``, ``time`` set; no photo kept). Streams: nothing but the
    tracker's state outlives a frame. Detector failures end only their frame and are
    listed in ``problems``."""
    from emoca.io.prefetch import prefetch

    tracker = FaceTracker(max_missed=options.max_missed)
    failed: list[int] = []
    # the next frames decode in a thread while this one is detected and encoded
    frames = prefetch(reader, depth=options.prefetch) if options.prefetch else iter(reader)
    try:
        while True:
            with stage("read"):
                frame = next(frames, None)
            if frame is None:
                break
            on_frame()
            try:
                # file-based detectors look frames up as "<video name>#<frame index>"
                crops = detect(frame.image, f"{path.name}#{frame.index}")
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the video
                failed.append(frame.index)
                if len(failed) <= 3:
                    problems.append(f"frame {frame.index}: face detection failed: {e}")
                crops = []
            if not crops:
                tracker.update(np.zeros((0, 4)))
                continue
            lmk = [c.detection.landmarks68() for c in crops]
            ids = tracker.update(np.stack([c.detection.box for c in crops]),
                                 np.stack(lmk) if all(x is not None for x in lmk) else None)
            for tid, k in ids:
                yield FaceJob(crops[k], str(path), k, frame=frame.index, time=frame.time,
                              track_id=tid)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # stops the decoding thread at once
            close()
    if len(failed) > 3:
        problems.append(f"face detection failed on {len(failed)} frames in all "
                        f"(frames {failed[0]}..{failed[-1]})")


def _track_faces(path: Path, dest: Path, proc: FaceProcessor, options: VideoOptions,
                 progress: bool, problems: list[str]) -> tuple[Any, Any, int]:
    """Pass 1: feed every tracked crop to the processor; returns (state, reader, frames)."""
    from emoca.io.video import VideoReader

    reader = VideoReader(path)
    state = proc.start_video(dest)
    count = {"frames": 0}
    bar = tqdm(desc=f"video {path.name}", unit="frame", total=reader.frame_count or None,
               disable=not progress)

    def on_frame() -> None:
        bar.update(1)
        count["frames"] += 1

    with contextlib.closing(bar):
        for job in iter_tracked_faces(path, lambda img, name: proc.detect(img, name=name),
                                      options, problems, reader, proc.timer.stage, on_frame):
            proc.add_face(state, job)
    return state, reader, count["frames"]


class _RowsByFrame:
    """The tracks' rows frame by frame, for frames asked in increasing order: a track is
    read chunk by chunk from its first frame on, so one chunk per track is in memory."""

    def __init__(self, tracks: dict[int, TrackArrays]) -> None:
        self._tracks = [arr for _, arr in sorted(tracks.items())]  # track order, as drawn
        self._first = [int(next(track_chunks(a, ["frame"]))["frame"][0])
                       if track_length(a) else None for a in self._tracks]
        self._rows: list[Iterator[tuple[int, TrackArrays, int]] | None] = [None] * len(
            self._tracks)
        self._head: list[tuple[int, TrackArrays, int] | None] = [None] * len(self._tracks)

    @staticmethod
    def _iter_rows(arr: TrackArrays) -> Iterator[tuple[int, TrackArrays, int]]:
        for chunk in track_chunks(arr):
            for i, fr in enumerate(chunk["frame"].tolist()):
                yield int(fr), chunk, i

    def at(self, index: int) -> list[tuple[TrackArrays, int]]:
        """``(arrays, row)`` of every track's face in frame ``index``, in track order."""
        items: list[tuple[TrackArrays, int]] = []
        for j, arr in enumerate(self._tracks):
            first = self._first[j]
            if first is None or index < first:
                continue
            rows = self._rows[j]
            if rows is None:
                rows = self._rows[j] = self._iter_rows(arr)
                self._head[j] = next(rows, None)
            head = self._head[j]
            while head is not None and head[0] < index:  # frames pass 2 could not decode
                head = next(rows, None)
            while head is not None and head[0] == index:
                items.append((head[1], head[2]))
                head = next(rows, None)
            self._head[j] = head
            if head is None:  # the track is over: drop its chunk
                self._first[j], self._rows[j] = None, None
        return items


def _write_overlay(path: Path, target: Path, proc: FaceProcessor,
                   tracks: dict[int, TrackArrays], style: str, progress: bool,
                   problems: list[str]) -> bool:
    """Pass 2: stream the video again, draw every tracked face, keep the audio."""
    from emoca.io.video import VideoError, VideoReader
    from emoca.io.video_write import VideoWriter

    by_frame = _RowsByFrame(tracks)
    reader = VideoReader(path)
    w, h = reader.size
    size = (2 * w, h) if style == "beside" else (w, h)
    last = {"index": -1, "image": None}

    def emit(writer: VideoWriter, index: int, img: np.ndarray) -> None:
        # repeat the previous picture for undecodable frames so sound and picture stay in step
        filler = last["image"] if last["image"] is not None else img
        for _ in range(max(index - last["index"] - 1, 0)):
            writer.write(filler)
        writer.write(img)
        last["index"], last["image"] = index, img

    buffer: list[tuple[int, np.ndarray, list[tuple[TrackArrays, int]]]] = []

    def flush(writer: VideoWriter) -> None:
        with proc.timer.stage("render", sum(len(b[2]) for b in buffer)):
            drawn = proc.draw_frames([(img, items) for _, img, items in buffer])
        for (index, img, _), comp in zip(buffer, drawn, strict=True):
            out = np.concatenate([img, comp], axis=1) if style == "beside" else comp
            emit(writer, index, np.ascontiguousarray(out))
        buffer.clear()

    try:
        with VideoWriter(target, reader.rate, size,
                         audio_from=path if reader.has_audio else None) as writer:
            for frame in tqdm(reader, desc="overlay", unit="frame", disable=not progress,
                              total=reader.frame_count or None):
                buffer.append((frame.index, frame.image, by_frame.at(frame.index)))
                if len(buffer) >= proc.batch_size or \
                        sum(len(b[2]) for b in buffer) >= proc.batch_size:
                    flush(writer)
            flush(writer)
    except VideoError as e:
        if target.exists() and "without audio" in str(e):
            problems.append(str(e))
            return True
        raise
    return True


def process_video(path: str | Path, dest: str | Path, proc: FaceProcessor,
                  options: VideoOptions = VideoOptions(), progress: bool = True
                  ) -> dict[str, Any]:
    """Every tracked face of a video through ``proc``; files under ``dest``.

    Returns:
        The ``video.json`` record plus ``files`` (names relative to ``dest``) and
        ``track_dirs``.
    """
    from emoca.io.malloc import fix_mmap_threshold
    from emoca.pipeline.bookkeeping import write_json

    fix_mmap_threshold()  # flat memory over long videos (see emoca.io.malloc)
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(dest)
    for track_dir in dest.glob("track_*"):
        remove_stale_temp_files(track_dir)
    problems: list[str] = []
    try:
        state, reader, n_frames = _track_faces(path, dest, proc, options, progress, problems)
        tracks = proc.finish_video(state)
        problems = list(reader.problems) + problems
        files: list[str] = []
        for tid, arr in sorted(tracks.items()):
            with proc.timer.stage("export", track_length(arr)):
                files += [f"track_{tid}/{f}"
                          for f in proc.write_track(dest / f"track_{tid}", arr)]
        if options.overlay and tracks:
            if _write_overlay(path, dest / "overlay.mp4", proc, tracks, options.overlay_style,
                              progress, problems):
                files.append("overlay.mp4")
        lengths = {str(tid): track_length(a) for tid, a in sorted(tracks.items())}
    finally:  # the spilled per-frame arrays (also those of a failed or stopped run)
        remove_spill_files(dest)
    record = {
        "video": str(path), "fps": float(reader.fps), "size": list(reader.size),
        "frames_read": n_frames, "tracks": lengths,
        "skipped_frames": list(reader.skipped_frames), "problems": problems,
        "settings": proc.settings(),
    }
    write_json(dest / "video.json", record)
    files.append("video.json")
    return {**record, "files": files,
            "track_dirs": [str(dest / f"track_{t}") for t in sorted(tracks)]}
