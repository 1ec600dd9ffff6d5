"""Retargeting between FLAME's expression space and Apple's 52 ARKit blendshapes.

The map is computed from the user's FLAME file and ICT-FaceKit's ARKit-named shapes (MIT):

1. **Register the neutral heads.** The 51 inner iBUG-68 landmarks (brows, nose, eyes,
   mouth; the contour is defined differently by the two models) of FLAME's template
   (landmark embedding) and of ICT's neutral (its landmark vertices) give a similarity
   ``x_flame = s R x_ict + t`` (Umeyama), which also turns ICT's centimetres into metres.
2. **Correspondences.** Each FLAME face vertex (not an eyeball, within ``max_distance`` of
   the registered ICT face) takes its nearest ICT vertex; ARKit shape k then moves those
   FLAME vertices by ``D_k = s R delta_k`` (ICT's offsets, ARKit names combined as in
   :func:`emoca.face_model.arkit.arkit_to_ict_matrix`).
3. **ARKit -> FLAME**: for each ARKit shape, the FLAME expression (50) and jaw rotation (3)
   whose offsets from the neutral best match ``D_k`` (least squares over the corresponding
   vertices, small ridge on the expression): the rows of a linear map ``A`` (52, 53); a
   performance's FLAME codes are ``w @ A``.
4. **FLAME -> ARKit**: per frame, the weights ``w`` in [0, 1] minimising ``|B w - (v(psi,
   jaw) - v(0))|`` over the corresponding vertices, where ``B_k`` is ARKit shape k as
   FLAME makes it (the fit of step 3): bounded least squares,
   ``scipy.optimize.lsq_linear``. ``tongueOut`` (no ICT shape) stays 0.

The map is derived from FLAME, so it is cached in the user's assets folder
(``<assets>/retarget/``) and never shipped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoca.face_model.arkit import ARKIT_NAMES, arkit_to_ict_matrix
from emoca.io.atomic import atomic_write

__all__ = ["RetargetMap", "arkit_to_flame", "build_retarget_map", "flame_offsets",
           "flame_to_arkit", "load_or_build", "umeyama"]

MAP_VERSION = 1
INNER = slice(17, 68)  # the 51 landmarks both models define alike


@dataclass(frozen=True)
class RetargetMap:
    """The FLAME <-> ARKit link for one FLAME file.

    Attributes:
        flame_vertices: (N,) FLAME vertices with a correspondence.
        ict_vertices: (N,) their ICT-FaceKit vertices (full-mesh indices).
        arkit_offsets: (52, N, 3) m, ``D``: ARKit shapes on those FLAME vertices.
        flame_basis: (52, N, 3) m, ``B``: the same shapes as FLAME makes them (the fits'
            offsets); FLAME -> ARKit solves in this basis, so ARKit -> FLAME -> ARKit
            returns the weights up to the jaw's non-linearity.
        to_flame: (52, 53) ``A``: FLAME [expression 50 | jaw 3] of each ARKit shape.
        scale, rotation (3,3), translation (3,): ICT (cm) -> FLAME (m) similarity.
        fit_error: (52,) m RMS residual of each ARKit shape's FLAME fit.
        landmark_error: m RMS of the registered inner landmarks.
        flame_hash: sha1 of the FLAME file (first 16 hex digits).
    """

    flame_vertices: np.ndarray
    ict_vertices: np.ndarray
    arkit_offsets: np.ndarray
    flame_basis: np.ndarray
    to_flame: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    fit_error: np.ndarray
    landmark_error: float
    flame_hash: str

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, version=MAP_VERSION, **{k: np.asarray(v) for k, v in vars(self).items()})
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> RetargetMap | None:
        """The cached map, or None when absent, unreadable or of another version."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != MAP_VERSION:
                    return None
                d = {k: z[k] for k in z.files if k != "version"}
        except (OSError, ValueError, KeyError):
            return None
        return cls(**{**d, "scale": float(d["scale"]), "landmark_error": float(d["landmark_error"]),
                      "flame_hash": str(d["flame_hash"])})


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``dst ~ s R src + t`` by least squares (Umeyama 1991), (N,3) points."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / (a ** 2).sum(1).mean())
    return s, rot, md - s * rot @ ms


