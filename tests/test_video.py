"""Video reading/writing: round trips, audio, damaged files, streaming memory."""

from __future__ import annotations

import inspect
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from emoca.io.video import Frame, VideoError, VideoReader, available_video_encoders
from emoca.io.video_write import VideoWriter, mux_audio_from

FPS = 10
N = 20
W, H = 64, 48
SR = 16000


def _frame(i: int, w: int = W, h: int = H, textured: bool = False) -> np.ndarray:
    """Grey background with a red 16x16 square moving 2 px right per frame.

    ``textured``: a fixed grey noise background (values 40..120), which makes keyframes
    large, so that cutting a file in half lands after several whole frames.
    """
    if textured:
        grey = np.random.default_rng(7).integers(40, 121, (h, w), dtype=np.uint8)
        img = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        img = np.full((h, w, 3), 60, np.uint8)
    x = 2 + 2 * i
    img[12:28, x:x + 16] = (220, 40, 30)
    return img


def _write_reference_video(path: Path, *, codec: str = "libx264", n: int = N, audio: bool = True,
                           w: int = W, h: int = H, pix_fmt: str = "yuv420p",
                           rotation: int | None = None, options: dict | None = None,
                           codec_options: dict | None = None, textured: bool = False) -> None:
    """Write a test video with PyAV directly (independent of emoca's writer)."""
    with av.open(str(path), "w", options=options or {}) as c:
        vs = c.add_stream(codec, rate=FPS, options=codec_options or {})
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            vs.set_display_rotation(rotation)
        if audio:
            a = c.add_stream("aac", rate=SR)
            a.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i, w, h, textured), format="rgb24")
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if audio:
            t = np.arange(SR * n // FPS) / SR
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(wave), 1024):
                chunk = wave[None, k:k + 1024]
                f = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                f.sample_rate, f.pts = SR, k
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)


def _audio_packets(path: Path) -> list[tuple[float, float, bytes]]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(float(p.pts * p.time_base), float(p.duration * p.time_base), bytes(p))
                for p in c.demux(s) if p.size]


def _audio_span(path: Path) -> float:
    pk = _audio_packets(path)
    return pk[-1][0] + pk[-1][1] - pk[0][0]


def _red_centroid_x(img: np.ndarray) -> float:
    mask = (img[:, :, 0] > 150) & (img[:, :, 1] < 100)
    return float(np.nonzero(mask)[1].mean())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _write_reference_video(path)
    return path


# --------------------------------------------------------------------------- reading


def test_reader_metadata_and_content(clip: Path) -> None:
    r = VideoReader(clip)
    assert r.fps == FPS and r.rate == Fraction(FPS)
    assert r.frame_count == N and r.frame_count_exact
    assert r.size == (W, H) and r.has_audio
    assert r.duration == pytest.approx(N / FPS, abs=1.0 / FPS)
    frames = list(r)
    assert [f.index for f in frames] == list(range(N))
    np.testing.assert_allclose([f.time for f in frames], np.arange(N) / FPS, atol=1e-6)
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        ref = _frame(f.index)
        # Lossy codec + chroma subsampling: small mean error, square where it should be.
        assert np.abs(f.image.astype(int) - ref).mean() < 4.0
        assert _red_centroid_x(f.image) == pytest.approx(_red_centroid_x(ref), abs=0.6)
    assert r.skipped_frames == [] and r.problems == [] and r.corrupt_frames == []


def test_reader_streams_one_frame_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "long.mkv"
    n = 30
    _write_reference_video(path, n=n, audio=False)
    r = VideoReader(path)
    it = iter(r)
    assert inspect.isgenerator(it)
    first = next(it)
    assert isinstance(first, Frame) and first.image.shape == (H, W, 3)
    it.close()

    # The decoded pixels live in FFmpeg-owned buffers that tracemalloc cannot see, so check
    # ownership instead: once the caller drops a frame nothing may keep its image alive
    # (a reader that buffered or cached frames would).
    alive = []
    count = 0
    for f in r:
        alive = [ref for ref in alive if ref() is not None]
        assert len(alive) <= 1, f"{len(alive)} earlier frames still referenced at frame {count}"
        alive.append(weakref.ref(f.image))
        count += 1
        del f
    assert count == n


