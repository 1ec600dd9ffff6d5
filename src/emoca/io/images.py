"""Robust image loading and input discovery for batch tools.

``load_image`` turns whatever Pillow can open into one predictable array: ``(H, W, 3)`` uint8
RGB, upright (EXIF orientation applied). Everything that can go wrong with a user's file
(missing, empty, not an image, truncated, corrupt, absurdly large) becomes an
``ImageReadError`` that names the file and the problem, so a batch run can log it and move on.

Conversions (all documented choices):

- grey (``1``, ``L``), palette (``P``), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's
  ``convert("RGB")``. CMYK uses Pillow's naive conversion (no ICC colour management).
- alpha (``RGBA``, ``LA``, ``PA``, palette or RGB with a ``tRNS`` transparency entry,
  premultiplied modes): composited onto ``background`` (black by default), i.e.
  ``rgb * a + background * (1 - a)``. Transparent pixels of an RGBA file often hold
  arbitrary colours; compositing makes them a known colour instead. ``background=None``
  drops the alpha channel and keeps the stored colours.
- 16-bit grey (``I;16*``) and 32-bit integer grey (``I``): values in 0..65535 are mapped to
  0..255 by ``round(v / 257)`` (exact for ``v = 257 * k``); ``I`` values outside that range
  are clipped. 16-bit RGB(A) PNGs are reduced to 8 bits by Pillow itself when opening.
- float grey (``F``): values are taken to be on 0..1 when the maximum is <= 1, else on 0..255,
  and clipped.
- multi-frame files (animated WebP, multi-page TIFF): the first frame.

The decompression-bomb guard checks ``width * height`` from the header before any pixel is
decoded. Pillow has its own global guard (``PIL.Image.MAX_IMAGE_PIXELS``, which raises at
twice its value); this module does not change that global (no global state), so Pillow's
limit stays a hard upper bound, and both limits raise ``ImageReadError``.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emoca.errors import InputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ImageReadError",
    "InputScan",
    "as_image_list",
    "iter_inputs",
    "load_image",
    "scan_inputs",
    "to_uint8_image",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
"""Default decompression-bomb limit in pixels (100 MP: larger than any camera photo)."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pnm"})  # netpbm: PIL reads them too
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})

InputKind = Literal["image", "video"]


