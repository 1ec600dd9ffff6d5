"""Look-alike official assets: the licensed files' layout, keys, shapes and pickle format.

FLAME, DECA and EMOCA files are licensed and never ship with the project. Tests, and a user
waiting for their registration, use files written here instead: the same paths, keys,
dtypes, shapes and pickle structure (Python 2 protocol, chumpy ``shapedirs``, old scipy
sparse ``J_regressor``, torch tensors pickled inside ``landmark_embedding.npy``), with a
smooth head-like geometry so that renders and fits look like a face, deterministic from a
seed. Nothing here is the real model: shapes of faces it produces are made up.

Example:
    >>> import tempfile
    >>> from emoca.assets.synthetic import write_official_assets
    >>> root = write_official_assets(tempfile.mkdtemp())
    >>> (root / "FLAME/geometry/generic_model.pkl").exists()
    True
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PIL import Image

from emoca.assets.py2pickle import PickleAs, dumps_py2

__all__ = ["HeadMesh", "make_head_mesh", "write_official_assets", "write_flame_files"]

log = logging.getLogger(__name__)

N_VERTS, N_FACES, N_UVS = 5023, 9976, 5118
N_RINGS, LAST_RING = 95, 68  # with a pole: V = 1 + sum(rings), F = 2 (V - 1) - last ring
THETA_MAX = 0.78 * np.pi  # polar angle of the neck opening
UINT32_MINUS_ONE = 2**32 - 1


@dataclass(frozen=True)
class HeadMesh:
    """A ring-structured head surface with FLAME's vertex, face and UV counts."""

    vertices: np.ndarray  # (5023, 3) float64, metres, y up, face towards +z
    faces: np.ndarray  # (9976, 3) int64
    uvs: np.ndarray  # (5118, 2) in [0, 1], v up (OBJ convention)
    uv_faces: np.ndarray  # (9976, 3) int64
    theta: np.ndarray  # (5023,) polar angle from the crown, radians
    phi: np.ndarray  # (5023,) azimuth, pi = front (+z)


def _ring_sizes() -> np.ndarray:
    theta = np.linspace(0, THETA_MAX, N_RINGS + 1)[1:]
    weight = np.maximum(np.sin(theta), 0.08)
    sizes = np.maximum(np.round(weight / weight[:-1].sum() * (N_VERTS - 1 - LAST_RING)), 6)
    sizes = sizes.astype(np.int64)
    sizes[-1] = LAST_RING
    # spread the rounding remainder over the widest rings so the total is exact
    diff = (N_VERTS - 1) - sizes.sum()
    order = np.argsort(-sizes[:-1])
    for k in range(abs(int(diff))):
        sizes[order[k % len(order)]] += np.sign(diff)
    return sizes


