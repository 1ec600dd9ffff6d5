"""Reading ICT-FaceKit from disk: the compact npz (or the packaged lossless copy) and the
original repository's folder of OBJs, into :class:`ICTModelData` (numpy, un-cut)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emoca.assets.ict_facekit import PACKED_NAME, unpack_modes
from emoca.errors import InputError, file_problem
from emoca.io.arrays import read_npz
from emoca.io.obj import read_obj

__all__ = ["EXTRA_EXPRESSION_NAMES", "ICTModelData", "INDICES_NAME", "NEUTRAL_NAME",
           "NPZ_NAME", "find_obj", "read_npz_model", "read_obj_folder_model"]

# Modes shipped beside the 53 ARKit shapes; not part of vertex_indices.json["expressions"].
EXTRA_EXPRESSION_NAMES: tuple[str, ...] = (
    "PupilDilate_L",
    "PupilDilate_R",
    "cheekRaiser_L",
    "cheekRaiser_R",
)
NPZ_NAME = "ict_facekit_modes.npz"
NEUTRAL_NAME = "generic_neutral_mesh"
INDICES_NAME = "vertex_indices.json"


@dataclass(frozen=True)
class ICTModelData:
    """The full (un-cut) model as numpy arrays, however it was read.

    Attributes:
        neutral: (V, 3) float32 neutral vertices.
        identity_modes: (n_id, V, 3) float32 offsets from neutral.
        expression_modes: (n_exp, V, 3) float32 offsets from neutral.
        identity_names, expression_names: mode names, in mode order.
        faces: (F, 3) int64 triangles (quads split as (a,b,c),(a,c,d)).
        uv_coords: (Vt, 2) float32; uv_faces: (F, 3) int64 into uv_coords.
        landmark_vertices: (68,) int64 Multi-PIE landmark vertex indices (full mesh).
    """

    neutral: np.ndarray
    identity_modes: np.ndarray
    expression_modes: np.ndarray
    identity_names: tuple[str, ...]
    expression_names: tuple[str, ...]
    faces: np.ndarray
    uv_coords: np.ndarray
    uv_faces: np.ndarray
    landmark_vertices: np.ndarray


class _Modes(dict):
    """The packed modes as a dict usable like ``np.load``'s NpzFile in a ``with``."""

    def __enter__(self) -> _Modes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _open_modes(path: Path):
    """``np.load`` for an npz; the packaged copy's lossless xz format otherwise."""
    if path.name.endswith(PACKED_NAME):
        return _Modes(unpack_modes(path))
    return _Modes(read_npz(path))


