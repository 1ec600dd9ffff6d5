"""Where each FLAME-side file of a reconstruction model comes from, and reading the two
small UV-space ones (face/eye mask, fixed displacement).

An official ``cfg.yaml`` names absolute paths on its authors' machines; a path that exists
wins, otherwise the file is looked up in the user's assets folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from emoca.assets.locate import Assets, MissingAssetError
from emoca.io.arrays import read_npy

__all__ = ["FacePaths", "face_paths", "read_fixed_displacement", "read_mask"]


@dataclass(frozen=True)
class FacePaths:
    """The FLAME-side files a model needs (see :func:`face_paths`)."""

    flame_model: Path
    landmark_embedding: Path
    head_template: Path
    face_eye_mask: Path
    fixed_displacement: Path
    mediapipe_embedding: Path | None = None
    albedo: Path | None = None


_CFG_PATH_KEYS = {
    "flame_model": ("flame_model_path", "flame_model"),
    "landmark_embedding": ("flame_lmk_embedding_path", "landmark_embedding"),
    "head_template": ("topology_path", "head_template"),
    "face_eye_mask": ("face_eye_mask_path", "uv_face_eye_mask"),
    "fixed_displacement": ("fixed_displacement_path", "fixed_displacement"),
    "mediapipe_embedding": ("flame_mediapipe_lmk_embedding_path", "mediapipe_embedding"),
    "albedo": ("tex_path", "albedo"),
}
_OPTIONAL = ("mediapipe_embedding", "albedo")


def face_paths(assets: Assets, model_cfg: Mapping[str, Any] | None,
                mediapipe: bool, texture: bool) -> FacePaths:
    """Resolve each FLAME file: the config's (resolved) path if it exists, else the assets'.

    Required files that exist nowhere raise :class:`MissingAssetError` (which says where
    to get them); the albedo and MediaPipe embedding are optional.
    """
    found: dict[str, Path | None] = {}
    for field_name, (cfg_key, asset_key) in _CFG_PATH_KEYS.items():
        if (field_name == "mediapipe_embedding" and not mediapipe) or (
                field_name == "albedo" and not texture):
            found[field_name] = None
            continue
        value = (model_cfg or {}).get(cfg_key)
        path = Path(value) if isinstance(value, str) and value else None
        if path is None or not path.exists():
            path = assets.find(asset_key)
        if path is None and field_name not in _OPTIONAL:
            path = assets.path(asset_key)  # raises with instructions
        found[field_name] = path
    if mediapipe and found["mediapipe_embedding"] is None:
        raise MissingAssetError("this model was trained with MediaPipe landmarks but "
                                "FLAME/geometry/mediapipe_landmark_embedding.npz is missing")
    return FacePaths(**found)  # type: ignore[arg-type]


def read_mask(path: Path, size: int) -> torch.Tensor:
    """UV mask PNG -> (size, size) float in [0, 1] from channel 0, nearest-resized (DECA)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    mask = torch.from_numpy(arr.astype(np.float32) / 255.0)[None, None]
    return F.interpolate(mask, size=(size, size))[0, 0]


def read_fixed_displacement(path: Path, size: int) -> torch.Tensor:
    arr = read_npy(path)
    if arr.shape != (size, size):
        raise ValueError(f"{path}: fixed displacement is {arr.shape}, expected ({size}, {size})")
    return torch.from_numpy(np.asarray(arr, dtype=np.float32))