class _FlameSubset:
    """FLAME with zero shape, evaluated on a vertex subset (joints from the whole mesh),
    as :meth:`emoca.face_model.flame.FLAME.landmarks_only` does: cheap enough to fit."""

    def __init__(self, flame, vertices: np.ndarray) -> None:
        sub = torch.as_tensor(np.asarray(vertices, np.int64))
        n = flame.n_shape
        e = flame.shapedirs[..., n:]
        self.template, self.dirs = flame.v_template[sub], e[sub]
        cols = (sub[:, None] * 3 + torch.arange(3)).reshape(-1)
        self.posedirs = flame.posedirs[:, cols]
        self.jreg, self.parents = flame.J_regressor, flame.parents
        self.weights = flame.lbs_weights[sub]
        self.joints = (flame.J_regressor @ flame.v_template,
                       torch.einsum("jv,vck->jck", flame.J_regressor, e))

    def offsets(self, psi: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) offsets from the neutral for expression (B, n_exp), jaw (B, 3)."""
        from emoca.face_model.lbs import lbs

        b = psi.shape[0]
        z = psi.new_zeros(b, 3)
        pose = torch.cat([z, z, jaw, z, z], 1)
        verts, _ = lbs(psi, pose, self.template, self.dirs, self.posedirs, self.jreg,
                       self.parents, self.weights, joint_dirs=self.joints)
        return verts - self.template


def flame_offsets(flame, psi: torch.Tensor, jaw: torch.Tensor,
                  vertices: np.ndarray) -> torch.Tensor:
    """(B, N, 3) offsets of ``vertices`` from the neutral template for expression ``psi``
    (B, n_exp) and jaw axis-angle ``jaw`` (B, 3); zero shape, head, neck and eye pose."""
    return _FlameSubset(flame, vertices).offsets(psi, jaw)


class _JawFit:
    """Least-squares FLAME expression + jaw for a target offset field on a vertex subset.

    With zero shape, head, neck and eye pose, FLAME's skinning reduces to the jaw:
    ``v = v_p + w (R - I)(v_p - J_jaw)`` with ``v_p = T + E psi + P_jaw vec(R - I)`` and
    ``J_jaw = J0 + JE psi``, which is linear in ``psi`` for a fixed jaw rotation R. So psi
    is solved in closed form inside a Gauss-Newton loop over the 3 jaw parameters
    (variable projection; finite-difference Jacobian).
    """

    def __init__(self, flame, vertices: np.ndarray, ridge: float) -> None:
        sub = np.asarray(vertices, np.int64)
        n = flame.n_shape
        e_all = flame.shapedirs.detach().double().numpy()[..., n:]
        self.t = flame.v_template.detach().double().numpy()[sub]
        self.e = e_all[sub]  # (N, 3, n_exp)
        jaw_rows = slice(9, 18)  # pose feature rows of joint 2 (neck 0..8, jaw 9..17)
        p = flame.posedirs.detach().double().numpy()[jaw_rows].reshape(9, -1, 3)
        self.p = p[:, sub]  # (9, N, 3)
        self.w = flame.lbs_weights.detach().double().numpy()[sub, 2]
        jreg = flame.J_regressor.detach().double().numpy()
        self.j0 = jreg[2] @ flame.v_template.detach().double().numpy()
        self.je = np.einsum("v,vck->ck", jreg[2], e_all)  # (3, n_exp)
        self.ridge = ridge

    def _solve(self, jaw: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from emoca.face_model.lbs import batch_rodrigues

        r = batch_rodrigues(torch.as_tensor(jaw, dtype=torch.float64)[None])[0].numpy()
        rm = r - np.eye(3)
        a = np.eye(3)[None] + self.w[:, None, None] * rm[None]  # (N, 3, 3)
        m = np.einsum("nab,nbk->nak", a, self.e) - self.w[:, None, None] * (rm @ self.je)[None]
        base = self.t + np.einsum("f,fnc->nc", rm.reshape(-1), self.p)
        c = np.einsum("nab,nb->na", a, base) - self.w[:, None] * (rm @ self.j0)[None] - self.t
        mf = m.reshape(-1, m.shape[-1])
        rhs = (target - c).reshape(-1)
        psi = np.linalg.solve(mf.T @ mf + self.ridge * np.eye(mf.shape[1]), mf.T @ rhs)
        return psi, mf @ psi - rhs

    def fit(self, target: np.ndarray, steps: int) -> tuple[np.ndarray, float, np.ndarray]:
        """``[psi | jaw]`` for ``target`` (N, 3) offsets, the RMS residual (m) and the
        fitted offsets (N, 3)."""
        jaw = np.zeros(3)
        psi, res = self._solve(jaw, target)
        cost, h, mu = float(res @ res), 1e-4, 1e-6
        for _ in range(steps):
            jac = np.stack([(self._solve(jaw + h * np.eye(3)[i], target)[1] - res) / h
                            for i in range(3)], 1)
            step = -np.linalg.solve(jac.T @ jac + mu * np.eye(3), jac.T @ res)
            psi_n, res_n = self._solve(jaw + step, target)
            new = float(res_n @ res_n)
            if new < cost:
                gain = (cost - new) / cost
                jaw, psi, res, cost, mu = jaw + step, psi_n, res_n, new, mu / 3
                if gain < 1e-4:  # converged: the jaw no longer matters
                    break
            else:
                mu *= 10
            if np.abs(step).max() < 1e-6:
                break
        rms = float(np.sqrt((res ** 2).reshape(-1, 3).sum(1).mean()))
        return np.concatenate([psi, jaw]), rms, target + res.reshape(target.shape)


def _file_hash(path: Path | None) -> str:
    if path is None:
        return "unknown"
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def build_retarget_map(flame, ict, *, flame_hash: str = "unknown", max_distance: float = 0.01,
                       ridge: float = 1e-8, steps: int = 8) -> RetargetMap:
    """Compute the map (module doc) from a loaded FLAME and ICT-FaceKit model.

    Args:
        flame: :class:`emoca.face_model.flame.FLAME` with its landmark embedding.
        ict: :class:`emoca.face_model.ict.ICTFaceModel` (any region with the face).
        max_distance: m, FLAME vertices farther from the registered ICT face get no partner.
        ridge: weight of ``|psi|^2`` in the per-shape fits (metres^2 per unit^2).
        steps: Gauss-Newton iterations on the jaw rotation per shape.
    """
    from scipy.spatial import cKDTree

    f64 = flame
    z = torch.zeros
    with torch.no_grad():
        rest = f64(shape=z(1, f64.n_shape), expression=z(1, f64.n_exp), pose=z(1, 6))
    flame_lmk = rest.landmarks3d[0].double().numpy()[INNER]
    flame_v = rest.vertices[0].double().numpy()
    ict_neutral = ict.neutral.double().numpy()
    ict_lmk = ict_neutral[ict.landmark_indices.numpy()][INNER]
    s, rot, t = umeyama(ict_lmk, flame_lmk)
    lmk_err = float(np.sqrt(((s * ict_lmk @ rot.T + t - flame_lmk) ** 2).sum(1).mean()))
    ict_reg = s * ict_neutral @ rot.T + t
    dist, nn = cKDTree(ict_reg).query(flame_v)
    weights = f64.lbs_weights.double().numpy()
    eyes = weights[:, 3:5].sum(1) > 0.5
    keep = np.nonzero((dist < max_distance) & ~eyes)[0]
    m = arkit_to_ict_matrix(ict.expression_names).astype(np.float64)
    modes = ict.expression_modes.double().numpy()[:, nn[keep]]  # (53, N, 3) cm
    d = np.einsum("kj,jnc->knc", m, modes) * s @ rot.T  # (52, N, 3) m
    # ARKit -> FLAME: expression + jaw for each shape
    fit = _JawFit(f64, keep, ridge)
    a = np.zeros((len(ARKIT_NAMES), f64.n_exp + 3))
    fit_err = np.zeros(len(ARKIT_NAMES))
    basis = np.zeros_like(d)
    for k in range(len(ARKIT_NAMES)):
        a[k], fit_err[k], basis[k] = fit.fit(d[k], steps)
    return RetargetMap(flame_vertices=keep, ict_vertices=nn[keep].astype(np.int64),
                       arkit_offsets=d, flame_basis=basis, to_flame=a, scale=s, rotation=rot,
                       translation=t,
                       fit_error=fit_err, landmark_error=lmk_err, flame_hash=flame_hash)


def load_or_build(flame, ict, assets_root: Path | None, flame_file: Path | None
                  ) -> tuple[RetargetMap, Path | None, bool]:
    """The cached map for this FLAME file, else a new one (cached when ``assets_root`` is
    given). Returns the map, the cache path and whether it was built now."""
    h = _file_hash(flame_file)
    path = None
    if assets_root is not None:
        path = Path(assets_root) / "retarget" / f"flame_arkit_{h}.npz"
        cached = RetargetMap.load(path)
        if cached is not None:
            return cached, path, False
    rmap = build_retarget_map(flame, ict, flame_hash=h)
    if path is not None:
        rmap.save(path)
    return rmap, path, True


def arkit_to_flame(rmap: RetargetMap, arkit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ARKit weights (T, 52) -> FLAME expression (T, 50) and jaw axis-angle (T, 3)."""
    codes = np.asarray(arkit, np.float64) @ rmap.to_flame
    return codes[:, :-3], codes[:, -3:]


