"""UV maps and detail normals against the official formulas, written out independently.

The official path (DECA's SRenderY.world2uv + ``displacement2normal`` in decalib/deca.py,
EMOCA's in gdl/models/DECA.py) is reimplemented here in numpy from its description:
a texel centre (row i, col j) sits at uv = ((j + 0.5) / S, 1 - (i + 0.5) / S) (pytorch3d's
pixel centres after SRenderY's flips), attributes are interpolated linearly with the
barycentrics of the covering UV triangle, the dense grid is ``generate_triangles`` with
margins 2 and 5 (loops x outer, y inner, corners reordered [0, 2, 1]), and vertex normals
add, at each corner, the cross product of the two edges leaving it, then normalise with
eps 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoca.render.renderer import Renderer

S = 64  # small UV size: the reference loops stay fast


def _world2uv_reference(uv: np.ndarray, uv_faces: np.ndarray, faces: np.ndarray,
                        values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, C) interpolated per-vertex ``values`` and the (S, S) coverage, brute force."""
    out = np.zeros((S, S, values.shape[1]))
    covered = np.zeros((S, S), bool)
    for f in range(len(faces)):
        t = uv[uv_faces[f]].astype(np.float64)  # (3, 2) in [0, 1]
        cols = t[:, 0] * S - 0.5
        rows = (1 - t[:, 1]) * S - 0.5
        r0, r1 = int(np.floor(rows.min())), int(np.ceil(rows.max()))
        c0, c1 = int(np.floor(cols.min())), int(np.ceil(cols.max()))
        for i in range(max(r0, 0), min(r1, S - 1) + 1):
            for j in range(max(c0, 0), min(c1, S - 1) + 1):
                p = np.array([(j + 0.5) / S, 1 - (i + 0.5) / S])
                m = np.array([t[1] - t[0], t[2] - t[0]]).T
                if abs(np.linalg.det(m)) < 1e-12:
                    continue
                w12 = np.linalg.solve(m, p - t[0])
                w = np.array([1 - w12.sum(), *w12])
                if (w >= 0).all():
                    out[i, j] = w @ values[faces[f]]
                    covered[i, j] = True
    return out, covered


def _dense_triangles_reference(h: int, w: int, margin_x: int = 2, margin_y: int = 5):
    tris = []
    for x in range(margin_x, w - 1 - margin_x):
        for y in range(margin_y, h - 1 - margin_y):
            tris.append([y * w + x, y * w + x + 1, (y + 1) * w + x])
            tris.append([y * w + x + 1, (y + 1) * w + x + 1, (y + 1) * w + x])
    return np.array(tris)[:, [0, 2, 1]]


def _vertex_normals_reference(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.zeros_like(v)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    np.add.at(n, f[:, 1], np.cross(c - b, a - b))
    np.add.at(n, f[:, 2], np.cross(a - c, b - c))
    np.add.at(n, f[:, 0], np.cross(b - a, c - a))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)


@pytest.fixture(scope="module")
def case(flame):
    g = torch.Generator().manual_seed(7)
    out = flame(shape=torch.randn(1, 100, generator=g) * 0.5,
                expression=torch.randn(1, 50, generator=g) * 0.5, pose=torch.zeros(1, 6))
    verts = out.vertices
    renderer = Renderer(flame.uv_coords, flame.uv_faces, flame.faces, uv_size=S)
    from emoca.render.geometry import vertex_normals

    normals = vertex_normals(verts, flame.faces)
    uv_z = torch.tanh(torch.randn(1, 1, S, S, generator=g)) * 0.01
    mask = torch.zeros(S, S)
    mask[20:44, 16:48] = 1.0
    mask[30:34, 10:16] = 0.5  # soft edge values, as the PNG masks may hold
    fixed = 4e-4 * torch.sin(torch.arange(S * S, dtype=torch.float32).view(S, S) / 7.0)
    return renderer, verts, normals, uv_z, mask, fixed, flame


def test_world2uv_equals_the_brute_force_reference(case):
    renderer, verts, normals, *_, flame = case
    want, covered = _world2uv_reference(flame.uv_coords.numpy(), flame.uv_faces.numpy(),
                                        flame.faces.numpy(), verts[0].double().numpy())
    got = renderer.world2uv(verts)[0].permute(1, 2, 0).double().numpy()
    assert np.array_equal(renderer.uv_mask.numpy(), covered)
    np.testing.assert_allclose(got, want, atol=2e-7)


@pytest.mark.parametrize("deca_blend", [True, False])
def test_detail_normals_equal_the_official_formula(case, deca_blend):
    renderer, verts, normals, uv_z, mask, fixed, flame = case
    faces = flame.faces.numpy()
    uv, uvf = flame.uv_coords.numpy(), flame.uv_faces.numpy()
    pos, _ = _world2uv_reference(uv, uvf, faces, verts[0].double().numpy())
    nrm, _ = _world2uv_reference(uv, uvf, faces, normals[0].double().numpy())
    z = uv_z[0, 0].double().numpy()[..., None]
    m = mask.double().numpy()[..., None]
    fx = fixed.double().numpy()[..., None]
    detail = pos + (z * m) * nrm + fx * nrm
    grid = _vertex_normals_reference(detail.reshape(-1, 3), _dense_triangles_reference(S, S))
    want = grid.reshape(S, S, 3)
    if deca_blend:
        want = want * m + nrm * (1 - m)
    maps = renderer.displacement_to_detail(uv_z, verts, normals, mask, fixed,
                                           coarse_outside_mask=deca_blend)
    got = maps.uv_detail_normals[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(maps.uv_detail_vertices[0].permute(1, 2, 0).numpy(), detail,
                               atol=1e-6)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.abs(got - want).mean() < 1e-6


def test_deca_and_emoca_variants_differ_only_where_the_mask_is_not_one(case):
    renderer, verts, normals, uv_z, mask, fixed, _ = case
    deca = renderer.displacement_to_detail(uv_z, verts, normals, mask, fixed).uv_detail_normals
    emoca = renderer.displacement_to_detail(uv_z, verts, normals, mask, fixed,
                                            coarse_outside_mask=False).uv_detail_normals
    inside = (mask == 1).expand(1, 3, S, S)
    assert torch.equal(deca[inside], emoca[inside])
    assert (deca - emoca)[~inside].abs().mean() > 1e-3
