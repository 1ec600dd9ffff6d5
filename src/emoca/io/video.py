"""Video reading and writing with PyAV (the ``video`` extra: ``pip install 'emoca[video]'``).

``VideoReader`` streams decoded frames one at a time (bounded memory, whatever the length of
the video) as ``Frame(index, time, image)`` tuples and survives damaged files: a packet the
decoder rejects is skipped and logged, a truncated file yields what can be decoded, and both
are recorded on the reader (``skipped_frames``, ``problems``) instead of raising mid-way.

Writing (``VideoWriter``, audio muxing) lives in :mod:`emoca.io.video_write`.

PyAV is imported lazily: importing this module never fails; using it without PyAV raises an
ImportError that says what to install.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from emoca.errors import InputError

__all__ = [
    "Frame",
    "VideoError",
    "VideoReader",
    "available_video_encoders",
    "import_av",
    "open_input",
    "stream_seconds",
]

log = logging.getLogger(__name__)

_INSTALL_HINT = "reading and writing videos needs PyAV: pip install 'emoca[video]'"


def import_av() -> ModuleType:
    try:
        import av
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    return av


class VideoError(InputError):
    """A video could not be opened or written; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class Frame(NamedTuple):
    """One decoded frame.

    Attributes:
        index: frame number on the video's timeline, ``round(time * fps)`` (0-based). Frames
            that could not be decoded leave gaps, so ``index`` stays the true frame number.
        time: presentation time in seconds from the start of the video stream.
        image: ``(H, W, 3)`` uint8 RGB, upright when the file carries a rotation.
    """

    index: int
    time: float
    image: np.ndarray


def available_video_encoders() -> dict[str, bool]:
    """Which of the encoders this module may use exist in PyAV's FFmpeg build."""
    av = import_av()
    out = {}
    for name in ("libx264", "mpeg4", "libvpx-vp9", "libvpx", "aac"):
        try:
            av.codec.Codec(name, "w")
            out[name] = True
        except Exception:  # noqa: BLE001 - UnknownCodecError and friends: just "absent"
            out[name] = False
    return out


# ---------------------------------------------------------------------------------------------
# reading


def open_input(av: ModuleType, path: Path) -> Any:
    if not path.exists():
        raise VideoError(path, "file not found")
    if not path.is_file():
        raise VideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as e:
        raise VideoError(
            path, "cannot open as a video (corrupt, truncated or unsupported): "
            f"{getattr(e, 'strerror', None) or e}"  # FFmpeg's reason without the path again
        ) from e


def stream_seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


