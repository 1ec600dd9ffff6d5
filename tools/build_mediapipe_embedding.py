"""Build ``emoca/assets/data/mediapipe_ict_embedding.npz``: MediaPipe's 468 mesh points on the
ICT-FaceKit surface (triangle + barycentric weights per point).

How (everything from data the project ships; nothing licensed, no photos):

1. Render ICT heads with :mod:`emoca.render.synthetic_face` (the project's rasterizer) at 512 px:
   the whole head with eyeballs, teeth and mouth socket in ICT's part colours
   (:mod:`emoca.face_model.ict_parts`), skin in one skin tone, brows and lips painted
   around ICT's own 68 landmark vertices (brow and outer-lip lines of the neutral head),
   second-order SH light (ambient + a key from the upper left) over a grey-blue background.
   The build set: the mean identity and random identities (N(0, 0.6^2), seeded), poses
   within yaw +-20 deg and pitch +-10 deg, neutral and a few ARKit expressions.
2. Run MediaPipe's face mesh (the project's ``mediapipe`` detector, 478 points) on each
   render.
3. Back-project each of the 468 mesh points (the 10 iris points lie on the eyeballs and are
   left out): the rasterizer's face index at the point's pixel (or, when that pixel shows an
   eyeball, the mouth socket or the background, the nearest pixel within 6 px that shows the
   ``face_head`` skin), then the point's barycentric coordinates inside that triangle in
   screen space, clamped to the triangle. The surface point (3 vertex ids, weights) is
   carried to the neutral mean head, where renders of different identities, expressions and
   poses can be compared.
4. Aggregate robustly: per point the coordinate-wise median over the renders of those
   neutral-head positions. Then make it mirror-symmetric: MediaPipe's mesh and ICT's mean
   head are both left-right symmetric, but the build's key light comes from one side and
   shifted the subject's left brow points 2-3 mm outwards of the right ones' mirror image,
   which the fit paid for with a one-sided browDownLeft (0.4-0.8 on neutral photos). Each
   point is averaged with the mirror image of its partner (:func:`mirror_table`: MediaPipe
   run on a frontal render and on its left-right flip), then snapped to the nearest point
   of the ``face_head`` surface (closest triangle, barycentrics clamped). The spread
   (median distance of the renders' positions to the result, cm) is kept as a statistic.
5. Held-out check: renders of other identities (another seed), stronger poses (yaw 25 deg)
   and other expressions; project the embedded points with the known parameters and compare
   with MediaPipe's detections, in render pixels and in units of the inter-ocular distance
   (centres of ICT's 68-landmark eyes 36-41 and 42-47). For reference, the same figure for
   the old route (MediaPipe -> 68 conversion against ICT's own 68 landmark vertices).

Run (about 2 minutes on two cores)::

    PYTHONPATH=src nice -n 19 .venv/bin/python tools/build_mediapipe_embedding.py \
        [--out src/emoca/assets/data/mediapipe_ict_embedding.npz] [--preview DIR]

The result is deterministic for a given MediaPipe version (0.10.21) and ICT model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

N_MESH = 468  # MediaPipe's mesh points; 468..477 are the irises
SIZE = 512
SEARCH_PX = 6


def back_project(points: np.ndarray, face_index: np.ndarray, screen: np.ndarray,
                 faces: np.ndarray, allowed: np.ndarray):
    """Surface points under (N, 2) pixel positions (centres at integers).

    Args:
        face_index: (S, S) rasterizer face per pixel (-1 background); screen: (V, 3) NDC
        vertices; faces: (F, 3); allowed: (F,) bool faces that may be used.
    Returns:
        tri (N, 3) vertex ids, bary (N, 3), ok (N,) bool (False: no allowed face nearby).
    """
    size = face_index.shape[0]
    ok_pix = np.where(face_index >= 0, allowed[np.maximum(face_index, 0)], False)
    r = np.arange(-SEARCH_PX, SEARCH_PX + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    order = np.argsort((dx ** 2 + dy ** 2).ravel(), kind="stable")
    offs = np.stack([dy.ravel()[order], dx.ravel()[order]], 1)
    offs = offs[(offs ** 2).sum(1) <= SEARCH_PX ** 2]
    tri = np.zeros((len(points), 3), np.int64)
    bary = np.zeros((len(points), 3), np.float64)
    ok = np.zeros(len(points), bool)
    ndc = (points + 0.5) * 2.0 / size - 1.0
    for i, (x, y) in enumerate(points):
        rc = np.array([round(y), round(x)]) + offs
        inside = (rc >= 0).all(1) & (rc < size).all(1)
        rc = rc[inside]
        hit = ok_pix[rc[:, 0], rc[:, 1]]
        if not hit.any():
            continue
        f = face_index[tuple(rc[np.argmax(hit)])]
        a, b, c = screen[faces[f], :2]
        m = np.array([[a[0] - c[0], b[0] - c[0]], [a[1] - c[1], b[1] - c[1]]])
        try:
            w01 = np.linalg.solve(m, ndc[i] - c)
        except np.linalg.LinAlgError:
            continue
        w = np.clip(np.array([w01[0], w01[1], 1 - w01.sum()]), 0, None)
        tri[i], bary[i], ok[i] = faces[f], w / w.sum(), True
    return tri, bary, ok


def closest_on_surface(p: np.ndarray, verts: np.ndarray, faces: np.ndarray):
    """Nearest surface point to each of (N, 3) points, over triangles near it.

    Projects onto each candidate triangle's plane, clamps the barycentrics to the triangle
    and keeps the nearest result (exact inside a triangle, close at its edges).
    Returns tri (N, 3), bary (N, 3), distance (N,).
    """
    cent = verts[faces].mean(1)
    tri = np.zeros((len(p), 3), np.int64)
    bary = np.zeros((len(p), 3))
    dist = np.zeros(len(p))
    for i, q in enumerate(p):
        cand = np.argsort(np.linalg.norm(cent - q, axis=1))[:64]
        a, b, c = (verts[faces[cand, k]] for k in range(3))
        v0, v1, v2 = b - a, c - a, q - a
        d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
        d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
        den = np.where(np.abs(d00 * d11 - d01 ** 2) > 1e-12, d00 * d11 - d01 ** 2, 1e-12)
        wb, wc = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
        w = np.clip(np.stack([1 - wb - wc, wb, wc], 1), 0, None)
        w /= w.sum(1, keepdims=True)
        proj = w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c
        d = np.linalg.norm(proj - q, axis=1)
        j = int(np.argmin(d))
        tri[i], bary[i], dist[i] = faces[cand[j]], w[j], d[j]
    return tri, bary, dist


def mirror_table(scene, detector) -> np.ndarray:
    """(468,) MediaPipe's left-right partner of each mesh point (itself on the midline).

    MediaPipe on a left-right flipped image puts point i where point mirror(i) is in the
    original. The pairing is the assignment (Hungarian, scipy) that minimises the distance
    between the flipped-back detections and their partners in the original, summed over a
    few symmetric renders (mean head, frontal, frontal light) and made symmetric (i -> j
    costs as j -> i); nearest neighbours alone pair a dense mesh's points ambiguously.
    Raises unless the result is an involution.
    """
    from scipy.optimize import linear_sum_assignment

    from emoca.render.synthetic_face import sh_light

    cost = np.zeros((N_MESH, N_MESH))
    for arkit in ({}, {"jawOpen": 0.3}, {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5}):
        img = scene.render(scene.params(None, arkit, 0.0, 0.0),
                           light=sh_light((0.0, 0.3, 1.0), strength=0.7, ambient=2.5)).image
        p = detector(img)[0].landmarks[:N_MESH]
        q = detector(np.ascontiguousarray(img[:, ::-1]))[0].landmarks[:N_MESH].copy()
        q[:, 0] = img.shape[1] - 1 - q[:, 0]
        cost += np.linalg.norm(q[:, None] - p[None], axis=-1)
    rows, cols = linear_sum_assignment(cost + cost.T)
    mirror = cols[np.argsort(rows)]
    if not (mirror[mirror] == np.arange(N_MESH)).all():
        raise SystemExit("MediaPipe's mirror pairs are not an involution: check the renders")
    return mirror


def symmetrize(points: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """(N, 3) points averaged with their partners' mirror images (x -> -x): (N, 3)."""
    flip = points[mirror] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (points + flip)


