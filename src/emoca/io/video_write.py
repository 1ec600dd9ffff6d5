"""Video writing with PyAV: ``VideoWriter`` and copying audio from the input.

``VideoWriter`` encodes RGB frames to H.264 (``libx264``, yuv420p, CRF 18) when PyAV's FFmpeg
has it, else MPEG-4 part 2; ``.webm`` files get VP9. Files are written under a temporary name
beside the target and renamed into place on ``close()``, so a crashed run never leaves a
half-written video under the real name. ``audio_from=`` (or :func:`mux_audio_from`) copies the
audio of another video (normally the input) into the output so an overlay keeps its sound.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from emoca.io.video import VideoError, import_av, open_input, stream_seconds

__all__ = ["VideoWriter", "mux_audio_from"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# writing


def _temp_beside(target: Path) -> Path:
    # Keep the real extension last: FFmpeg picks the container format from it.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}",
                               dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _pick_codec(av: ModuleType, path: Path) -> str:
    wanted = ("libvpx-vp9", "libvpx") if path.suffix.lower() == ".webm" else ("libx264", "mpeg4")
    for name in wanted:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - codec absent from this FFmpeg build
            continue
    raise VideoError(path, f"none of the encoders {wanted} exist in PyAV's FFmpeg build")


class VideoWriter:
    """Write RGB frames to a video file, atomically.

    Args:
        path: output file; the container format follows the extension.
        fps: frame rate (float or exact Fraction, e.g. ``VideoReader.rate``).
        size: ``(width, height)`` of the frames that will be written. Odd sizes are padded
            by one replicated row/column (yuv420p needs even sizes).
        codec: encoder name; default libx264 (mpeg4 when absent), VP9 for ``.webm``.
        crf: quality for libx264/VP9 (lower is better; 18 is visually near-lossless).
        audio_from: a video whose audio stream is copied into the output on ``close()``.
            If that fails, the video is still moved into place (without audio) and
            ``close()`` raises a VideoError saying so.

    Use as a context manager: on an exception the temporary file is deleted and nothing
    appears under ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction,
        size: tuple[int, int],
        *,
        codec: str | None = None,
        crf: int = 18,
        audio_from: str | os.PathLike | None = None,
    ) -> None:
        av = import_av()
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        if self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        self.rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        if self.rate <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None and not self.audio_from.is_file():
            raise VideoError(self.audio_from, "audio source not found")
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_beside(self.path)
        self._closed = False
        try:
            self.codec = codec or _pick_codec(av, self.path)
            self._container = av.open(str(self._tmp), "w")
            self._stream = self._add_video_stream(av, crf)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def _add_video_stream(self, av: ModuleType, crf: int) -> Any:
        w, h = self.size
        options: dict[str, str] = {}
        if self.codec in ("libx264", "libx265"):
            options = {"crf": str(crf), "preset": "medium"}
        elif self.codec.startswith("libvpx"):
            options = {"crf": str(crf + 13), "b": "0"}  # VP9's CRF scale runs to 63
        stream = self._container.add_stream(self.codec, rate=self.rate, options=options)
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / self.rate
        if self.codec == "mpeg4":
            # MPEG-4's default 200 kb/s is far too low; ~0.2 bit per pixel looks clean.
            stream.bit_rate = int(max(w * h * float(self.rate) * 0.2, 400_000))
        return stream

    def write(self, image: np.ndarray) -> None:
        """Encode one ``(height, width, 3)`` uint8 RGB frame."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        av = import_av()
        w, h = self.size
        if image.dtype != np.uint8 or image.shape != (h, w, 3):
            raise ValueError(
                f"expected a ({h}, {w}, 3) uint8 RGB frame, got {image.shape} {image.dtype}"
            )
        if w % 2 or h % 2:
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._stream.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> Path:
        """Flush the encoder, add the audio, move the file into place; returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            if self.frames_written == 0:
                raise VideoError(self.path, "no frames were written")
            audio_error = None
            if self.audio_from is not None:
                try:
                    mux_audio_from(self.audio_from, self._tmp)
                except (VideoError, ValueError, OSError) as e:
                    audio_error = e
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        if audio_error is not None:
            # The encoded video is kept (it may have taken long to make); the caller still
            # learns that the audio is missing.
            raise VideoError(self.path, f"written without audio: {audio_error}") from audio_error
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temporary file; ``path`` is left untouched."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------------------------
# audio


