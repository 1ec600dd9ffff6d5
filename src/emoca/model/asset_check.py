"""``emoca assets check``'s deep check: open every official file found, with the safe loaders,
and compare its keys and shapes with the layout the official downloads have (DESIGN.md).

A file that is present is not necessarily usable: a truncated download, a tampered pickle or
a file of the wrong kind under the right name all "exist". Each checker here reads its file
the way the pipeline will and returns a one-line summary, or raises; :func:`deep_check`
turns any problem into a one-line reason that names the file.

Example:
    >>> import tempfile
    >>> from emoca.assets.synthetic import write_official_assets
    >>> root = write_official_assets(tempfile.mkdtemp(), albedo=None)
    >>> deep_check("uv_face_mask", root / "FLAME/mask/uv_face_mask.png", root).ok
    True
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoca.errors import EmocaError, InputError, file_problem

__all__ = ["DeepCheck", "FLAME_LAYOUT", "LANDMARK_LAYOUT", "MEDIAPIPE_LAYOUT", "deep_check"]

N_VERTS, N_FACES = 5023, 9976

#: generic_model.pkl: key -> shape (None: any size on that axis)
FLAME_LAYOUT: Mapping[str, tuple[int | None, ...]] = {
    "f": (N_FACES, 3), "v_template": (N_VERTS, 3), "shapedirs": (N_VERTS, 3, None),
    "posedirs": (N_VERTS, 3, 36), "J_regressor": (5, N_VERTS), "kintree_table": (2, 5),
    "weights": (N_VERTS, 5),
}
#: landmark_embedding.npy's dict
LANDMARK_LAYOUT: Mapping[str, tuple[int, ...]] = {
    "static_lmk_faces_idx": (51,), "static_lmk_bary_coords": (51, 3),
    "dynamic_lmk_faces_idx": (79, 17), "dynamic_lmk_bary_coords": (79, 17, 3),
    "full_lmk_faces_idx": (1, 68), "full_lmk_bary_coords": (1, 68, 3),
}
#: mediapipe_landmark_embedding.npz
MEDIAPIPE_LAYOUT: Mapping[str, tuple[int, ...]] = {
    "lmk_face_idx": (105,), "lmk_b_coords": (105, 3), "landmark_indices": (105,),
}


@dataclass(frozen=True)
class DeepCheck:
    """``ok`` and a one-line ``detail``: what the file holds, or what is wrong with it."""

    ok: bool
    detail: str


def _shape_of(v: Any) -> tuple[int, ...]:
    shape = getattr(v, "shape", None)
    return tuple(int(n) for n in shape) if shape is not None else ()


def check_layout(d: Any, layout: Mapping[str, tuple[int | None, ...]], path: Path) -> None:
    """Every key of ``layout`` in ``d`` with that shape; raises InputError naming the file."""
    if not isinstance(d, Mapping):
        raise InputError(file_problem(path, f"expected a dict of arrays, found "
                                            f"{type(d).__name__}"))
    missing = [k for k in layout if k not in d]
    if missing:
        raise InputError(file_problem(path, f"lacks {missing} (has {sorted(map(str, d))[:12]})"))
    for key, want in layout.items():
        got = _shape_of(d[key])
        if len(got) != len(want) or any(
                w is not None and g != w for g, w in zip(got, want, strict=True)):
            shown = tuple("*" if w is None else w for w in want)
            raise InputError(file_problem(path, f"'{key}' has shape {got}, expected {shown}"))


def _flame(path: Path, root: Path) -> str:
    from emoca.face_model.flame import SHAPE_DIRS_TOTAL
    from emoca.io.safe_pickle import load_pickle

    model = load_pickle(path)
    check_layout(model, FLAME_LAYOUT, path)
    n_dirs = _shape_of(model["shapedirs"])[2]
    if n_dirs < SHAPE_DIRS_TOTAL + 50:
        raise InputError(file_problem(path, f"shapedirs has {n_dirs} directions, expected "
                                            f"{SHAPE_DIRS_TOTAL} shape + 50 or more expression"))
    if not np.isfinite(np.asarray(model["v_template"], dtype=np.float64)).all():
        raise InputError(file_problem(path, "v_template holds NaN or infinite values"))
    return f"FLAME: {N_VERTS} vertices, {N_FACES} faces, {n_dirs} shape+expression directions"


def _landmarks(path: Path, root: Path) -> str:
    from emoca.io.safe_pickle import load_npy

    check_layout(load_npy(path), LANDMARK_LAYOUT, path)
    return "68 landmarks (51 static, 17 contour x 79 yaw rows)"


def _mediapipe(path: Path, root: Path) -> str:
    from emoca.io.arrays import read_npz

    check_layout(read_npz(path), MEDIAPIPE_LAYOUT, path)
    return "105 MediaPipe landmarks"


def _template(path: Path, root: Path) -> str:
    from emoca.face_model.flame import load_flame_uv

    uv = load_flame_uv(path)
    if tuple(uv.uv_faces.shape) != (N_FACES, 3):
        raise InputError(file_problem(path, f"{uv.uv_faces.shape[0]} UV faces, expected "
                                            f"{N_FACES} (FLAME's)"))
    return f"{len(uv.uv_coords)} UV coordinates, {N_FACES} faces"


def _displacement(path: Path, root: Path) -> str:
    from emoca.io.arrays import read_npy

    arr = read_npy(path)
    if arr.shape != (256, 256):
        raise InputError(file_problem(path, f"shape {arr.shape}, expected (256, 256)"))
    return "256 x 256 displacement"


def _mask(path: Path, root: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            size = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(file_problem(path, f"not a readable image ({e})")) from None
    return f"{size[0]} x {size[1]} mask"


def _albedo(path: Path, root: Path) -> str:
    from emoca.face_model.flame import FlameAlbedo

    albedo = FlameAlbedo.from_file(path)
    return f"albedo with {albedo.basis.shape[1]} components"


def _deca(path: Path, root: Path) -> str:
    from emoca.model.checkpoints import load_deca_tar

    modules = load_deca_tar(path)
    return "DECA: " + ", ".join(f"{m} ({len(sd)} tensors)" for m, sd in modules.items())


def _emoca(path: Path, root: Path) -> str:
    from emoca.model.checkpoints import load_emoca_folder

    cfg, modules = load_emoca_folder(path, root)
    ckpt = Path(cfg["checkpoint"]).relative_to(path) if "checkpoint" in cfg else "?"
    return f"{ckpt}: " + ", ".join(f"{m} ({len(sd)})" for m, sd in modules.items())


def _emotion(path: Path, root: Path) -> str:
    from emoca.model.checkpoints import load_emotion_net

    cfg, sd = load_emotion_net(path)
    return f"{Path(cfg['checkpoint']).relative_to(path)}: emotion net ({len(sd)} tensors)"


def _ict(path: Path, root: Path) -> str:
    from emoca.face_model.ict import ICTFaceModel

    model = ICTFaceModel.from_dir(path)
    return f"ICT-FaceKit: {model.num_vertices} vertices"


CHECKS: dict[str, Callable[[Path, Path], str]] = {
    "flame_model": _flame, "landmark_embedding": _landmarks, "mediapipe_embedding": _mediapipe,
    "head_template": _template, "fixed_displacement": _displacement,
    "uv_face_eye_mask": _mask, "uv_face_mask": _mask, "albedo": _albedo, "deca_model": _deca,
    "emoca_v2_lr_mse_20": _emoca, "emoca_v2_lr_cos_1.5": _emoca, "emoca_v2_mp": _emoca,
    "emoca": _emoca, "emotion_net": _emotion, "ict_facekit": _ict,
}


def deep_check(key: str, path: str | os.PathLike, root: str | os.PathLike) -> DeepCheck:
    """Open ``path`` (asset ``key`` of the assets folder ``root``) and check its layout.

    Returns:
        ``DeepCheck(True, summary)``, or ``DeepCheck(False, reason)`` where the reason is
        one line naming the file; never raises for a bad file.
    """
    path, root = Path(path), Path(root)
    check = CHECKS.get(key)
    if check is None:
        return DeepCheck(True, "present (no deep check for this file)")
    try:
        return DeepCheck(True, check(path, root))
    except (EmocaError, OSError, ValueError, KeyError, TypeError, RuntimeError, MemoryError,
            pickle.UnpicklingError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, KeyError) and text.startswith("'"):
            text = f"missing key {text}"
        if str(path) not in text and path.name not in text:
            text = file_problem(path, text)
        return DeepCheck(False, text)
