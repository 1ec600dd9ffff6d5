"""The silhouette-following outline points (emoca.face_model.contour): on a turned ICT head
the chosen candidates must lie on the head's 2D outline, found independently by
rasterizing the mesh and taking the boundary of its mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from silhouette import outline_pixels

from emoca.face_model.contour import (
    fit_rows,
    outermost,
    rotate_outward,
    rows_basis,
    select_outermost,
)
from emoca.face_model.mediapipe_embedding import MediaPipeEmbedding

SIZE = 256


@pytest.fixture(scope="module")
def ict(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir, region="face")


def _pixels(points: torch.Tensor, cam: torch.Tensor) -> np.ndarray:
    from emoca.geometry import ndc_to_pixels, orthographic_project

    return ndc_to_pixels(orthographic_project(points, cam)[..., :2], SIZE)[0].numpy()


@pytest.mark.parametrize("yaw", [35.0, -35.0])
def test_chosen_points_lie_on_the_rendered_outline(ict, yaw: float) -> None:
    emb = MediaPipeEmbedding.load()
    oval, jaw, dyn = fit_rows(ict, emb)
    assert dyn.sum() == oval.shape[0] and jaw.shape[0] == 17
    rot = torch.tensor([[0.0, math.radians(yaw), 0.0]])
    params = {"rotation": rot}
    verts = ict(rotation=rot).vertices
    cam = torch.tensor([[0.07, 0.0, 0.0]])  # the head spans ~2/3 of the image
    edge = outline_pixels(verts, ict.faces, cam, SIZE)
    for rows in (oval, jaw):
        sel, pts = outermost(rows_basis(ict, rows), rows, params)
        px = _pixels(pts, cam)
        dist = np.linalg.norm(px[:, None] - edge[None], axis=-1).min(1)
        moved = sel[0].numpy() > 0
        # outward pointing away from the camera: the far side, whose outline is the cheek
        depth = rotate_outward(torch.as_tensor(rows.outward), rot)[0, :, 2].numpy()
        far, near = depth < 0, depth > 0.2
        # turned 35 degrees, the far side's outline has slid inward off the fixed points,
        # the near side's (ear and skull further out there) keeps them
        assert moved[far].sum() >= 4 and not moved[near].any()
        # (the chin's points face down, not sideways: there the rule is only approximate,
        # a near-side chin point may shift a few pixels along its row off the outline)
        side = (depth < -0.1) | (moved & far)
        assert dist[side].max() < 1.5, dist[side]
        # the fixed points the moved ones replaced lie well inside the face (what the
        # test can tell apart)
        fixed = _pixels(rows.points(verts)[:, :, 0], cam)
        dist0 = np.linalg.norm(fixed[:, None] - edge[None], axis=-1).min(1)
        assert dist0[moved].max() > 4.0


def test_frontal_face_keeps_the_fixed_points(ict) -> None:
    oval, jaw, _ = fit_rows(ict, MediaPipeEmbedding.load())
    for rows in (oval, jaw):
        sel, _ = outermost(rows_basis(ict, rows), rows, {"rotation": torch.zeros(1, 3)})
        assert (sel == 0).all()


def test_select_outermost_small_case() -> None:
    # one row of three candidates along x; outward +x, then rotated to -x
    pts = torch.tensor([[[[0.0, 0, 0], [2.0, 1, 0], [1.0, 5, 0]]]])
    assert select_outermost(pts, torch.tensor([[[1.0, 0, 0]]])).item() == 1
    assert select_outermost(pts, torch.tensor([[[-1.0, 0, 0]]])).item() == 0
    assert select_outermost(pts, torch.tensor([[[0.0, 1, 0]]])).item() == 2


def test_gather_points_matches_the_full_basis_per_face(ict) -> None:
    from emoca.face_model.contour import gather_points

    oval, _, _ = fit_rows(ict, MediaPipeEmbedding.load())
    basis = rows_basis(ict, oval)
    g = torch.Generator().manual_seed(0)
    b = 3
    params = {"identity": torch.randn(b, ict.n_identity, generator=g),
              "expression": 0.3 * torch.rand(b, ict.n_expression, generator=g),
              "rotation": 0.3 * torch.randn(b, 3, generator=g),
              "translation": torch.randn(b, 3, generator=g),
              "scale": 0.5 + torch.rand(b, 1, generator=g)}
    flat = torch.randint(0, basis.neutral.shape[0], (b, 7), generator=g)
    got = gather_points(basis, flat, params)
    # the whole model's vertices, weighted by the candidates' barycentrics
    verts = ict(**params).vertices
    ids = torch.as_tensor(oval.vertex_ids.reshape(-1, 3))[flat]  # (B, 7, 3)
    w = torch.as_tensor(oval.bary.reshape(-1, 3))[flat]
    want = (verts[torch.arange(b)[:, None, None], ids] * w[..., None]).sum(2)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
