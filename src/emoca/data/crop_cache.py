"""A cache of preprocessed face crops and the torch Dataset that reads it.

Layout written by :func:`write_crop_cache` and read by :class:`FaceCropDataset`::

    <cache>/index.jsonl          one JSON object per crop (see below), in record order
    <cache>/crops/<name>.png     RGB crops, size x size (224 by default)

Each index line: ``{"key", "image" (relative to the cache), "source" (the original image
path), "expression" (-1 = none), "valence", "arousal" (null = none), "box" (source image
pixels or null), "landmarks" (68 x [x, y] in *crop* pixels, or null), "group"}``.

Writing is atomic and resumable: every PNG is written to a temporary file and renamed into
place, and ``index.jsonl`` is only ever replaced whole (every ``flush_every`` crops and at
the end), so readers never see a partial file. A second call with the same records skips
every crop whose PNG already exists, without computing it when crops come from a callable;
a present crop keeps its existing index entry (labels are not refreshed: delete the PNG
to redo one); entries of an existing index whose keys are not among the new records are
kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from emoca.data.records import NO_EXPRESSION, FaceRecord
from emoca.io.atomic import atomic_write

__all__ = [
    "CROPS_DIR",
    "INDEX_NAME",
    "FaceCropDataset",
    "crop_file_name",
    "read_crop_index",
    "write_crop_cache",
]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.jsonl"
CROPS_DIR = "crops"
N_LANDMARKS = 68

CropItem = Any  # image array/tensor, or (image, landmarks_in_crop_pixels)
CropSource = Sequence[CropItem] | Iterable[CropItem] | Callable[[FaceRecord], CropItem]


def crop_file_name(key: str) -> str:
    """File name for a record key: readable slug + hash (keys may contain '/', collide)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[-80:] or "crop"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"{slug}_{digest}.png"


def _to_uint8_hwc(image: Any, size: int) -> np.ndarray:
    """(H, W, 3) uint8, (H, W, 3) float in [0, 1], or (3, H, W) tensor/array -> uint8 HWC."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"crop must be (H, W, 3) or (3, H, W), got {arr.shape}")
    if arr.shape[:2] != (size, size):
        raise ValueError(f"crop must be {size}x{size}, got {arr.shape[0]}x{arr.shape[1]}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _entry(record: FaceRecord, image_rel: str, landmarks: Any | None) -> dict[str, Any]:
    lmk = None
    if landmarks is not None:
        lmk = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2).tolist()
    return {
        "key": record.key,
        "image": image_rel,
        "source": record.path,
        "expression": int(record.expression),
        "valence": _nan_to_none(record.valence),
        "arousal": _nan_to_none(record.arousal),
        "box": None if record.box is None else [float(v) for v in record.box],
        "landmarks": lmk,
        "group": record.group,
    }


def read_crop_index(cache_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of ``<cache_dir>/index.jsonl`` in file order ([] if there is none yet)."""
    path = Path(cache_dir) / INDEX_NAME
    if not path.exists():
        return []
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {n}: {exc}") from exc
    return entries


def _write_index(out_dir: Path, entries: Iterable[dict[str, Any]]) -> None:
    with atomic_write(out_dir / INDEX_NAME, "w") as f:
        for e in entries:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")