def test_reader_rotation(tmp_path: Path) -> None:
    path = tmp_path / "rot.mp4"
    _write_reference_video(path, n=3, audio=False, rotation=90)
    r = VideoReader(path)
    assert r.rotation == 90 and r.size == (H, W)
    f0 = next(iter(r))
    # PyAV/FFmpeg: rotation = degrees counterclockwise to turn the stored frame for display.
    expected = np.rot90(_frame(0), 1)
    assert f0.image.shape == expected.shape
    assert np.abs(f0.image.astype(int) - expected).mean() < 4.0
    raw = next(iter(VideoReader(path, autorotate=False)))
    assert raw.image.shape == (H, W, 3)


def test_missing_pyav_gives_install_hint(monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # makes "import av" fail
    with pytest.raises(ImportError, match=r"pip install 'emoca\[video\]'"):
        VideoReader(clip)
    with pytest.raises(ImportError, match="PyAV"):
        VideoWriter(clip.parent / "x.mp4", FPS, (W, H))


def test_reader_bad_files(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="not found"):
        VideoReader(tmp_path / "none.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        VideoReader(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(VideoError, match="junk.mp4.*cannot open"):
        VideoReader(tmp_path / "junk.mp4")
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as c:
        a = c.add_stream("pcm_s16le", rate=SR)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        f.sample_rate = SR
        for p in a.encode(f):
            c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    with pytest.raises(VideoError, match="no video stream"):
        VideoReader(wav)


# --------------------------------------------------------------------------- damaged videos


def _cut_in_half(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def test_truncated_matroska_yields_prefix_and_reports(tmp_path: Path) -> None:
    full = tmp_path / "full.mkv"
    # Large keyframes every 4 frames: half the file holds several decodable frames.
    _write_reference_video(full, n=40, audio=False, codec_options={"g": "4"}, textured=True)
    cut = tmp_path / "cut.mkv"
    _cut_in_half(full, cut)
    r = VideoReader(cut)
    frames = list(r)  # must not raise
    assert 5 < len(frames) < 35
    got = [f.index for f in frames]
    assert got[0] == 0 and got == sorted(set(got))
    # Frames whose data was cut off inside the decoded range are recorded, not silently lost.
    assert sorted(got + r.skipped_frames) == list(range(got[-1] + 1))
    for f in frames:
        assert _red_centroid_x(f.image) == pytest.approx(_red_centroid_x(_frame(f.index)), abs=0.6)
    assert any("truncated" in p for p in r.problems)


def test_truncated_faststart_mp4_records_missing_frames(tmp_path: Path) -> None:
    full = tmp_path / "fs.mp4"
    _write_reference_video(full, n=40, audio=False, options={"movflags": "+faststart"},
                           codec_options={"g": "4"}, textured=True)
    cut = tmp_path / "fs_cut.mp4"
    _cut_in_half(full, cut)
    r = VideoReader(cut)
    assert r.frame_count == 40 and r.frame_count_exact  # index is at the front
    got = [f.index for f in r]
    assert 5 < len(got) < 35
    # Every frame of the timeline is accounted for: yielded or recorded as skipped.
    assert sorted(got + r.skipped_frames) == list(range(40))
    assert r.problems


def test_truncated_mp4_without_index_is_a_clear_error(tmp_path: Path, clip: Path) -> None:
    # A default MP4 keeps its index (moov) at the end: half a file has no index at all.
    cut = tmp_path / "cut.mp4"
    _cut_in_half(clip, cut)
    with pytest.raises(VideoError, match="cut.mp4.*cannot open"):
        VideoReader(cut)


def test_undecodable_packets_are_skipped_and_recorded(tmp_path: Path) -> None:
    # PNG-coded frames in MOV: breaking a frame's PNG signature makes FFmpeg reject exactly
    # that packet (AVERROR_INVALIDDATA), which the reader must skip and record.
    path = tmp_path / "png.mov"
    _write_reference_video(path, codec="png", audio=False, pix_fmt="rgb24")
    data = bytearray(path.read_bytes())
    sig = b"\x89PNG\r\n\x1a\n"
    starts = [i for i in range(len(data) - 8) if data[i:i + 8] == sig]
    assert len(starts) == N
    for k in (5, 12):
        data[starts[k]:starts[k] + 8] = b"garbage!"
    path.write_bytes(bytes(data))

    r = VideoReader(path)
    frames = list(r)
    assert [f.index for f in frames] == [i for i in range(N) if i not in (5, 12)]
    assert r.skipped_frames == [5, 12]
    assert len(r.problems) >= 2
    for f in frames:  # lossless codec: exact
        np.testing.assert_array_equal(f.image, _frame(f.index))


# --------------------------------------------------------------------------- writing


def _overlay(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[:, :, 1] = 255 - out[:, :, 1]
    return out


def test_writer_roundtrip_copies_audio(tmp_path: Path, clip: Path) -> None:
    r = VideoReader(clip)
    out = tmp_path / "overlay.mp4"
    with VideoWriter(out, r.rate, r.size, audio_from=clip) as w:
        for f in r:
            w.write(_overlay(f.image))
            assert not out.exists()  # only the temporary file exists while writing
    expected_codec = "libx264" if available_video_encoders()["libx264"] else "mpeg4"
    assert w.codec == expected_codec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]

    back = VideoReader(out)
    assert back.has_audio and back.size == (W, H) and back.fps == FPS
    frames = list(back)
    assert [f.index for f in frames] == list(range(N))
    for f in frames:
        assert np.abs(f.image.astype(int) - _overlay(_frame(f.index))).mean() < 6.0

    src_audio, out_audio = _audio_packets(clip), _audio_packets(out)
    # Stream copy: the very same compressed audio packets, at the same times.
    assert [p[2] for p in out_audio] == [p[2] for p in src_audio]
    assert _audio_span(out) == pytest.approx(_audio_span(clip), abs=1.0 / FPS)
    assert _audio_span(out) == pytest.approx(N / FPS, abs=1.0 / FPS)


def test_mux_audio_reencode_keeps_the_tone(tmp_path: Path, clip: Path) -> None:
    silent = tmp_path / "silent.mkv"
    _write_reference_video(silent, audio=False)
    assert not VideoReader(silent).has_audio
    out = tmp_path / "with_audio.mkv"
    assert mux_audio_from(clip, silent, output=out, reencode=True)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
        rate = a.codec_context.sample_rate
    assert len(samples) / rate == pytest.approx(N / FPS, abs=1.0 / FPS + 0.07)  # + AAC priming
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()] == pytest.approx(440, abs=5)
    assert len(list(VideoReader(out))) == N
    # A source without audio: nothing to add, reported by the return value.
    assert mux_audio_from(silent, out, output=tmp_path / "x.mkv") is False
    assert not (tmp_path / "x.mkv").exists()


def test_webm_output_reencodes_audio_to_opus(tmp_path: Path, clip: Path) -> None:
    # WebM accepts neither H.264 nor AAC: VP9 video, and the AAC copy falls back to Opus.
    out = tmp_path / "o.webm"
    with VideoWriter(out, FPS, (W, H), audio_from=clip) as w:
        for i in range(N):
            w.write(_frame(i))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "vp8")
        a = c.streams.audio[0]
        assert a.codec_context.name == "opus"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)])
        rate = a.codec_context.sample_rate
    assert len(samples) / rate == pytest.approx(N / FPS, abs=1.0 / FPS)
    assert len(list(VideoReader(out))) == N


