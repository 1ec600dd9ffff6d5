"""Image loading: every kind of odd or broken input, and input discovery."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoca.io.images import ImageReadError, iter_inputs, load_image, scan_inputs

RNG = np.random.default_rng(0)


def _rgb(h: int = 12, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png_rgb16(path: Path, arr: np.ndarray) -> None:
    """Hand-written 16-bit RGB PNG (Pillow cannot write one), straight from the PNG spec."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    path.write_bytes(data)


def _patch_png_size(path: Path, width: int, height: int) -> None:
    """Rewrite the IHDR width/height (with a valid CRC) without touching the pixel data."""
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- plain and grey


def test_rgb_png_roundtrip_exact(tmp_path: Path) -> None:
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_grey_and_bilevel(tmp_path: Path) -> None:
    g = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (9, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)
    bits = g > 128
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[:, :, 0], np.where(bits, 255, 0))


# --------------------------------------------------------------------------- alpha and palette


def test_rgba_composited_on_black_or_background_or_dropped(tmp_path: Path) -> None:
    rgb = _rgb()
    a = RNG.integers(0, 256, (12, 16), dtype=np.uint8)
    a[0, 0], a[0, 1] = 0, 255
    Image.fromarray(np.dstack([rgb, a]), mode="RGBA").save(tmp_path / "a.png")
    af = a[:, :, None].astype(np.float64) / 255.0

    out = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(out, rgb * af, atol=0.5 + 1e-6)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], rgb[0, 1])

    white = load_image(tmp_path / "a.png", background=(255, 255, 255))
    np.testing.assert_allclose(white, rgb * af + 255 * (1 - af), atol=0.5 + 1e-6)
    np.testing.assert_array_equal(white[0, 0], [255, 255, 255])

    np.testing.assert_array_equal(load_image(tmp_path / "a.png", background=None), rgb)


def test_la_mode(tmp_path: Path) -> None:
    g = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    a = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(np.dstack([g, a]), mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    expected = g.astype(np.float64) * a / 255.0
    for c in range(3):
        np.testing.assert_allclose(out[:, :, c], expected, atol=0.5 + 1e-6)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    idx = RNG.integers(0, 16, (8, 10), dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette.reshape(-1).tolist())
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), palette[idx])

    im.info["transparency"] = 3  # palette entry 3 fully transparent
    im.save(tmp_path / "pt.png", transparency=3)
    out = load_image(tmp_path / "pt.png")
    expected = np.where((idx == 3)[:, :, None], 0, palette[idx])
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- CMYK and 16-bit


def test_cmyk_jpeg(tmp_path: Path) -> None:
    # Flat 16x16 blocks: pure cyan, magenta, yellow, and 50% black. JPEG is lossy, so the
    # tolerance is generous; the naive CMYK->RGB is R = (255-C)(255-K)/255 etc.
    cmyk = np.zeros((16, 64, 4), dtype=np.uint8)
    cmyk[:, 0:16, 0] = 255
    cmyk[:, 16:32, 1] = 255
    cmyk[:, 32:48, 2] = 255
    cmyk[:, 48:64, 3] = 128
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg").astype(np.float64)
    expected = (255 - cmyk[:, :, :3].astype(np.float64)) * (255 - cmyk[:, :, 3:4]) / 255.0
    centres = [(8, 8), (8, 24), (8, 40), (8, 56)]
    for y, x in centres:
        np.testing.assert_allclose(out[y, x], expected[y, x], atol=8)


def test_16bit_grey_png(tmp_path: Path) -> None:
    k = RNG.integers(0, 256, (6, 9))
    v = (k * 257).astype(np.uint16)  # v / 257 is exactly k
    v[0, 0], v[0, 1] = 0, 65535
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    expected = k.copy()
    expected[0, 0], expected[0, 1] = 0, 255
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