def find_obj(folder: Path, stem: str) -> Path | None:
    for suffix in (".obj", ".obj.gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _expression_list(indices: dict, include_extra: bool) -> list[str]:
    names = list(indices["expressions"])
    if include_extra:
        names += [n for n in EXTRA_EXPRESSION_NAMES if n not in names]
    return names


def _read_indices(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"ICT-FaceKit vertex index file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            indices = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError names no file
            raise InputError(file_problem(path, f"not valid JSON: {e}")) from None
    if not isinstance(indices, dict):
        raise InputError(file_problem(path, "expected a JSON object with 'expressions' and "
                                            "'idx_to_landmark_verts'"))
    for key in ("expressions", "idx_to_landmark_verts"):
        if key not in indices:
            raise KeyError(f"{path} has no '{key}' entry (keys: {sorted(indices)})")
    if len(indices["idx_to_landmark_verts"]) != 68:
        raise ValueError(
            f"{path}: idx_to_landmark_verts has {len(indices['idx_to_landmark_verts'])} "
            "entries, expected 68"
        )
    return indices


def read_npz_model(
    npz_path: str | Path,
    neutral_obj: str | Path | None = None,
    vertex_indices_json: str | Path | None = None,
    n_identity: int = 100,
    include_extra_expressions: bool = False,
) -> ICTModelData:
    """Load the compact npz; topology/UVs from the neutral OBJ next to it by default.

    Args:
        npz_path: ``ict_facekit_modes.npz``.
        neutral_obj: ``generic_neutral_mesh.obj[.gz]`` (default: beside the npz).
        vertex_indices_json: ``vertex_indices.json`` (default: beside the npz).
        region: one of :data:`REGIONS`.
        n_identity: keep the first ``n_identity`` identity modes.
        include_extra_expressions: append PupilDilate_L/R and cheekRaiser_L/R.
    """
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise FileNotFoundError(f"ICT-FaceKit npz not found: {npz_path}")
    folder = npz_path.parent
    if neutral_obj is None:
        neutral_obj = find_obj(folder, NEUTRAL_NAME)
        if neutral_obj is None:
            raise FileNotFoundError(
                f"{NEUTRAL_NAME}.obj or {NEUTRAL_NAME}.obj.gz not found in {folder} "
                "(needed for faces and UVs); pass neutral_obj="
            )
    neutral_obj = Path(neutral_obj)
    if not neutral_obj.is_file():
        raise FileNotFoundError(f"neutral OBJ not found: {neutral_obj}")
    indices = _read_indices(
        Path(vertex_indices_json) if vertex_indices_json else folder / INDICES_NAME
    )
    wanted = _expression_list(indices, include_extra_expressions)

    with _open_modes(npz_path) as z:
        missing_keys = {
            "neutral",
            "identity_modes",
            "expression_modes",
            "identity_names",
            "expression_names",
        } - set(z)
        if missing_keys:
            raise KeyError(f"{npz_path} lacks arrays {sorted(missing_keys)}")
        id_names = [str(s) for s in z["identity_names"]]
        exp_names = [str(s) for s in z["expression_names"]]
        if not 0 <= n_identity <= len(id_names):
            raise ValueError(f"n_identity={n_identity}, the npz has {len(id_names)} modes")
        absent = [n for n in wanted if n not in exp_names]
        if absent:
            raise KeyError(f"{npz_path} has no expression modes named {absent}")
        neutral = z["neutral"].astype(np.float32)
        identity = z["identity_modes"][:n_identity].astype(np.float32)
        order = [exp_names.index(n) for n in wanted]
        expression = z["expression_modes"][order].astype(np.float32)

    mesh = read_obj(neutral_obj)
    if mesh.vertices.shape != neutral.shape:
        raise ValueError(
            f"{neutral_obj} has {len(mesh.vertices)} vertices, the npz neutral has "
            f"{len(neutral)}"
        )
    data = ICTModelData(
        neutral=neutral,
        identity_modes=identity,
        expression_modes=expression,
        identity_names=tuple(id_names[:n_identity]),
        expression_names=tuple(wanted),
        faces=mesh.faces,
        uv_coords=mesh.uvs,
        uv_faces=mesh.uv_faces,
        landmark_vertices=np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64),
    )
    return data


def read_obj_folder_model(
    folder: str | Path,
    n_identity: int = 100,
    include_extra_expressions: bool = False,
    progress: bool = True,
) -> ICTModelData:
    """Read the original ICT-FaceKit layout (``FaceXModel/`` of OBJs, plain or .gz).

    Args:
        folder: the repository root (holding ``FaceXModel/``) or ``FaceXModel/`` itself.
            Needs ``generic_neutral_mesh``, ``identity000..{n_identity-1}``, one OBJ per
            name in ``vertex_indices.json["expressions"]`` and ``vertex_indices.json``.
        region, n_identity, include_extra_expressions: as in :meth:`from_npz`.
        progress: show a tqdm bar while reading the OBJs (~150 files).

    Modes are stored as ``float32(target) - float32(neutral)``.
    """
    folder = Path(folder)
    root = folder / "FaceXModel" if (folder / "FaceXModel").is_dir() else folder
    if not root.is_dir():
        raise FileNotFoundError(f"ICT-FaceKit folder not found: {folder}")
    indices = _read_indices(root / INDICES_NAME)
    expression_names = _expression_list(indices, include_extra_expressions)
    identity_names = [f"identity{i:03d}" for i in range(n_identity)]

    stems = [NEUTRAL_NAME, *identity_names, *expression_names]
    paths = {s: find_obj(root, s) for s in stems}
    missing = [f"{s}.obj" for s, p in paths.items() if p is None]
    if missing:
        shown = ", ".join(missing[:12])
        if len(missing) > 12:
            shown += f", ... ({len(missing)} in all)"
        raise FileNotFoundError(
            f"ICT-FaceKit folder {root} is missing {shown} (plain or .gz accepted)"
        )

    mesh = read_obj(paths[NEUTRAL_NAME])
    neutral = mesh.vertices

    def read_mode(stem: str) -> np.ndarray:
        v = read_obj(paths[stem], with_faces=False).vertices
        if v.shape != neutral.shape:
            raise ValueError(
                f"{paths[stem]} has {len(v)} vertices, the neutral mesh has {len(neutral)}"
            )
        return v - neutral

    bar = tqdm(
        [*identity_names, *expression_names],
        desc="Reading ICT-FaceKit OBJs",
        # None lets tqdm hide itself when stderr is not a terminal.
        disable=None if progress else True,
        leave=False,
    )
    modes = {stem: read_mode(stem) for stem in bar}
    empty = np.zeros((0, *neutral.shape), dtype=np.float32)
    data = ICTModelData(
        neutral=neutral,
        identity_modes=(
            np.stack([modes[s] for s in identity_names]) if identity_names else empty
        ),
        expression_modes=np.stack([modes[s] for s in expression_names]),
        identity_names=tuple(identity_names),
        expression_names=tuple(expression_names),
        faces=mesh.faces,
        uv_coords=mesh.uvs,
        uv_faces=mesh.uv_faces,
        landmark_vertices=np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64),
    )
    return data