def build_views(seed: int, held_out: bool):
    """(identity or None, ARKit dict, yaw, pitch, roll) of the build or held-out renders."""
    g = np.random.default_rng(seed)
    if not held_out:
        exprs = [{}, {"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7}, {"jawOpen": 0.35},
                 {"browInnerUp": 0.6}, {"mouthFunnel": 0.4}]
        poses = [(0, 0), (-20, 0), (20, 0), (0, -10), (0, 10), (-12, 6), (12, -6)]
        idents = [None] + [g.normal(0, 0.6, 100) for _ in range(3)]
        views = []
        for i, ident in enumerate(idents):
            for j, (yaw, pitch) in enumerate(poses):
                views.append((ident, exprs[(i + j) % len(exprs)], yaw, pitch, 0.0))
        return views
    exprs = [{}, {"jawOpen": 0.25, "mouthSmileLeft": 0.4, "mouthSmileRight": 0.4},
             {"eyeBlinkLeft": 0.4, "eyeBlinkRight": 0.4, "browDownLeft": 0.4},
             {"mouthStretchLeft": 0.5, "mouthStretchRight": 0.5}]
    views = []
    for i, (yaw, pitch, roll) in enumerate([(25, 0, 0), (-25, 5, 0), (8, -8, 8), (-5, 12, -6),
                                            (15, 8, 4), (-15, -5, 0)]):
        views.append((g.normal(0, 0.8, 100), exprs[i % len(exprs)], yaw, pitch, roll))
    return views


def detect_all(scene, views, detector, keep: bool = False):
    """Per view: (render tuple, 478 detections or None)."""
    out = []
    for view in views:
        f = scene.render(scene.params(*view))
        r = (f.image, f.fragments, f.screen, f.vertices, f.cam)
        dets = detector(r[0])
        pts = dets[0].landmarks if dets and dets[0].landmarks is not None else None
        out.append((r if keep else (None, r[1], r[2], r[3], r[4]), pts))
    return out


def draw(img: np.ndarray, red: np.ndarray, green: np.ndarray, path: Path) -> None:
    """Save ``img`` with MediaPipe's points (red) and the embedded ones (green)."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    for pts, col in ((red, (255, 0, 0)), (green, (0, 255, 0))):
        for x, y in pts:
            d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], outline=col)
    im.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "src" / "emoca" / "assets" / "data" / "mediapipe_ict_embedding.npz")
    ap.add_argument("--preview", type=Path, default=None,
                    help="folder for held-out renders with both point sets drawn")
    args = ap.parse_args()
    from emoca.detect import create_detector
    from emoca.face_model.mediapipe_embedding import MEDIAPIPE_FACE_OVAL, MediaPipeEmbedding
    from emoca.geometry import ndc_to_pixels
    from emoca.render.synthetic_face import SyntheticFaceRenderer

    torch.manual_seed(0)
    scene = SyntheticFaceRenderer(SIZE)
    faces = scene.faces_np
    with create_detector("mediapipe") as det:
        built = detect_all(scene, build_views(0, False), det)
        mirror = mirror_table(scene, det)
        held = detect_all(scene, build_views(1, True), det, keep=True)

    # 3. back-project every build render, carried to the neutral mean head
    canon = []
    for (_, frags, sv, _, _), pts in built:
        if pts is None:
            continue
        tri, bary, ok = back_project(pts[:N_MESH], frags.face_index[0].numpy(),
                                     sv.numpy(), faces, scene.allowed)
        q = (scene.neutral[tri] * bary[..., None]).sum(1)
        q[~ok] = np.nan
        canon.append(q)
    canon = np.stack(canon)  # (R, 468, 3)
    # 4. robust aggregation + snap to the face_head surface
    med = np.nanmedian(canon, axis=0)
    asym = np.linalg.norm(symmetrize(med, mirror) - med, axis=1)  # before, cm
    med = symmetrize(med, mirror)
    good = np.isfinite(med).all(1)
    keep_faces = faces[scene.allowed]
    tri, bary, snap = closest_on_surface(med[good], scene.neutral, keep_faces)
    spread = np.nanmedian(np.linalg.norm(canon[:, good] - med[good], axis=-1), axis=0)
    idx = np.nonzero(good)[0]
    if not good[mirror[good]].all():
        raise SystemExit("a point is embedded but its mirror partner is not")
    emb = MediaPipeEmbedding(vertex_ids=tri, bary=bary.astype(np.float32),
                             mediapipe_indices=idx,
                             contour=np.isin(idx, MEDIAPIPE_FACE_OVAL))

    # 5. held-out reprojection error
    from emoca.detect.landmarks import mediapipe_to_ibug68

    errs, errs68, iods = [], [], []
    if args.preview is not None:
        args.preview.mkdir(parents=True, exist_ok=True)
    for k, ((img, _, _, verts, cam), pts) in enumerate(held):
        if pts is None:
            continue
        from emoca.geometry import orthographic_project

        proj = orthographic_project(emb.points(verts[None]), cam)[0, :, :2]
        px = ndc_to_pixels(proj, SIZE).numpy()
        lmk = orthographic_project(verts[None, scene.ict.landmark_indices], cam)[0, :, :2]
        lmk_px = ndc_to_pixels(lmk, SIZE).numpy()
        iod = np.linalg.norm(lmk_px[36:42].mean(0) - lmk_px[42:48].mean(0))
        errs.append(np.linalg.norm(px - emb.select(pts), axis=1))
        errs68.append(np.linalg.norm(mediapipe_to_ibug68(pts) - lmk_px, axis=1))
        iods.append(iod)
        if args.preview is not None:
            draw(img, emb.select(pts), px, args.preview / f"held_out_{k}.png")
    e, e68, iod = np.stack(errs), np.stack(errs68), np.array(iods)[:, None]
    c = emb.contour
    stats = {
        "stats_build_renders": np.int64(len(canon)),
        "stats_heldout_renders": np.int64(len(e)),
        "stats_spread_cm_median": np.float32(np.median(spread)),
        "stats_snap_cm_max": np.float32(snap.max()),
        "stats_heldout_px_inner": np.float32(e[:, ~c].mean()),
        "stats_heldout_px_contour": np.float32(e[:, c].mean()),
        "stats_heldout_iod_inner": np.float32((e / iod)[:, ~c].mean()),
        "stats_heldout_iod_contour": np.float32((e / iod)[:, c].mean()),
        "stats_heldout_iod_all": np.float32((e / iod).mean()),
        "stats_heldout_iod_68conversion": np.float32((e68 / iod).mean()),
        "stats_render_size_px": np.int64(SIZE),
        # half the distance between a point and its partner's mirror image before the
        # symmetrization (cm): what the one-sided light had shifted
        "stats_asymmetry_cm_median": np.float32(np.nanmedian(asym)),
        "stats_asymmetry_cm_max": np.float32(np.nanmax(asym)),
    }
    np.savez_compressed(args.out, vertex_ids=emb.vertex_ids, bary=emb.bary,
                        mediapipe_indices=emb.mediapipe_indices, contour=emb.contour,
                        mirror=mirror, **stats)
    print(f"wrote {args.out}: {len(emb)} points ({int(c.sum())} face-oval)")
    for k, v in stats.items():
        print(f"  {k}: {float(v):.4g}")
    print(f"  held-out IOD (render px): {iod.ravel().round(1).tolist()}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
