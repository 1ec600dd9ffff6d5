"""Tests for emoca.render.raster against a naive loop rasterizer and analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoca.render import raster as rz
from emoca.render.raster import deca_to_raster, interpolate, pixel_centers, rasterize


def naive_rasterize(verts: np.ndarray, faces: np.ndarray, height: int, width: int):
    """Plain loops over pixels and faces, float64, following pytorch3d's rules.

    Pixel (row r, col c) centre: x = -1 + (2c+1)/W, y = -1 + (2r+1)/H (x right, y down).
    A pixel is inside when all barycentrics are > 0; nearest z wins, ties to the lowest
    face; faces with zero area or a vertex at z < 0 are skipped.
    Returns face index (B,H,W), bary (B,H,W,3), depth (B,H,W), and a "confident" mask of
    pixels whose decision is not within rounding of an edge or of a depth tie.
    """
    n_batch = verts.shape[0]
    face_index = -np.ones((n_batch, height, width), dtype=np.int64)
    bary = np.zeros((n_batch, height, width, 3))
    depth = -np.ones((n_batch, height, width))
    confident = np.ones((n_batch, height, width), dtype=bool)
    for b in range(n_batch):
        for r in range(height):
            py = -1.0 + (2 * r + 1) / height
            for c in range(width):
                px = -1.0 + (2 * c + 1) / width
                best = (np.inf, -1, None)
                second_z = np.inf
                for f, (i0, i1, i2) in enumerate(faces):
                    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = verts[b, [i0, i1, i2]]
                    area = (x2 - x0) * (y1 - y0) - (y2 - y0) * (x1 - x0)
                    if abs(area) < 1e-8 or min(z0, z1, z2) < 0:
                        continue
                    w0 = ((px - x1) * (y2 - y1) - (py - y1) * (x2 - x1)) / area
                    w1 = ((px - x2) * (y0 - y2) - (py - y2) * (x0 - x2)) / area
                    w2 = 1.0 - w0 - w1
                    if min(w0, w1, w2) > -1e-4 and min(w0, w1, w2) < 1e-4:
                        confident[b, r, c] = False  # on an edge: rounding decides
                    if min(w0, w1, w2) <= 0:
                        continue
                    z = w0 * z0 + w1 * z1 + w2 * z2
                    if z < best[0]:
                        second_z = best[0]
                        best = (z, f, (w0, w1, w2))
                    else:
                        second_z = min(second_z, z)
                if best[1] >= 0:
                    face_index[b, r, c] = best[1]
                    bary[b, r, c] = best[2]
                    depth[b, r, c] = best[0]
                    if second_z - best[0] < 1e-4:
                        confident[b, r, c] = False
    return face_index, bary, depth, confident


def random_mesh(seed: int, n_batch: int = 2, n_verts: int = 24, n_faces: int = 30):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_batch, n_verts, 2, generator=gen, dtype=torch.float64) * 2.6 - 1.3
    z = torch.rand(n_batch, n_verts, 1, generator=gen, dtype=torch.float64) * 2.0 + 0.5
    verts = torch.cat([xy, z], dim=-1)
    faces = torch.stack([torch.randperm(n_verts, generator=gen)[:3] for _ in range(n_faces)]).long()
    return verts, faces


def assert_matches_reference(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    frags = rasterize(verts.float(), faces, height, width)
    ref_face, ref_bary, ref_depth, confident = naive_rasterize(
        verts.numpy(), faces.numpy(), height, width
    )
    got_face = frags.face_index.numpy()
    assert confident.mean() > 0.8  # the comparison must cover most of the image
    np.testing.assert_array_equal(got_face[confident], ref_face[confident])
    same = confident & (ref_face >= 0)
    assert same.sum() > 0
    np.testing.assert_allclose(frags.bary.numpy()[same], ref_bary[same], atol=1e-5)
    # depth = bary . z with z up to 2.5: float32 bary rounding scaled by z
    np.testing.assert_allclose(frags.depth.numpy()[same], ref_depth[same], atol=3e-5)
    np.testing.assert_array_equal(frags.mask.numpy(), got_face >= 0)
    background = got_face < 0
    assert np.all(frags.bary.numpy()[background] == 0)
    return frags, ref_face, confident


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_meshes(seed):
    verts, faces = random_mesh(seed)
    assert_matches_reference(verts, faces, height=20, width=26)


def test_matches_reference_when_chunked(monkeypatch):
    verts, faces = random_mesh(7, n_faces=40)
    whole = rasterize(verts.float(), faces, 22, 22)
    monkeypatch.setattr(rz, "_PAIR_BUDGET", 3)  # forces one face per chunk
    chunked = rasterize(verts.float(), faces, 22, 22)
    assert torch.equal(whole.face_index, chunked.face_index)
    assert torch.equal(whole.bary, chunked.bary)


def test_pixel_centres_follow_deca_convention():
    # Column i centre at x = -1 + (2i+1)/W, i.e. DECA's pixel = (x' + 1) * W / 2 - 0.5.
    for size in (1, 7, 224):
        expected = -1.0 + (2.0 * np.arange(size) + 1.0) / size
        np.testing.assert_allclose(pixel_centers(size).numpy(), expected, atol=1e-7)


def test_single_triangle_analytic_coverage_and_bary():
    # Vertices at the image's top-left, top-right and bottom-left corners (x right, y down).
    verts = torch.tensor([[[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    frags = rasterize(verts, faces, 8, 8)
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    # Inside iff x + y < 0 at the centre, i.e. col + row < 7; on the diagonal the point lies
    # exactly on the edge (a barycentric is exactly 0) and is not drawn.
    np.testing.assert_array_equal(frags.mask[0].numpy(), rows + cols < 7)
    x = -1.0 + (2 * cols + 1) / 8
    y = -1.0 + (2 * rows + 1) / 8
    expected = np.stack([1 - (x + 1) / 2 - (y + 1) / 2, (x + 1) / 2, (y + 1) / 2], axis=-1)
    inside = rows + cols < 7
    np.testing.assert_allclose(frags.bary[0].numpy()[inside], expected[inside], atol=1e-6)
    assert frags.mask[0, 0, 0] and not frags.mask[0, 7, 7]  # top-left is row 0, col 0


def test_deca_pixel_mapping_hits_the_expected_pixel():
    # A tiny triangle around DECA's x' for pixel (row 30, col 50) at 224: x' = (50.5)/112 - 1.
    cx, cy = 50.5 / 112 - 1, 30.5 / 112 - 1
    d = 0.3 / 112  # 0.3 pixel
    trans = torch.tensor(
        [[[cx - d, cy - d, -0.2], [cx + 2 * d, cy - d, -0.2], [cx, cy + 2 * d, -0.2]]]
    )
    frags = rasterize(deca_to_raster(trans), torch.tensor([[0, 2, 1]]), 224, 224)
    assert frags.mask.sum() == 1 and frags.mask[0, 30, 50]
    # deca_to_raster only shifts z by 10 and leaves its input alone.
    assert torch.allclose(frags.depth[0, 30, 50], torch.tensor(9.8))
    assert trans[0, 0, 2] == -0.2


def test_negative_z_faces_are_skipped_unless_znear_allows():
    verts = torch.tensor([[[-1.0, -1.0, -0.5], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    assert not rasterize(verts, faces, 8, 8).mask.any()
    assert rasterize(verts, faces, 8, 8, znear=-1.0).mask.sum() == 28


def two_overlapping(front_first: bool, flip_winding: bool = False):
    near = [[-0.9, -0.9, 1.0], [0.6, -0.9, 1.0], [-0.9, 0.6, 1.0]]
    far = [[-0.6, -0.6, 2.0], [0.9, -0.6, 2.0], [-0.6, 0.9, 2.0]]
    verts = torch.tensor([near + far if front_first else far + near])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    if flip_winding:
        faces = faces[:, [0, 2, 1]]
    return verts, faces


@pytest.mark.parametrize("front_first", [True, False])
@pytest.mark.parametrize("flip_winding", [False, True])
def test_two_overlapping_triangles_depth_order(front_first, flip_winding):
    verts, faces = two_overlapping(front_first, flip_winding)
    frags = rasterize(verts, faces, 16, 16)
    near_face = 0 if front_first else 1
    ref_face, _, ref_depth, confident = naive_rasterize(
        verts.double().numpy(), faces.numpy(), 16, 16
    )
    np.testing.assert_array_equal(frags.face_index.numpy()[confident], ref_face[confident])
    # Where both cover (the centre of the image) the near one wins, whatever the order.
    assert frags.face_index[0, 5, 5] == near_face
    assert torch.isclose(frags.depth[0, 5, 5], torch.tensor(1.0))
    # The far triangle shows where the near one does not reach.
    assert frags.face_index[0, 4, 11] == 1 - near_face
    assert torch.isclose(frags.depth[0, 4, 11], torch.tensor(2.0))


def test_back_facing_triangles_are_drawn_with_their_vertex_order():
    verts = torch.tensor([[[-0.8, -0.8, 1.0], [0.8, -0.8, 1.0], [-0.8, 0.8, 1.0]]])
    ccw = rasterize(verts, torch.tensor([[0, 1, 2]]), 12, 12)
    cw = rasterize(verts, torch.tensor([[0, 2, 1]]), 12, 12)
    assert ccw.mask.sum() > 30
    assert torch.equal(ccw.mask, cw.mask)
    # Same points, vertex order swapped: the barycentrics swap with it.
    assert torch.allclose(cw.bary, ccw.bary[..., [0, 2, 1]], atol=1e-6)


def test_equal_depth_tie_goes_to_lowest_face_index():
    tri = [[-0.8, -0.8, 1.0], [0.8, -0.8, 1.0], [-0.8, 0.8, 1.0]]
    verts = torch.tensor([tri + tri])
    frags = rasterize(verts, torch.tensor([[3, 4, 5], [0, 1, 2]]), 10, 10)
    covered = frags.face_index[frags.mask]
    assert covered.numel() > 10 and torch.all(covered == 0)


def test_mesh_partly_outside_the_image():
    verts = torch.tensor(
        [[[-3.0, -0.2, 1.0], [0.4, -2.5, 1.5], [0.7, 3.0, 2.0], [2.5, 2.5, 0.5], [1.5, -1.7, 1.2]]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [1, 4, 2]])
    frags, ref_face, confident = assert_matches_reference(verts, faces, 18, 14)
    assert frags.mask[0, :, 0].any() and frags.mask[0, 0, :].any()  # touches the borders
    # Only a 4-vertex-wide mesh but the image coverage is large and nothing wraps around.
    assert (ref_face >= 0).sum() > 100


def test_huge_faces_and_many_faces_stay_bounded(monkeypatch):
    # Many tiny faces on a large image: an (F, H, W) tensor would need ~40 GB here.
    gen = torch.Generator().manual_seed(3)
    n = 20000
    centre = torch.rand(n, 1, 2, generator=gen) * 1.8 - 0.9
    offsets = torch.tensor([[0.0, 0.0], [0.004, 0.0], [0.0, 0.004]])
    xy = (centre + offsets).reshape(1, -1, 2)
    verts = torch.cat([xy, torch.rand(1, 3 * n, 1, generator=gen) + 1.0], dim=-1)
    faces = torch.arange(3 * n).view(n, 3)
    frags = rasterize(verts, faces, 512, 512)
    assert 0 < frags.mask.float().mean() < 0.5
    # A quad of two huge triangles (larger than the image) split across many chunks.
    monkeypatch.setattr(rz, "_PAIR_BUDGET", 1000)
    quad = torch.tensor([[[-5.0, -5.0, 1.0], [5.0, -5.0, 1.0], [5.0, 5.0, 1.0], [-5.0, 5.0, 1.0]]])
    frags = rasterize(quad, torch.tensor([[0, 1, 2], [0, 2, 3]]), 40, 30)
    assert frags.mask.all()


def test_interpolate_per_vertex_and_per_corner_agree_and_are_linear():
    verts, faces = random_mesh(4, n_batch=2)
    frags = rasterize(verts, faces, 16, 16)
    # Interpolating the vertex positions reproduces the pixel centres and the depth.
    pos = interpolate(verts, frags, faces)
    assert pos.shape == (2, 16, 16, 3)
    m = frags.mask
    xs = pixel_centers(16).double()
    assert torch.allclose(pos[..., 0][m], xs.expand(2, 16, 16)[m], atol=1e-6)
    assert torch.allclose(pos[..., 1][m], xs[:, None].expand(2, 16, 16)[m], atol=1e-6)
    assert torch.allclose(pos[..., 2][m], frags.depth[m], atol=1e-9)
    assert torch.all(pos[~m] == 0)
    per_corner = verts[:, faces]  # (B, F, 3, 3)
    assert torch.allclose(interpolate(per_corner, frags, faces), pos, atol=1e-12)
    shared = interpolate(verts[:1], frags, faces)  # batch of one is broadcast
    assert torch.allclose(shared[0], pos[0])


def grad_case():
    verts = torch.tensor(
        [[[-0.7, -0.6, 1.0], [0.65, -0.55, 1.2], [-0.5, 0.7, 1.1], [0.6, 0.62, 1.3]]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    return verts, faces


def test_interpolated_attribute_gradient_matches_finite_differences():
    verts, faces = grad_case()
    # Keep visibility stable under the finite-difference step: no pixel centre near an edge.
    _, _, _, confident = naive_rasterize(verts.numpy(), faces.numpy(), 9, 9)
    assert confident.all()
    attr = torch.randn(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(
        1, 9, 9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )

    def loss(v, a):
        frags = rasterize(v, faces, 9, 9)
        return (interpolate(a, frags, faces) * weights).sum() + frags.depth.sum()

    assert torch.autograd.gradcheck(
        loss, (verts.clone().requires_grad_(), attr.clone().requires_grad_()), eps=1e-6, atol=1e-6
    )


def test_empty_inputs_give_background():
    verts = torch.rand(2, 5, 3)
    frags = rasterize(verts, torch.zeros(0, 3, dtype=torch.long), 6, 7)
    assert frags.face_index.shape == (2, 6, 7) and not frags.mask.any()
    assert torch.all(frags.face_index == -1) and torch.all(frags.depth == -1)
    # Degenerate (zero-area) and non-finite faces are skipped too.
    bad = torch.tensor([[[0.0, 0.0, 1.0], [0.5, 0.5, 1.0], [1.0, 1.0, 1.0], [float("nan"), 0, 1]]])
    frags = rasterize(bad, torch.tensor([[0, 1, 2], [0, 1, 3]]), 8, 8)
    assert not frags.mask.any()


def test_batch_items_are_independent():
    verts, faces = random_mesh(11, n_batch=3)
    together = rasterize(verts, faces, 15, 17)
    for b in range(3):
        alone = rasterize(verts[b : b + 1], faces, 15, 17)
        assert torch.equal(together.face_index[b], alone.face_index[0])
        assert torch.allclose(together.bary[b], alone.bary[0])