def _packet_time(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None else math.inf


def _copied_packets(container: Any, stream: Any, out_stream: Any,
                    end: float | None) -> Iterator[tuple[float, int, Any]]:
    for packet in container.demux(stream):
        if packet.dts is None and packet.size == 0:  # demuxer's end-of-stream flush packet
            continue
        t = _packet_time(packet)
        if end is not None and t >= end:
            break
        packet.stream = out_stream
        yield t, stream.index, packet


def _reencoded_packets(av: ModuleType, container: Any, stream: Any, out_stream: Any,
                       end: float | None) -> Iterator[tuple[float, int, Any]]:
    ctx = out_stream.codec_context
    resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=ctx.sample_rate,
                                  frame_size=ctx.frame_size or None)
    samples = 0

    def encode(frames: list[Any]) -> Iterator[tuple[float, int, Any]]:
        nonlocal samples
        for f in frames:
            f.pts = samples
            f.time_base = Fraction(1, ctx.sample_rate)
            samples += f.samples
            for packet in out_stream.encode(f):
                yield _packet_time(packet), stream.index, packet

    for frame in container.decode(stream):
        if end is not None and frame.time is not None and frame.time >= end:
            break
        yield from encode(resampler.resample(frame))
    yield from encode(resampler.resample(None))
    for packet in out_stream.encode(None):
        yield _packet_time(packet), stream.index, packet


def mux_audio_from(
    src_video: str | os.PathLike,
    dst_video: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    reencode: bool = False,
    trim: bool = True,
) -> bool:
    """Copy the first audio stream of ``src_video`` into ``dst_video`` (video kept as is).

    The audio packets are copied unchanged when the output container accepts the codec,
    otherwise (or with ``reencode=True``) the audio is re-encoded to AAC (Opus for WebM).
    With ``trim``, audio starting after the end of the destination's video is dropped. The
    result replaces ``dst_video`` (or is written to ``output``) atomically.

    Returns:
        True when audio was added; False when ``src_video`` has no audio (logged, nothing
        written).
    """
    av = import_av()
    src, dst = Path(src_video), Path(dst_video)
    target = Path(output) if output is not None else dst
    with contextlib.closing(open_input(av, src)) as src_c:
        if not src_c.streams.audio:
            log.info("%s has no audio stream; %s keeps none", src, dst)
            return False
    attempts = [True] if reencode else [False, True]
    last_error: Exception | None = None
    for do_reencode in attempts:
        tmp = _temp_beside(target)
        try:
            _remux_with_audio(av, src, dst, tmp, do_reencode, trim)
            os.replace(tmp, target)
            return True
        except (av.FFmpegError, ValueError) as e:
            tmp.unlink(missing_ok=True)
            last_error = e
            if not do_reencode:
                log.info("copying the audio of %s failed (%s); re-encoding it", src, e)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise VideoError(target, f"could not add the audio of {src}: {last_error}")


def _remux_with_audio(av: ModuleType, src: Path, dst: Path, tmp: Path, reencode: bool,
                      trim: bool) -> None:
    options = {"movflags": "+faststart"} if tmp.suffix.lower() in (".mp4", ".mov") else {}
    with contextlib.closing(open_input(av, src)) as src_c, \
            contextlib.closing(open_input(av, dst)) as dst_c, \
            contextlib.closing(av.open(str(tmp), "w", options=options)) as out:
        vin = dst_c.streams.video[0]
        ain = src_c.streams.audio[0]
        vout = out.add_stream_from_template(vin)
        if reencode:
            layout = ain.codec_context.layout.name if ain.codec_context.layout else "stereo"
            # WebM takes only Opus/Vorbis; everything else gets AAC.
            webm = tmp.suffix.lower() == ".webm"
            codec, rate = ("libopus", 48000) if webm else ("aac", None)
            aout = out.add_stream(codec, rate=rate or ain.codec_context.sample_rate or 48000)
            aout.layout = layout
        else:
            aout = out.add_stream_from_template(ain)
        out.start_encoding()  # writes the header: fails here if the muxer rejects the codec
        end = None
        if trim:
            end = stream_seconds(vin.duration, vin.time_base)
            if end is None and dst_c.duration is not None:
                end = dst_c.duration / 1_000_000
        video = _copied_packets(dst_c, vin, vout, None)
        audio = (_reencoded_packets(av, src_c, ain, aout, end) if reencode
                 else _copied_packets(src_c, ain, aout, end))
        # Merge by time so the file is properly interleaved (the streams are read lazily).
        for _, _, packet in heapq.merge(video, audio, key=lambda item: (item[0], item[1])):
            out.mux(packet)