def test_16bit_rgb_png(tmp_path: Path) -> None:
    v = RNG.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    _write_png_rgb16(tmp_path / "rgb16.png", v)
    out = load_image(tmp_path / "rgb16.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    # Any sane 16->8 reduction (high byte or rounding) is within 1 of v / 257.
    assert np.abs(out.astype(np.float64) - v / 257.0).max() <= 1.0


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize(("orientation", "rot_ccw"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation(tmp_path: Path, orientation: int, rot_ccw: int) -> None:
    # EXIF 6: the stored image must be turned 90 deg clockwise for display; 8: 90 deg
    # counterclockwise; 3: 180 deg.
    arr = _rgb(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif)
    out = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(out, np.rot90(arr, rot_ccw))
    np.testing.assert_array_equal(load_image(tmp_path / "o.png", exif_orientation=False), arr)


# --------------------------------------------------------------------------- broken files


def test_truncated_jpeg(tmp_path: Path) -> None:
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as ei:
        load_image(tmp_path / "t.jpg")
    assert "t.jpg" in str(ei.value) and ei.value.path == tmp_path / "t.jpg"


def test_garbage_empty_missing_and_folder(tmp_path: Path) -> None:
    (tmp_path / "g.png").write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(ImageReadError, match="g.png.*not an image"):
        load_image(tmp_path / "g.png")
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="e.jpg.*empty"):
        load_image(tmp_path / "e.jpg")
    with pytest.raises(ImageReadError, match="nope.png.*not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="not a regular file"):
        load_image(tmp_path)


def test_corrupt_png_data(tmp_path: Path) -> None:
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "c.png")
    data = bytearray((tmp_path / "c.png").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10: start + 60] = bytes(50)  # zeroed deflate stream, header intact
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="c.png.*corrupt"):
        load_image(tmp_path / "c.png")


def test_decompression_bomb_limits(tmp_path: Path) -> None:
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "s.png")
    with pytest.raises(ImageReadError, match="too large.*10000 pixels"):
        load_image(tmp_path / "s.png", max_pixels=5000)
    assert load_image(tmp_path / "s.png", max_pixels=10_000).shape == (100, 100, 3)
    assert load_image(tmp_path / "s.png", max_pixels=None).shape == (100, 100, 3)

    # A tiny file whose header claims 12000x10000 = 120 MP: refused by the default 100 MP
    # limit before any decoding (decoding would need ~360 MB and then fail).
    _patch_png_size(tmp_path / "s.png", 12000, 10000)
    with pytest.raises(ImageReadError, match="too large"):
        load_image(tmp_path / "s.png")
    # Far beyond Pillow's own hard limit too: still a clean ImageReadError.
    _patch_png_size(tmp_path / "s.png", 40000, 40000)
    with pytest.raises(ImageReadError, match="too large"):
        load_image(tmp_path / "s.png", max_pixels=None)


# --------------------------------------------------------------------------- input discovery


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_iter_inputs_folders_globs_sorting(tmp_path: Path, caplog) -> None:
    a = _touch(tmp_path / "img10.png")
    b = _touch(tmp_path / "img2.JPG")
    c = _touch(tmp_path / "sub" / "clip.MP4")
    d = _touch(tmp_path / "sub" / "deep" / "x.tiff")
    e = _touch(tmp_path / "sub" / "deep" / "y.webm")
    txt = _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".DS_Store")
    _touch(tmp_path / "sub" / "._clip.MP4")
    _touch(tmp_path / ".hidden" / "z.png")

    with caplog.at_level(logging.WARNING, logger="emoca.io.images"):
        items = iter_inputs(tmp_path)
    assert items == [("image", b), ("image", a), ("video", c), ("image", d), ("video", e)]
    assert "notes.txt" in caplog.text

    flat = iter_inputs([tmp_path], recursive=False)
    assert flat == [("image", b), ("image", a)]

    globbed = iter_inputs([str(tmp_path / "**" / "*.tiff"), str(tmp_path / "img*")])
    assert globbed == [("image", b), ("image", a), ("image", d)]

    # Duplicates (a file named twice, directly and through its folder) appear once.
    assert iter_inputs([a, tmp_path / "img10.png", tmp_path]) == items

    scan = scan_inputs(tmp_path)
    assert scan.unknown == [txt] and scan.missing == []
    with pytest.raises(ValueError, match="notes.txt"):
        iter_inputs(tmp_path, strict=True)


def test_iter_inputs_missing_paths_and_empty_globs(tmp_path: Path) -> None:
    _touch(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        iter_inputs([tmp_path / "a.png", tmp_path / "nothere.png"])
    with pytest.raises(FileNotFoundError, match=r"\*.mov"):
        iter_inputs(str(tmp_path / "*.mov"))
    scan = scan_inputs([tmp_path / "a.png", str(tmp_path / "*.mov")])
    assert scan.items == [("image", tmp_path / "a.png")]
    assert scan.missing == [str(tmp_path / "*.mov")]


# ---------------------------------------------------------------------------------------------
# in-memory images (the API): converted exactly or refused with a message, never 0 faces


def test_in_memory_images_are_converted_or_refused() -> None:
    from emoca.errors import InputError
    from emoca.io.images import as_image_list, to_uint8_image

    grey16 = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    img = Image.fromarray(grey16)  # mode I;16
    assert img.mode.startswith("I;16")
    out = to_uint8_image(img)
    # 16-bit -> 8-bit is value / 257 rounded, the inverse of PNG's 8 -> 16 bit x257
    np.testing.assert_array_equal(out[..., 0], np.rint(grey16 / 257.0).astype(np.uint8))
    assert out.shape == (64, 64, 3) and out[..., 0].max() == 255
    unit = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8_image(unit), (unit * 255 + 0.5).astype(np.uint8))
    with pytest.raises(InputError, match="floats must be in \\[0, 1\\]"):
        to_uint8_image(unit * 255.0, "frame.npy")
    with pytest.raises(InputError, match="every pixel is NaN"):
        to_uint8_image(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="got None"):
        as_image_list(None)