def _head_surface(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Positions (N,3) of a smooth head-and-neck surface for polar/azimuth angles."""
    front = np.cos(phi - np.pi)  # 1 at the face, -1 at the back
    st, ct = np.sin(theta), np.cos(theta)
    # skull ellipsoid narrowing into a neck below the chin
    neck = 1.0 / (1.0 + np.exp(-(theta - 0.66 * np.pi) * 14.0))
    radius_xz = (1.0 - 0.42 * neck)
    x = 0.078 * st * np.sin(phi - np.pi) * radius_xz
    z = 0.092 * st * front * radius_xz + 0.012 * np.clip(front, 0, None) * st
    y = 0.105 * ct - 0.05 * neck * (theta - 0.66 * np.pi)
    pos = np.stack([x, y, z], -1)
    # nose, brow and chin bumps on the front
    def bump(t0: float, width_t: float, width_p: float, height: float) -> np.ndarray:
        g = np.exp(-(((theta - t0) / width_t) ** 2) - (((phi - np.pi) / width_p) ** 2))
        return height * g
    pos[:, 2] += bump(0.47 * np.pi, 0.07, 0.16, 0.022)  # nose
    pos[:, 2] += bump(0.36 * np.pi, 0.04, 0.6, 0.006)  # brow ridge
    pos[:, 2] += bump(0.66 * np.pi, 0.05, 0.35, 0.008)  # chin
    return pos


def make_head_mesh() -> HeadMesh:
    """Build the look-alike FLAME template topology and UVs (deterministic, no seed)."""
    sizes = _ring_sizes()
    thetas = np.linspace(0, THETA_MAX, N_RINGS + 1)[1:]
    theta = [np.zeros(1)]
    phi = [np.full(1, np.pi)]
    uvs = [np.array([[0.5, 1.0]])]
    starts, uv_starts = [], []
    v_count, uv_count = 1, 1
    for n, t in zip(sizes, thetas, strict=True):
        p = np.arange(n) / n * 2 * np.pi  # 0 = back of the head: the UV seam
        theta.append(np.full(n, t))
        phi.append(p)
        u = np.append(p, 2 * np.pi) / (2 * np.pi)
        uvs.append(np.stack([u, np.full(n + 1, 1.0 - t / THETA_MAX * 0.98)], -1))
        starts.append(v_count)
        uv_starts.append(uv_count)
        v_count += n
        uv_count += n + 1
    theta_a, phi_a = np.concatenate(theta), np.concatenate(phi)
    faces, uv_faces = [], []
    # crown fan
    n0, s0, u0 = sizes[0], starts[0], uv_starts[0]
    for j in range(n0):
        faces.append((0, s0 + (j + 1) % n0, s0 + j))
        uv_faces.append((0, u0 + j + 1, u0 + j))
    # merge-walk between consecutive rings: n_a + n_b triangles each
    for r in range(N_RINGS - 1):
        na, nb = sizes[r], sizes[r + 1]
        sa, sb, ua, ub = starts[r], starts[r + 1], uv_starts[r], uv_starts[r + 1]
        i = j = 0
        while i < na or j < nb:
            advance_a = j >= nb or (i < na and (i + 1) / na <= (j + 1) / nb)
            if advance_a:
                faces.append((sa + i, sa + (i + 1) % na, sb + j % nb))
                uv_faces.append((ua + i, ua + i + 1, ub + j))
                i += 1
            else:
                faces.append((sa + i % na, sb + (j + 1) % nb, sb + j))
                uv_faces.append((ua + i, ub + j + 1, ub + j))
                j += 1
    faces_a = np.asarray(faces, dtype=np.int64)
    uv_faces_a = np.asarray(uv_faces, dtype=np.int64)
    verts = _head_surface(theta_a, phi_a)
    # the merge walk winds every triangle the same way; make that way outward
    n = np.cross(verts[faces_a[:, 1]] - verts[faces_a[:, 0]],
                 verts[faces_a[:, 2]] - verts[faces_a[:, 0]])
    if (n * verts[faces_a].mean(1)).sum() < 0:
        faces_a, uv_faces_a = faces_a[:, [0, 2, 1]], uv_faces_a[:, [0, 2, 1]]
    assert faces_a.shape == (N_FACES, 3) and verts.shape == (N_VERTS, 3)
    return HeadMesh(verts, faces_a, np.concatenate(uvs), uv_faces_a, theta_a, phi_a)


# ---------------------------------------------------------------------- FLAME model


def _smooth_basis(v: np.ndarray) -> np.ndarray:
    """(V, 20) low-order polynomial features of normalised positions."""
    p = (v - v.mean(0)) / v.std(0)
    x, y, z = p.T
    cols = [np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x, y * y, z * z,
            x * y * z, x * x * y, x * x * z, y * y * x, y * y * z, z * z * x, z * z * y,
            x ** 3, y ** 3, z ** 3]
    b = np.stack(cols, -1)
    return b / np.linalg.norm(b, axis=0, keepdims=True) * np.sqrt(len(v))


def _face_region(mesh: HeadMesh) -> np.ndarray:
    """(V,) weight in [0,1]: 1 on the lower front face (where expressions act)."""
    front = np.clip(np.cos(mesh.phi - np.pi), 0, 1) ** 2
    band = np.exp(-(((mesh.theta - 0.52 * np.pi) / (0.17 * np.pi)) ** 2))
    return front * band


def _nearest(v: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(((v - target) ** 2).sum(-1))[:k]


@dataclass(frozen=True)
class _Rig:
    joints_regressor: sp.csc_matrix
    weights: np.ndarray
    joints: np.ndarray


def _rig(mesh: HeadMesh) -> _Rig:
    v = mesh.vertices
    rows, cols, vals = [], [], []
    eye_y = v[:, 1].max() * 0.25
    targets = {
        0: _nearest(v, np.array([0.0, v[:, 1].min(), 0.0]), 60),  # root: neck base ring
        1: _nearest(v, np.array([0.0, -0.085, 0.0]), 60),  # neck
        2: _nearest(v, np.array([0.0, -0.045, 0.01]), 80),  # jaw
        3: _nearest(v, np.array([0.032, eye_y, 0.08]), 12),  # left eye
        4: _nearest(v, np.array([-0.032, eye_y, 0.08]), 12),  # right eye
    }
    for j, idx in targets.items():
        rows += [j] * len(idx)
        cols += list(idx)
        vals += [1.0 / len(idx)] * len(idx)
    jreg = sp.csc_matrix((np.asarray(vals), (np.asarray(rows), np.asarray(cols))),
                         shape=(5, N_VERTS))
    joints = np.asarray(jreg @ v)
    t = mesh.theta / np.pi
    front = np.clip(np.cos(mesh.phi - np.pi), 0, 1)
    w = np.zeros((N_VERTS, 5))
    w[:, 0] = 1 / (1 + np.exp(-(t - 0.74) * 40))  # below the neck
    w[:, 1] = 1 - w[:, 0]
    jaw = front ** 1.5 * np.exp(-(((t - 0.62) / 0.07) ** 2)) * (1 - w[:, 0])
    w[:, 2] = jaw
    w[:, 1] -= jaw
    for j in (3, 4):
        d = np.linalg.norm(v - joints[j], axis=-1)
        e = np.exp(-((d / 0.008) ** 2)) * 0.9
        w[:, j] = e
        w[:, 1] -= e
    w = np.clip(w, 0, None)
    w /= w.sum(1, keepdims=True)
    return _Rig(jreg, w, joints)


def _project_points(v: np.ndarray, faces: np.ndarray, xy: np.ndarray,
                    front_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast rays along -z through (x, y): the front-most face hit and its barycentrics."""
    tri = v[faces[front_faces]]  # (F,3,3)
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    idx_out = np.zeros(len(xy), dtype=np.int64)
    bary_out = np.zeros((len(xy), 3))
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(den) > 1e-14
    for i, p in enumerate(xy):
        w0 = ((b[:, 1] - c[:, 1]) * (p[0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[1] - c[:, 1]))
        w1 = ((c[:, 1] - a[:, 1]) * (p[0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[1] - c[:, 1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            w0, w1 = w0 / den, w1 / den
        w2 = 1 - w0 - w1
        inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        if not inside.any():  # outside the silhouette: nearest face centre instead
            k = int(np.argmin(((tri[:, :, :2].mean(1) - p) ** 2).sum(-1)))
            idx_out[i], bary_out[i] = front_faces[k], (1 / 3, 1 / 3, 1 / 3)
            continue
        cand = np.nonzero(inside)[0]
        z = (np.stack([w0[cand], w1[cand], w2[cand]], -1) * tri[cand, :, 2]).sum(-1)
        k = cand[np.argmax(z)]
        idx_out[i] = front_faces[k]
        bary_out[i] = (w0[k], w1[k], w2[k])
    return idx_out, bary_out


def _layout68(mesh: HeadMesh) -> np.ndarray:
    """(68, 2) x,y in metres of the iBUG 68 layout on this head's front (x to subject's left)."""
    eye_y = mesh.vertices[:, 1].max() * 0.25
    pts = np.zeros((68, 2))
    t = np.linspace(-0.92, 0.92, 17) * np.pi / 2  # jaw: image-left (x<0) to image-right
    pts[:17] = np.stack([0.066 * np.sin(t), eye_y - 0.01 - 0.085 * np.cos(t) ** 1.3], -1)
    for k, side in ((17, -1), (22, 1)):  # brows, outer to inner on each side mirrored
        s = np.linspace(0.055, 0.012, 5) if side < 0 else np.linspace(0.012, 0.055, 5)
        pts[k:k + 5] = np.stack([side * s, eye_y + 0.018 + 0.006 * np.sin(s / 0.055 * np.pi)], -1)
    pts[27:31] = np.stack([np.zeros(4), eye_y - np.linspace(0.005, 0.035, 4)], -1)
    pts[31:36] = np.stack([np.linspace(-0.013, 0.013, 5), np.full(5, eye_y - 0.042)], -1)
    for k, cx in ((36, -0.032), (42, 0.032)):
        a = np.array([np.pi, 0.75 * np.pi, 0.25 * np.pi, 0.0, -0.25 * np.pi, -0.75 * np.pi])
        pts[k:k + 6] = np.stack([cx + 0.012 * np.cos(a), eye_y + 0.005 * np.sin(a)], -1)
    mouth_y = eye_y - 0.062
    a = np.pi - np.arange(12) / 12 * 2 * np.pi
    pts[48:60] = np.stack([0.025 * np.cos(a), mouth_y + 0.011 * np.sin(a)], -1)
    a = np.pi - np.arange(8) / 8 * 2 * np.pi
    pts[60:68] = np.stack([0.018 * np.cos(a), mouth_y + 0.003 * np.sin(a)], -1)
    return pts


def _rot_y(deg: float) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])


def _landmark_embedding(mesh: HeadMesh, rng: np.random.Generator) -> dict:
    import torch

    v, f = mesh.vertices, mesh.faces
    centres = v[f].mean(1)
    front = np.nonzero((centres[:, 2] > 0.0) & (mesh.theta[f].mean(1) < 0.72 * np.pi))[0]
    layout = _layout68(mesh)
    full_idx, full_bary = _project_points(v, f, layout, front)
    dyn_idx = np.zeros((79, 17), dtype=np.int64)
    dyn_bary = np.zeros((79, 17, 3))
    for row in range(79):
        yaw = row if row < 40 else -(row - 39)
        # silhouette seen by a camera when the head is turned by -yaw
        rv = v @ _rot_y(-yaw).T
        rc = rv[f].mean(1)
        cand = np.nonzero((rc[:, 2] > -0.01) & (mesh.theta[f].mean(1) < 0.72 * np.pi))[0]
        dyn_idx[row], dyn_bary[row] = _project_points(rv, f, layout[:17] * [1.0, 1.0], cand)
    sel = rng.choice(len(front), 105, replace=False)
    return {
        "static_lmk_faces_idx": full_idx[17:].astype(np.int64),
        "static_lmk_bary_coords": full_bary[17:],
        "dynamic_lmk_faces_idx": torch.from_numpy(dyn_idx),
        "dynamic_lmk_bary_coords": torch.from_numpy(dyn_bary.astype(np.float32)),
        "full_lmk_faces_idx": full_idx[None].astype(np.int64),
        "full_lmk_bary_coords": full_bary[None],
        "_mediapipe_faces": front[sel],
    }


def _flame_dict(mesh: HeadMesh, rng: np.random.Generator, *, chumpy: bool) -> dict:
    v = mesh.vertices
    basis = _smooth_basis(v)  # (V,20)
    region = _face_region(mesh)
    # unit coefficients move the surface by millimetres, as FLAME's do
    scale = np.concatenate([8e-4 / (1 + np.arange(300) / 8), 1e-3 / (1 + np.arange(100) / 12)])
    coef = rng.standard_normal((20, 3, 400)) / np.sqrt(20)
    shapedirs = np.einsum("vk,kcn->vcn", basis, coef) * scale
    shapedirs[:, :, 300:] *= region[:, None, None] * 2.0
    posedirs = np.einsum("vk,kcn->vcn", basis, rng.standard_normal((20, 3, 36))) * 1e-4
    rig = _rig(mesh)
    kintree = np.array([[UINT32_MINUS_ONE, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    out = {
        "f": mesh.faces.astype(np.uint32),
        "v_template": v.astype(np.float64),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": posedirs.astype(np.float64),
        "J_regressor": rig.joints_regressor,
        "kintree_table": kintree,
        "weights": rig.weights,
        "J": rig.joints,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    if chumpy:  # FLAME 2020 pickles shapedirs as a chumpy Ch holding the array in `x`
        out["shapedirs"] = PickleAs("chumpy.ch", "Ch", {"x": out["shapedirs"], "_itr": None})
    return out


def _write_obj(path: Path, verts: np.ndarray, uvs: np.ndarray, faces: np.ndarray,
               uv_faces: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {w:.6f}" for u, w in uvs]
    lines += [f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
              for (a, b, c), (ta, tb, tc) in zip(faces, uv_faces, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def _uv_masks(mesh: HeadMesh, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """face_eye mask and face mask (eyes cut out) in UV space, uint8 0/255 (size,size)."""
    r = (np.arange(size) + 0.5) / size
    vv, uu = 1.0 - r[:, None], r[None, :]
    phi = uu * 2 * np.pi
    theta = (1.0 - vv) / 0.98 * THETA_MAX
    face = (np.abs(phi - np.pi) < 1.15) & (theta > 0.27 * np.pi) & (theta < 0.7 * np.pi)
    eye_t = np.arccos(np.clip(mesh.vertices[:, 1].max() * 0.25 / 0.105, -1, 1))
    eyes = np.zeros_like(face)
    for dp in (-0.36, 0.36):
        eyes |= ((phi - np.pi - dp) / 0.16) ** 2 + ((theta - eye_t) / 0.05) ** 2 < 1
    return (face * 255).astype(np.uint8), ((face & ~eyes) * 255).astype(np.uint8)


def _albedo(kind: str, rng: np.random.Generator, n_components: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:512, 0:512] / 512.0
    bgr = np.stack([0.45 + 0.05 * yy, 0.55 + 0.05 * xx, 0.78 - 0.04 * yy], -1)  # skin tone
    pcs = []
    for _ in range(n_components):
        fx, fy, ph = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 6.28)]
        field = np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)[..., None] * rng.normal(0, 1, 3)
        pcs.append(0.02 * field)
    pc = np.stack(pcs, -1) if pcs else np.zeros((512, 512, 3, 0))
    if kind == "bfm":
        return {"MU": bgr.reshape(-1), "PC": pc.reshape(-1, n_components)}
    return {"mean": (bgr * 255).astype(np.float32),
            "tex_dir": (pc * 255).astype(np.float32)}


def write_flame_files(out_dir: str | os.PathLike, seed: int = 0, *,
                      flame_version: str = "2020") -> Path:
    """Write ``FLAME/geometry/*`` (model pickle, embeddings, template OBJ) under ``out_dir``."""
    root = Path(out_dir)
    geo = root / "FLAME" / "geometry"
    geo.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mesh = make_head_mesh()
    flame = _flame_dict(mesh, rng, chumpy=flame_version == "2020")
    name = "generic_model.pkl" if flame_version == "2020" else "flame2023.pkl"
    (geo / name).write_bytes(dumps_py2(flame))
    emb = _landmark_embedding(mesh, rng)
    mp_faces = emb.pop("_mediapipe_faces")
    np.save(geo / "landmark_embedding.npy", np.array(emb, dtype=object), allow_pickle=True)
    bary = rng.dirichlet(np.ones(3) * 4, size=105)
    np.savez(geo / "mediapipe_landmark_embedding.npz",
             lmk_face_idx=mp_faces.astype(np.int64), lmk_b_coords=bary,
             landmark_indices=np.sort(rng.choice(478, 105, replace=False)).astype(np.int64))
    # the official template sits in another frame than the model: never use its vertices
    _write_obj(geo / "head_template.obj", mesh.vertices * 1.0 + [0.0, 0.0, 0.5], mesh.uvs,
               mesh.faces, mesh.uv_faces)
    disp = geo / "fixed_uv_displacements"
    disp.mkdir(exist_ok=True)
    face_eye, _ = _uv_masks(mesh)
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    fixed = 4e-4 * np.sin(40 * xx) * np.sin(36 * yy) * (face_eye > 0)
    np.save(disp / "fixed_displacement_256.npy", fixed.astype(np.float32))
    return root


def write_official_assets(out_dir: str | os.PathLike, seed: int = 0, *,
                          albedo: str | None = "bfm", albedo_components: int = 4,
                          flame_version: str = "2020") -> Path:
    """Write a folder laid out like the official downloads (FLAME part), deterministically.

    Args:
        out_dir: the assets folder to create (``<out_dir>/FLAME/...``).
        seed: everything random (blendshapes, embeddings, albedo) follows from it.
        albedo: ``"bfm"`` (``FLAME_albedo_from_BFM.npz``: ``MU``, ``PC``), ``"flame"``
            (``FLAME_texture.npz``: ``mean``, ``tex_dir`` on 0-255) or ``None``.
        albedo_components: principal components written (the official files have 199/200;
            fewer keeps the look-alike small; loaders use the first ``min(n, 50)``).
        flame_version: ``"2020"`` (chumpy pickle, ``generic_model.pkl``) or ``"2023"``
            (plain numpy, ``flame2023.pkl``).

    Returns:
        ``Path(out_dir)``.
    """
    root = write_flame_files(out_dir, seed, flame_version=flame_version)
    mesh = make_head_mesh()
    masks = root / "FLAME" / "mask"
    masks.mkdir(parents=True, exist_ok=True)
    face_eye, face = _uv_masks(mesh)
    for name, m in (("uv_face_eye_mask.png", face_eye), ("uv_face_mask.png", face)):
        Image.fromarray(np.repeat(m[..., None], 3, -1)).save(masks / name)
    if albedo is not None:
        tex = root / "FLAME" / "texture"
        tex.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed + 1)
        fname = "FLAME_albedo_from_BFM.npz" if albedo == "bfm" else "FLAME_texture.npz"
        np.savez(tex / fname, **_albedo(albedo, rng, albedo_components))
    log.info("wrote look-alike official assets to %s", root)
    return root
