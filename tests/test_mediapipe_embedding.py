"""MediaPipe's points on the ICT surface: the shipped embedding file, the K-point bases, and
a known-answer fit through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoca.face_model.mediapipe_embedding import (
    MEDIAPIPE_FACE_OVAL,
    MediaPipeEmbedding,
    default_path,
)


@pytest.fixture(scope="module")
def ict(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir)


def test_shipped_embedding_is_valid() -> None:
    from emoca.face_model.ict import REGIONS
    from emoca.io.arrays import read_npz

    emb = MediaPipeEmbedding.load()
    k = len(emb)
    assert 400 <= k <= 468  # mesh points (irises left out), a few may be missing
    assert emb.vertex_ids.shape == (k, 3) and emb.bary.shape == (k, 3)
    assert emb.vertex_ids.min() >= 0 and emb.vertex_ids.max() < REGIONS["face_head"][1]
    assert (emb.bary >= 0).all() and np.allclose(emb.bary.sum(1), 1.0, atol=1e-5)
    assert len(np.unique(emb.mediapipe_indices)) == k and emb.mediapipe_indices.max() < 468
    # the contour flags are exactly MediaPipe's face-oval points
    assert set(emb.mediapipe_indices[emb.contour]) == (
        set(MEDIAPIPE_FACE_OVAL) & set(emb.mediapipe_indices))
    stats = read_npz(default_path())
    # the build's held-out reprojection error (inner points) is small in IOD units
    assert float(stats["stats_heldout_iod_inner"]) < 0.05


def test_embedding_rejects_invalid_barycentrics() -> None:
    good = dict(vertex_ids=np.zeros((2, 3), np.int64), mediapipe_indices=np.array([0, 1]),
                contour=np.zeros(2, bool))
    with pytest.raises(ValueError, match="barycentric"):
        MediaPipeEmbedding(bary=np.array([[0.5, 0.5, 0.5], [1, 0, 0]], np.float32), **good)
    with pytest.raises(ValueError, match="478"):
        MediaPipeEmbedding(bary=np.eye(3, dtype=np.float32)[:2],
                           **{**good, "mediapipe_indices": np.array([0, 478])})


def test_point_basis_matches_the_full_mesh(ict) -> None:
    """Second implementation: the K-point bases against barycentric sums of the forward."""
    emb = MediaPipeEmbedding.load()
    g = torch.Generator().manual_seed(0)
    p = {"identity": torch.randn(2, ict.n_identity, generator=g),
         "expression": torch.rand(2, ict.n_expression, generator=g) * 0.5,
         "rotation": torch.randn(2, 3, generator=g) * 0.2}
    full = emb.points(ict(**p).vertices)
    fast = ict.point_basis(torch.as_tensor(emb.vertex_ids), torch.as_tensor(emb.bary))(**p)
    assert torch.allclose(fast, full, atol=1e-4)


def test_fit_recovers_pose_and_expression_from_embedded_points(ict) -> None:
    """Known answer: "detections" placed at the embedded points of a known posed ICT head
    (and the 68 converted from them, as the pipeline does) give back the pose and the
    expression."""
    from emoca.detect.landmarks import mediapipe_to_ibug68
    from emoca.face_model.arkit import ARKIT_NAMES, arkit_to_ict, ict_to_arkit
    from emoca.geometry import ndc_to_pixels, orthographic_project
    from emoca.model.fitting import FitConfig, Fitter

    emb = MediaPipeEmbedding.load()
    arkit = np.zeros((1, 52), np.float32)
    for name, w in (("jawOpen", 0.5), ("mouthSmileLeft", 0.7), ("browInnerUp", 0.6)):
        arkit[0, ARKIT_NAMES.index(name)] = w
    ident = torch.from_numpy(np.random.default_rng(3).normal(0, 0.5, (1, ict.n_identity))
                             .astype(np.float32))
    rot = torch.tensor([[0.12, -0.25, 0.04]])
    exp = torch.from_numpy(arkit_to_ict(arkit, ict.expression_names))
    verts = ict(identity=ident, expression=exp, rotation=rot).vertices
    cam = torch.tensor([[0.085, 0.3, 0.5]])
    pts = ndc_to_pixels(orthographic_project(emb.points(verts), cam)[..., :2], 224)
    mp = torch.zeros(1, 478, 2)
    mp[:, torch.as_tensor(emb.mediapipe_indices)] = pts
    assert len(emb) == 468, "the known answer needs all 468 mesh points for the 68 map"
    lmk68 = mediapipe_to_ibug68(mp)
    fitter = Fitter(ict, None, FitConfig(steps_appearance=0))
    res = fitter.fit(torch.zeros(1, 3, 224, 224), lmk68, mediapipe=mp)
    got_rot = res.params["rotation"]
    assert torch.rad2deg((got_rot - rot).abs()).max() < 2.0, got_rot
    got = ict_to_arkit(res.params["expression"].numpy(), ict.expression_names)[0]
    err = np.abs(got - arkit[0])
    print("rotation", got_rot, "ARKit mean |error|", err.mean())
    assert err.mean() < 0.05
    assert got[ARKIT_NAMES.index("jawOpen")] > 0.4
    assert got[ARKIT_NAMES.index("mouthSmileLeft")] > 0.4
    # brows come out low (0.2 of 0.6): identity modes also raise brows, and the sparsity
    # prior prefers them; still clearly present
    assert got[ARKIT_NAMES.index("browInnerUp")] > 0.1
    # the fitted points land on the "detections"
    fitted = ndc_to_pixels(orthographic_project(emb.points(res.vertices), res.cam)[..., :2], 224)
    assert (fitted - pts).norm(dim=-1).mean() < 0.5


def test_shipped_embedding_is_mirror_symmetric(ict) -> None:
    # MediaPipe's mesh and ICT's mean head are both left-right symmetric, so a point and its
    # partner must sit at mirror images on the mean head (the build's one-sided light had put
    # the subject's left brow 2-3 mm outside the right one's mirror image: a browDownLeft of
    # 0.4-0.8 on neutral photos). The partners are checked against MediaPipe's own region
    # sets (left and right eye and brow, lips), which the build did not use
    from mediapipe.python.solutions import face_mesh_connections as fc

    from emoca.io.arrays import read_npz

    z = read_npz(default_path())
    mirror = z["mirror"].astype(np.int64)
    assert (mirror[mirror] == np.arange(len(mirror))).all()

    def ids(edges) -> set[int]:
        return {i for e in edges for i in e}

    for left, right in ((fc.FACEMESH_LEFT_EYEBROW, fc.FACEMESH_RIGHT_EYEBROW),
                        (fc.FACEMESH_LEFT_EYE, fc.FACEMESH_RIGHT_EYE)):
        assert {int(mirror[i]) for i in ids(left)} == ids(right)
    assert {int(mirror[i]) for i in ids(fc.FACEMESH_LIPS)} == ids(fc.FACEMESH_LIPS)
    emb = MediaPipeEmbedding.load()
    full = ict.neutral.reshape(1, -1, 3)
    pts = emb.points(full)[0].numpy()  # (K, 3) cm on the mean head
    row = {int(m): k for k, m in enumerate(emb.mediapipe_indices)}
    pairs = np.array([(row[i], row[int(mirror[i])]) for i in row])
    gap = np.linalg.norm(pts[pairs[:, 0]] * [-1, 1, 1] - pts[pairs[:, 1]], axis=1)
    assert gap.max() < 0.02, gap.max()  # cm; before: median 0.12, brows 0.2-0.45, cheek oval 2.2