class VideoReader:
    """Streaming reader for one video file.

    Metadata (read when constructed):
        fps, rate: average frame rate as float and as exact Fraction.
        frame_count: frames according to the container; ``frame_count_exact`` is False when
            it is estimated from ``duration * fps`` (e.g. Matroska/WebM headers lack it).
        duration: seconds (stream duration, else container duration, else estimated).
        size: ``(width, height)`` of the frames this reader yields (after rotation).
        rotation: degrees counterclockwise the stored frames are turned to display them.
        has_audio: the file has at least one audio stream.

    After (or during) an iteration:
        skipped_frames: indices of frames on the timeline that were not yielded (rejected
            packets, gaps, a missing tail when the container states the exact frame count).
        corrupt_frames: indices yielded although the decoder flagged them as damaged.
        problems: human-readable descriptions of everything that went wrong.

    For variable-frame-rate videos ``index`` is the nearest slot of the average rate; such
    videos can show gaps in ``skipped_frames`` that come from the source's own timing.
    """

    def __init__(self, path: str | os.PathLike, *, autorotate: bool = True) -> None:
        av = import_av()
        self.path = Path(path)
        self.autorotate = autorotate
        self.skipped_frames: list[int] = []
        self.corrupt_frames: list[int] = []
        self.problems: list[str] = []
        container = open_input(av, self.path)
        try:
            if not container.streams.video:
                raise VideoError(self.path, "no video stream in the file")
            stream = container.streams.video[0]
            self.has_audio = bool(container.streams.audio)
            self.codec = stream.codec_context.name
            self.rate = self._frame_rate(stream, container)
            self.fps = float(self.rate)
            self.duration, self.frame_count, self.frame_count_exact = self._length(
                stream, container
            )
            self.rotation = self._probe_rotation(av, container, stream) if autorotate else 0
            w, h = stream.codec_context.width, stream.codec_context.height
            self.size = (h, w) if self.rotation % 180 else (w, h)
        finally:
            container.close()

    # -- metadata helpers

    def _frame_rate(self, stream: Any, container: Any) -> Fraction:
        for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
            if rate is not None and rate > 0:
                return Fraction(rate)
        if stream.frames and container.duration:
            return Fraction(stream.frames) / Fraction(container.duration, 1_000_000)
        log.warning("%s: no frame rate in the file, assuming 25 fps", self.path)
        return Fraction(25)

    def _length(self, stream: Any, container: Any) -> tuple[float, int, bool]:
        duration = stream_seconds(stream.duration, stream.time_base)
        if duration is None and container.duration is not None:
            duration = container.duration / 1_000_000
        if stream.frames and stream.frames > 0:
            count = int(stream.frames)
            if duration is None:
                duration = count / self.fps
            return duration, count, True
        duration = duration or 0.0
        return duration, int(round(duration * self.fps)), False

    def _probe_rotation(self, av: ModuleType, container: Any, stream: Any) -> int:
        # The display matrix is per-frame side data in PyAV; look at the first frame.
        try:
            for frame in container.decode(stream):
                return int(round(getattr(frame, "rotation", 0) or 0))
        except av.FFmpegError:
            pass
        return 0

    # -- iteration

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        """Decode and yield frames one at a time; only the current frame is kept in memory.

        Each call starts from the beginning and resets ``skipped_frames``, ``corrupt_frames``
        and ``problems``. The file is closed when the iteration ends or is abandoned.
        """
        av = import_av()
        self.skipped_frames = []
        self.corrupt_frames = []
        self.problems = []
        container = open_input(av, self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            state = _DecodeState(self, stream)
            yield from self._decode_all(av, container, stream, state)
            state.finish()
        finally:
            container.close()

    def _decode_all(self, av: ModuleType, container: Any, stream: Any,
                    state: _DecodeState) -> Iterator[Frame]:
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as e:
                self._problem(f"reading stopped at t={state.last_time:.3f}s: {e}")
                with contextlib.suppress(av.FFmpegError):
                    # Drain what the decoder still holds for the packets it already got.
                    for frame in stream.codec_context.decode(None):
                        yield from state.emit(frame)
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError as e:
                t = stream_seconds(packet.pts, packet.time_base)
                where = f"t={t:.3f}s" if t is not None else "unknown time"
                self._problem(f"skipped an undecodable packet at {where}: {e}")
                continue
            for frame in decoded:
                yield from state.emit(frame)

    def _problem(self, message: str) -> None:
        log.warning("%s: %s", self.path, message)
        self.problems.append(message)

    def __repr__(self) -> str:
        return (f"VideoReader({str(self.path)!r}, {self.size[0]}x{self.size[1]}, "
                f"{self.fps:.3f} fps, ~{self.frame_count} frames, audio={self.has_audio})")


class _DecodeState:
    """Per-iteration bookkeeping: timeline indices, gaps, the expected end."""

    def __init__(self, reader: VideoReader, stream: Any) -> None:
        self.reader = reader
        self.stream = stream
        self.start = stream.start_time or 0
        self.last_index = -1
        self.last_time = 0.0

    def emit(self, frame: Any) -> Iterator[Frame]:
        r = self.reader
        if frame.pts is not None:
            t = float((frame.pts - self.start) * frame.time_base)
        else:
            t = self.last_time + 1.0 / r.fps if self.last_index >= 0 else 0.0
        index = int(round(t * r.fps))
        if index <= self.last_index:  # duplicate or jittery timestamps: keep indices unique
            index = self.last_index + 1
        if index > self.last_index + 1:
            gap = list(range(self.last_index + 1, index))
            r.skipped_frames.extend(gap)
            r._problem(f"frames {gap[0]}..{gap[-1]} missing (undecodable or absent)")
        if getattr(frame, "is_corrupt", False):
            r.corrupt_frames.append(index)
        image = frame.to_ndarray(format="rgb24")
        if r.autorotate:
            k = int(round(getattr(frame, "rotation", 0) or 0) / 90) % 4
            if k:
                image = np.ascontiguousarray(np.rot90(image, k))
        self.last_index, self.last_time = index, t
        yield Frame(index, t, image)

    def finish(self) -> None:
        r = self.reader
        end = self.last_index + 1
        if r.frame_count_exact and end < r.frame_count:
            r.skipped_frames.extend(range(end, r.frame_count))
            r._problem(f"video ended after {end} of {r.frame_count} frames (file truncated?)")
        elif not r.frame_count_exact and r.frame_count - end > max(2, 0.05 * r.frame_count):
            r._problem(
                f"video ended at {self.last_time:.3f}s but the file says {r.duration:.3f}s "
                f"(file truncated?)"
            )