def _write_png(path: Path, image: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG")
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def write_crop_cache(
    records: Sequence[FaceRecord],
    crops: CropSource,
    out_dir: str | os.PathLike,
    size: int = 224,
    flush_every: int = 256,
    progress: bool = False,
) -> Path:
    """Write face crops and their labels as a cache :class:`FaceCropDataset` reads.

    Args:
        records: the faces; keys must be unique. Their ``landmarks`` are stored as the
            crop-pixel landmarks unless a crop item brings its own.
        crops: per record, the crop as (size, size, 3) uint8, (size, size, 3) float in
            [0, 1] or (3, size, size) float tensor/array in [0, 1], or a pair
            ``(crop, landmarks_in_crop_pixels (68, 2))``. Either a sequence / iterable
            aligned with ``records`` (consumed even for skipped items) or a callable
            ``record -> item``, called only for crops not yet in the cache.
        out_dir: cache folder (created).
        size: crop side in pixels.
        flush_every: rewrite the index after this many newly written crops.
        progress: show a tqdm bar.

    Returns:
        Path of ``index.jsonl``.
    """
    out = Path(out_dir)
    (out / CROPS_DIR).mkdir(parents=True, exist_ok=True)
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError("record keys must be unique")
    old = {e["key"]: e for e in read_crop_index(out)}
    new_keys = set(keys)
    kept_old = [e for k, e in old.items() if k not in new_keys]

    source_iter = None if callable(crops) else iter(crops)
    entries: list[dict[str, Any] | None] = [None] * len(records)
    written = 0

    def flush() -> None:
        _write_index(out, kept_old + [e for e in entries if e is not None])

    for i, record in enumerate(tqdm(records, desc="crop cache", disable=not progress)):
        image_rel = f"{CROPS_DIR}/{crop_file_name(record.key)}"
        png = out / image_rel
        item = None
        if source_iter is not None:
            try:
                item = next(source_iter)
            except StopIteration:
                raise ValueError(f"crops ran out at record {i} of {len(records)}") from None
        if png.exists():
            entries[i] = old.get(record.key) or _entry(record, image_rel, record.landmarks)
            continue
        if item is None:
            item = crops(record)  # type: ignore[operator]
        landmarks = record.landmarks
        if isinstance(item, tuple):
            item, landmarks = item
        _write_png(png, _to_uint8_hwc(item, size))
        entries[i] = _entry(record, image_rel, landmarks)
        written += 1
        if flush_every > 0 and written % flush_every == 0:
            flush()
    flush()
    logger.info("crop cache %s: %d written, %d present", out, written, len(records) - written)
    return out / INDEX_NAME


class FaceCropDataset(Dataset):
    """Torch dataset over a crop cache written by :func:`write_crop_cache`.

    Each item is a dict:

    * ``image``: (3, S, S) float32 RGB in [0, 1];
    * ``expression``: () int64, -1 if unlabelled;
    * ``va``: (2,) float32 valence, arousal (nan if unlabelled);
    * ``landmarks``: (68, 2) float32 crop pixels (nan if absent);
    * ``key``: str; ``index``: int.

    Args:
        cache_dir: the cache folder.
        transform: optional ``dict -> dict`` applied to each item (augmentation).
        require: keep only entries with these labels: any of ``"expression"``, ``"va"``,
            ``"landmarks"``.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        require: Iterable[str] = (),
    ) -> None:
        self.root = Path(cache_dir)
        entries = read_crop_index(self.root)
        if not entries and not (self.root / INDEX_NAME).exists():
            raise FileNotFoundError(f"{self.root / INDEX_NAME}: no crop cache index")
        req = set(require)
        unknown = req - {"expression", "va", "landmarks"}
        if unknown:
            raise ValueError(f"unknown requirement(s) {sorted(unknown)}")
        self.entries = [e for e in entries if self._satisfies(e, req)]
        self.transform = transform

    @staticmethod
    def _satisfies(entry: dict[str, Any], req: set[str]) -> bool:
        if "expression" in req and entry.get("expression", NO_EXPRESSION) < 0:
            return False
        if "va" in req and (entry.get("valence") is None or entry.get("arousal") is None):
            return False
        return not ("landmarks" in req and entry.get("landmarks") is None)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def records(self) -> list[FaceRecord]:
        """The entries as :class:`FaceRecord` (``path`` = crop PNG, landmarks in crop px)."""
        out = []
        for e in self.entries:
            lmk = e.get("landmarks")
            box = e.get("box")
            out.append(
                FaceRecord(
                    path=str(self.root / e["image"]),
                    key=e["key"],
                    expression=int(e.get("expression", NO_EXPRESSION)),
                    valence=float("nan") if e.get("valence") is None else float(e["valence"]),
                    arousal=float("nan") if e.get("arousal") is None else float(e["arousal"]),
                    box=None if box is None else tuple(box),
                    landmarks=None if lmk is None else np.asarray(lmk, dtype=np.float32),
                    group=e.get("group", ""),
                )
            )
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        e = self.entries[index]
        with Image.open(self.root / e["image"]) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        lmk = e.get("landmarks")
        landmarks = (
            torch.full((N_LANDMARKS, 2), float("nan"))
            if lmk is None
            else torch.tensor(lmk, dtype=torch.float32).reshape(-1, 2)
        )
        va = [e.get("valence"), e.get("arousal")]
        sample = {
            "image": image,
            "expression": torch.tensor(int(e.get("expression", NO_EXPRESSION)), dtype=torch.int64),
            "va": torch.tensor([float("nan") if v is None else v for v in va], dtype=torch.float32),
            "landmarks": landmarks,
            "key": e["key"],
            "index": index,
        }
        return self.transform(sample) if self.transform is not None else sample