def test_audio_failure_keeps_the_video(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(VideoError, match="audio source not found"):
        VideoWriter(tmp_path / "x.mp4", FPS, (W, H), audio_from=tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:500])  # exists at construction, unreadable at close
    out = tmp_path / "kept.mp4"
    w = VideoWriter(out, FPS, (W, H), audio_from=broken)
    for i in range(3):
        w.write(_frame(i))
    with pytest.raises(VideoError, match="written without audio"):
        w.close()
    r = VideoReader(out)
    assert not r.has_audio and len(list(r)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "kept.mp4"]


def test_writer_trims_audio_to_a_shorter_video(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "short.mp4"
    with VideoWriter(out, FPS, (W, H), audio_from=clip) as w:
        for i in range(N // 2):
            w.write(_frame(i))
    assert _audio_span(out) == pytest.approx(N / 2 / FPS, abs=1.0 / FPS)


def test_writer_is_atomic_on_error(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, FPS, (W, H)) as w:
        w.write(_frame(0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(VideoError, match="no frames"):
        VideoWriter(out, FPS, (W, H)).close()
    assert list(tmp_path.iterdir()) == []


def test_writer_checks_frames_and_pads_odd_sizes(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    w = VideoWriter(out, 25.0, (63, 47))
    with pytest.raises(ValueError, match=r"\(47, 63, 3\) uint8"):
        w.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        w.write(np.zeros((47, 63, 3), np.float32))
    for i in range(5):
        w.write(_frame(i, 63, 47))
    w.close()
    r = VideoReader(out)
    assert r.size == (64, 48) and r.fps == 25
    f = next(iter(r))
    assert np.abs(f.image[:47, :63].astype(int) - _frame(0, 63, 47)).mean() < 4.0