class ImageReadError(InputError):
    """An image file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# ---------------------------------------------------------------------------------------------
# load_image


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] | None = (0, 0, 0),
    exif_orientation: bool = True,
) -> np.ndarray:
    """Read an image file as an upright ``(H, W, 3)`` uint8 RGB array.

    Args:
        path: image file.
        max_pixels: refuse images whose header says ``width * height > max_pixels`` before
            decoding them; ``None`` leaves only Pillow's own global limit.
        background: RGB colour that transparent pixels are composited onto; ``None`` drops
            the alpha channel instead.
        exif_orientation: rotate/flip according to the EXIF orientation tag.

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated, corrupt or too
            large; the message names the file and the problem.
    """
    p = Path(path)
    _check_file(p)
    try:
        # Pillow warns between MAX_IMAGE_PIXELS and twice that; our own limit decides instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img_cm = Image.open(p)
    except Image.DecompressionBombError as e:
        raise ImageReadError(p, f"image too large (decompression-bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(p, "not an image or an unsupported image format") from e
    except OSError as e:
        raise ImageReadError(p, f"cannot open: {e}") from e

    with img_cm as img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageReadError(p, f"invalid image size {width}x{height}")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageReadError(
                p,
                f"image too large: {width}x{height} = {width * height} pixels exceeds the limit "
                f"of {max_pixels} (decompression-bomb guard; raise max_pixels if intended)",
            )
        try:
            img.load()
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file, not a bug here
            raise ImageReadError(p, f"corrupt or truncated image data ({_describe(e)})") from e
        if exif_orientation:
            img = _exif_upright(img, p)
        return _to_rgb_array(img, background)


def _check_file(p: Path) -> None:
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if not p.is_file():
        raise ImageReadError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "file is empty (0 bytes)")


def _describe(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _exif_upright(img: Image.Image, p: Path) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block should not lose the pixels
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", p, _describe(e))
        return img
    return img if out is None else out


def _has_alpha(img: Image.Image) -> bool:
    if "A" in img.getbands() or img.mode in ("RGBa", "La", "PA"):
        return True
    return bool(img.has_transparency_data)


def _to_rgb_array(img: Image.Image, background: tuple[int, int, int] | None) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        grey = _high_depth_grey_to_uint8(img)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"))
        rgb = rgba[:, :, :3]
        if background is None:
            return np.ascontiguousarray(rgb)
        a = rgba[:, :, 3:4].astype(np.float32) / 255.0
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        out = rgb.astype(np.float32) * a + bg * (1.0 - a)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _high_depth_grey_to_uint8(img: Image.Image) -> np.ndarray:
    """Map a single-channel 16/32-bit integer or float image to uint8 (see module docstring)."""
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
    # "I;16", "I;16B", "I;16L", "I;16N" and "I": np.asarray gives the native integer values.
    arr = np.asarray(img).astype(np.int64)
    return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# input discovery


@dataclass(frozen=True)
class InputScan:
    """What ``scan_inputs`` found.

    Attributes:
        items: ``(kind, path)`` pairs, ``kind`` in {"image", "video"}, naturally sorted by path
            (``frame2`` before ``frame10``), without duplicates.
        unknown: files with an extension that is neither an image nor a video one.
        missing: arguments that are neither an existing path nor a glob matching anything.
    """

    items: list[tuple[InputKind, Path]] = field(default_factory=list)
    unknown: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def kind_of(path: str | os.PathLike) -> InputKind | None:
    """``"image"`` or ``"video"`` from the file extension (case-insensitive), else ``None``."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def scan_inputs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = True
) -> InputScan:
    """Expand files, folders and glob patterns into classified input files.

    Folders are walked (recursively unless ``recursive=False``); hidden entries (names
    starting with ".", e.g. ``.DS_Store``, ``._IMG.jpg`` AppleDouble files) inside folders are
    skipped. Globs use :func:`glob.glob` (``**`` matches across folders when ``recursive``).
    An argument that exists literally is never treated as a glob.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: dict[str, Path] = {}
    missing: list[str] = []
    for raw in inputs:
        arg = os.fspath(raw)
        p = Path(arg).expanduser()
        if p.exists():
            candidates = [p]
        elif glob.has_magic(arg):
            candidates = [Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=recursive)]
            if not candidates:
                missing.append(arg)
        else:
            missing.append(arg)
            candidates = []
        for c in candidates:
            for f in _expand(c, recursive):
                files.setdefault(os.path.normcase(os.path.abspath(f)), f)

    items: list[tuple[InputKind, Path]] = []
    unknown: list[Path] = []
    for f in sorted(files.values(), key=_natural_key):
        kind = kind_of(f)
        if kind is None:
            unknown.append(f)
        else:
            items.append((kind, f))
    return InputScan(items=items, unknown=unknown, missing=missing)


def iter_inputs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    recursive: bool = True,
    *,
    strict: bool = False,
) -> list[tuple[InputKind, Path]]:
    """Sorted ``(kind, path)`` list of the images and videos named by files, folders or globs.

    Unknown extensions are reported: a logged warning naming each file, or a ``ValueError``
    when ``strict``. Use :func:`scan_inputs` to get them as data instead.

    Raises:
        FileNotFoundError: an argument is neither an existing path nor a matching glob (a
            typo in a batch command should not silently process nothing).
        ValueError: ``strict`` and some files have unknown extensions.
    """
    scan = scan_inputs(inputs, recursive=recursive)
    if scan.missing:
        raise FileNotFoundError(
            "no such file, folder or matching glob: " + ", ".join(repr(m) for m in scan.missing)
        )
    if scan.unknown:
        names = ", ".join(str(u) for u in scan.unknown)
        if strict:
            raise ValueError(f"files with unsupported extensions: {names}")
        for u in scan.unknown:
            log.warning("skipping %s: extension %r is neither an image nor a video type",
                        u, u.suffix or "(none)")
    return scan.items


def _expand(p: Path, recursive: bool) -> list[Path]:
    """Files under ``p``. Entries that are not regular files (a FIFO, a dangling link) are
    kept, so the caller reports them instead of dropping them silently."""
    if not p.is_dir():
        return [p]
    out: list[Path] = []
    if recursive:
        for root, dirs, names in os.walk(p):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            out.extend(Path(root) / n for n in names if not n.startswith("."))
    else:
        out.extend(c for c in p.iterdir() if not c.is_dir() and not c.name.startswith("."))
    return out


def _natural_key(p: Path) -> list[tuple[int, int | str]]:
    # "img2" < "img10": split digit runs so numbered frame sequences keep their order.
    parts = re.split(r"(\d+)", str(p))
    return [(0, int(s)) if s.isdigit() else (1, s.lower()) for s in parts if s]


# ---------------------------------------------------------------------------------------------
# in-memory images (the Python API)


def as_image_list(images: Any) -> list[Any]:
    """One image or many -> a list: paths, PIL images, numpy arrays, tensors (B, C, H, W)."""
    if images is None:
        raise InputError("no images given (got None): pass a path, a PIL image, an "
                         "(H, W, 3) array or a (C, H, W) tensor, or a list of them")
    if isinstance(images, (str, os.PathLike, np.ndarray, Image.Image)):
        return [images]
    if type(images).__module__.startswith("torch"):
        return list(images) if images.dim() == 4 else [images]
    try:
        return list(images)
    except TypeError:
        raise InputError(f"cannot read images from a {type(images).__name__}") from None


def to_uint8_image(item: Any, name: str = "<image>") -> np.ndarray:
    """An in-memory image -> (H, W, 3) uint8 RGB, or a one-line :class:`InputError`.

    Takes PIL images (any mode: 16-bit grey is scaled down, not clipped), numpy
    (H, W[, C]) uint8 or float in [0, 1], and tensors (C, H, W) likewise. A float image
    on 0..255, or one that is all NaN, is refused rather than silently clipped to white
    or black.
    """
    if isinstance(item, Image.Image):
        if item.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return np.repeat(_high_depth_grey_to_uint8(item)[..., None], 3, axis=2)
        item = np.asarray(item.convert("RGB"))
    if type(item).__module__.startswith("torch"):
        t = item.detach().cpu()
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise InputError(f"{name}: tensor images must be (C, H, W), got {tuple(t.shape)}")
        item = t.permute(1, 2, 0).numpy()
    arr = np.asarray(item)
    if arr.dtype == object or arr.ndim not in (2, 3):
        raise InputError(f"{name}: not an image (array of shape {arr.shape}, {arr.dtype})")
    if arr.dtype != np.uint8:
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{name}: images must be uint8 or float in [0, 1], got {arr.dtype}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"{name}: integer images must be uint8, got {arr.dtype} "
                             "(scale it to 0..255 uint8 or 0..1 float)")
        finite = np.isfinite(arr)
        if not finite.any():
            raise InputError(f"{name}: every pixel is NaN or infinite")
        hi = float(arr[finite].max())
        if hi > 1.0 + 1e-3:
            raise InputError(f"{name}: float image with values up to {hi:g}: floats must be "
                             "in [0, 1] (divide by 255, or pass uint8)")
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"{name}: expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])