def flame_to_arkit(rmap: RetargetMap, flame, expression: np.ndarray, jaw: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """FLAME expression (T, n_exp) and jaw (T, 3) -> ARKit weights (T, 52) in [0, 1] and the
    RMS vertex residual per frame (m)."""
    from scipy.optimize import lsq_linear

    sub = _FlameSubset(flame, rmap.flame_vertices)
    e = torch.as_tensor(np.asarray(expression), dtype=torch.float32)
    j = torch.as_tensor(np.asarray(jaw), dtype=torch.float32)
    with torch.no_grad():  # in chunks: memory stays flat over long tracks
        off = np.concatenate([sub.offsets(e[i:i + 256], j[i:i + 256]).double().numpy()
                              for i in range(0, len(e), 256)])
    basis = rmap.flame_basis.reshape(len(ARKIT_NAMES), -1).T  # (3N, 52)
    used = np.abs(basis).max(0) > 0  # tongueOut moves nothing: it stays 0
    b = basis[:, used]
    # |B w - o|^2 = |R w - R^-T B^T o|^2 + const with B^T B = R^T R: the same bounded
    # problem on a 51 x 51 system instead of 3N x 51 (about 100x faster per frame)
    gram = b.T @ b
    r = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) / len(gram) * np.eye(len(gram))).T
    flat = off.reshape(len(off), -1)
    rhs = np.linalg.solve(r.T, b.T @ flat.T).T  # (T, 51)
    out = np.zeros((len(off), len(ARKIT_NAMES)))
    for i in range(len(off)):
        sol = lsq_linear(r, rhs[i], bounds=(0.0, 1.0), method="bvls")
        out[i, used] = np.clip(sol.x, 0.0, 1.0)  # bvls may return -1e-17
    fitted = out[:, used] @ b.T
    resid = np.sqrt(((fitted - flat) ** 2).reshape(len(off), -1, 3).sum(-1).mean(-1))
    return out, resid
