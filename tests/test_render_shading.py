"""Tests for normals, SH/directional shading, the Renderer, UV maps and landmark drawing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F

from emoca.render import (
    SH_CONSTANTS,
    Renderer,
    add_directional_light,
    add_sh_light,
    draw_landmarks,
    face_normals,
    grid_triangles,
    pixel_centers,
    sh_basis,
    vertex_normals,
)


# ----------------------------------------------------------------------------- helpers
def real_sh(l_deg: int, m: int, normals: np.ndarray) -> np.ndarray:
    """Real spherical harmonic Y_lm from scipy's complex ones (Condon-Shortley phase)."""
    x, y, z = normals.T
    theta = np.arccos(np.clip(z, -1, 1))
    phi = np.mod(np.arctan2(y, x), 2 * np.pi)
    if m == 0:
        return scipy.special.sph_harm_y(l_deg, 0, theta, phi).real
    complex_y = scipy.special.sph_harm_y(l_deg, abs(m), theta, phi)
    part = complex_y.imag if m < 0 else complex_y.real
    return math.sqrt(2) * (-1) ** m * part


def random_unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def uv_sphere(n_lat: int = 24, n_lon: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit sphere, faces counter-clockwise seen from outside."""
    verts = [[0.0, 0.0, 1.0]]
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon
            verts.append([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi)])
            verts[-1].append(math.cos(theta))
    verts.append([0.0, 0.0, -1.0])
    last = len(verts) - 1
    faces = [[0, 1 + j, 1 + (j + 1) % n_lon] for j in range(n_lon)]
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b = 1 + i * n_lon + j, 1 + i * n_lon + (j + 1) % n_lon
            faces += [[a, a + n_lon, b], [b, a + n_lon, b + n_lon]]
    base = 1 + (n_lat - 2) * n_lon
    faces += [[base + j, last, base + (j + 1) % n_lon] for j in range(n_lon)]
    return torch.tensor(verts, dtype=torch.float64), torch.tensor(faces)


# UV map of the test plane: (u, v) = UV_SCALE * (x + 0.5, y + 0.5) + UV_SHIFT. The odd,
# unequal factors keep texel centres off the triangle edges (a centre exactly on a shared
# edge is drawn by neither face, as in pytorch3d).
UV_SCALE, UV_SHIFT = torch.tensor([0.999, 0.998]), torch.tensor([0.0005, 0.0011])
# Camera of the test plane in DECA's form: x' = s (x + tx), y' = -s (y + ty), z' = -s z.
CAM_S, CAM_T = 1.37, (0.013, -0.021)


def plane_mesh(n: int = 7):
    """Square [-0.5, 0.5]^2 at z = 0 facing +z (counter-clockwise from the front)."""
    coords = torch.linspace(-0.5, 0.5, n, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    verts = torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(n * n, dtype=torch.float64)], 1)
    faces = []
    for j in range(n - 1):
        for i in range(n - 1):
            v00, v10, v01, v11 = j * n + i, j * n + i + 1, (j + 1) * n + i, (j + 1) * n + i + 1
            faces += [[v00, v10, v11], [v00, v11, v01]]
    uv = UV_SCALE * (verts[:, :2] + 0.5) + UV_SHIFT
    return verts.float(), torch.tensor(faces), uv.float()


def project(verts: torch.Tensor) -> torch.Tensor:
    """DECA's orthographic camera followed by its y/z negation."""
    x = CAM_S * (verts[..., 0] + CAM_T[0])
    y = -CAM_S * (verts[..., 1] + CAM_T[1])
    return torch.stack([x, y, -CAM_S * verts[..., 2]], dim=-1)


@pytest.fixture(scope="module")
def plane_renderer():
    verts, faces, uv = plane_mesh()
    return Renderer(uv, faces, faces, image_size=32, uv_size=32), verts[None], faces


# ----------------------------------------------------------------------------- SH
def test_sh_basis_matches_real_spherical_harmonics_times_lambert_factors():
    normals = random_unit(200)
    basis = sh_basis(torch.from_numpy(normals)).numpy()
    # DECA order [1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1] = Y_00, Y_11, Y_1-1, Y_10,
    # Y_2-2, Y_21, Y_2-1, Y_22, Y_20; band factors 1 (DECA), 2 pi / 3, pi / 4.
    order = [(0, 0), (1, 1), (1, -1), (1, 0), (2, -2), (2, 1), (2, -1), (2, 2), (2, 0)]
    band = [1.0, 2 * math.pi / 3, math.pi / 4]
    for k, (l_deg, m) in enumerate(order):
        expected = band[l_deg] * real_sh(l_deg, m, normals)
        np.testing.assert_allclose(basis[:, k], expected, atol=1e-10, err_msg=f"basis {k}")


def test_sh_constants_are_decas_values():
    # Spelled out from DECA's constant_factor expression.
    pi = math.pi
    assert SH_CONSTANTS[0] == pytest.approx(0.28209479177)
    assert SH_CONSTANTS[3] == pytest.approx((2 * pi / 3) * math.sqrt(3 / (4 * pi)))
    assert SH_CONSTANTS[7] == pytest.approx((pi / 4) * 1.5 * math.sqrt(5 / (12 * pi)))
    assert SH_CONSTANTS[8] == pytest.approx((pi / 4) * 0.5 * math.sqrt(5 / (4 * pi)))


def test_add_sh_light_is_the_coefficient_weighted_basis():
    gen = torch.Generator().manual_seed(0)
    normals = F.normalize(torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64), dim=1)
    coeff = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64)
    shading = add_sh_light(normals, coeff)
    assert shading.shape == (2, 3, 4, 5)
    flat = normals.permute(0, 2, 3, 1).reshape(2, -1, 3).numpy()
    order = [(0, 0), (1, 1), (1, -1), (1, 0), (2, -2), (2, 1), (2, -1), (2, 2), (2, 0)]
    band = [1.0, 2 * math.pi / 3, math.pi / 4]
    for b in range(2):
        basis = np.stack([band[ld] * real_sh(ld, m, flat[b]) for ld, m in order], axis=1)
        expected = basis @ coeff[b].numpy()  # (HW, 3)
        got = shading[b].permute(1, 2, 0).reshape(-1, 3).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-10)


def test_directional_light_clamps_and_averages():
    normals = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]])
    lights = torch.tensor([[[0.0, 0.0, 2.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]]])
    shading = add_directional_light(normals, lights)
    c = 1 / math.sqrt(2)
    expected = torch.tensor(
        [[[(1 + c) / 2, (2 + c) / 2, (3 + c) / 2], [0.0, 0.0, 0.0], [c / 2, c / 2, c / 2]]]
    )
    assert torch.allclose(shading, expected, atol=1e-6)


# ----------------------------------------------------------------------------- normals
def test_normals_of_a_plane():
    verts, faces, _ = plane_mesh()
    fn = face_normals(verts[None], faces)
    vn = vertex_normals(verts[None], faces)
    assert torch.allclose(fn, torch.tensor([0.0, 0.0, 1.0]).expand_as(fn))
    assert torch.allclose(vn, torch.tensor([0.0, 0.0, 1.0]).expand_as(vn))
    # Reversing the winding flips them; a rigid rotation rotates them.
    assert torch.allclose(vertex_normals(verts[None], faces[:, [0, 2, 1]]), -vn)
    rot = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(vertex_normals(verts[None] @ rot.T, faces), vn @ rot.T, atol=1e-6)


def test_normals_of_a_sphere_point_outwards():
    verts, faces = uv_sphere()
    vn = vertex_normals(verts[None] * 3.0 + 1.0, faces)[0]  # scale/translate invariant
    cos = (vn * verts).sum(-1)
    assert cos.min() > 0.995
    fn = face_normals(verts[None], faces)[0]
    centroid = verts[faces].mean(1)
    assert ((fn * F.normalize(centroid, dim=-1)).sum(-1)).min() > 0.99
    # An unused vertex gets a zero normal instead of NaN.
    extra = torch.cat([verts, torch.tensor([[5.0, 5.0, 5.0]], dtype=torch.float64)])
    assert torch.all(vertex_normals(extra[None], faces)[0, -1] == 0)


def test_grid_triangles_match_deca_loop():
    def deca_generate_triangles(h, w, margin_x=2, margin_y=5):
        triangles = []
        for x in range(margin_x, w - 1 - margin_x):
            for y in range(margin_y, h - 1 - margin_y):
                triangles.append([y * w + x, y * w + x + 1, (y + 1) * w + x])
                triangles.append([y * w + x + 1, (y + 1) * w + x + 1, (y + 1) * w + x])
        return np.array(triangles)[:, [0, 2, 1]]

    assert np.array_equal(grid_triangles(20, 17).numpy(), deca_generate_triangles(20, 17))
    assert np.array_equal(grid_triangles(9, 9, 0, 0).numpy(), deca_generate_triangles(9, 9, 0, 0))
    assert grid_triangles(256, 256).shape == (2 * 251 * 245, 3)


# ----------------------------------------------------------------------------- Renderer
def expected_coverage(size: int) -> torch.Tensor:
    """Pixels whose centre falls inside the projected square (analytic)."""
    c = pixel_centers(size).double()
    xs = CAM_S * (torch.tensor([-0.5, 0.5]) + CAM_T[0])
    ys = -CAM_S * (torch.tensor([0.5, -0.5]) + CAM_T[1])
    in_x = (c > xs[0]) & (c < xs[1])
    in_y = (c > ys[0]) & (c < ys[1])
    return in_y[:, None] & in_x[None, :]


def test_render_plane_coverage_grid_texture_and_sh(plane_renderer):
    renderer, verts, _ = plane_renderer
    size = renderer.image_size
    # Texture whose red channel is the column coordinate and green the row coordinate.
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    albedo = torch.stack([cols / 31, rows / 31, torch.full_like(rows, 0.5)])[None]
    lights = torch.zeros(1, 9, 3)
    lights[0, 0] = torch.tensor([1.0, 2.0, 3.0])  # ambient
    lights[0, 3] = 0.5  # along z, the plane's normal
    out = renderer(verts, project(verts), albedo, lights)

    mask = expected_coverage(size)
    assert torch.equal(out.alpha_images[0, 0] > 0, mask)
    assert torch.equal(out.pos_mask[0, 0] > 0, mask)  # front-facing: screen normal z < 0
    # Grid: invert the camera at each pixel centre, map to UV, then to grid_sample coords.
    c = pixel_centers(size)
    x = c[None, :] / CAM_S - CAM_T[0]
    y = -c[:, None] / CAM_S - CAM_T[1]
    u = UV_SCALE[0] * (x + 0.5) + UV_SHIFT[0]
    v = UV_SCALE[1] * (y + 0.5) + UV_SHIFT[1]
    expected_grid = torch.stack(torch.broadcast_tensors(2 * u - 1, 1 - 2 * v), dim=-1)
    assert torch.allclose(out.grid[0][mask], expected_grid[mask], atol=1e-5)
    assert torch.all(out.grid[0][~mask] == 0)
    # Shading = L0 c0 + L3 c3 n_z with n = (0, 0, 1).
    shade = torch.tensor([1.0, 2.0, 3.0]) * SH_CONSTANTS[0] + 0.5 * SH_CONSTANTS[3]
    assert torch.allclose(out.shading_images[0][:, mask], shade[:, None].expand(3, int(mask.sum())))
    # Bilinear sampling of a linear texture is linear (away from the texture border).
    gx, gy = expected_grid[..., 0], expected_grid[..., 1]
    red = ((gx + 1) * 16 - 0.5) / 31
    green = ((gy + 1) * 16 - 0.5) / 31
    inner = mask & (red > 0.02) & (red < 0.98) & (green > 0.02) & (green < 0.98)
    assert inner.sum() > 100
    assert torch.allclose(out.albedo_images[0, 0][inner], red[inner], atol=1e-5)
    assert torch.allclose(out.albedo_images[0, 1][inner], green[inner], atol=1e-5)
    assert torch.allclose(out.images, out.albedo_images * out.shading_images * out.alpha_images)
    assert torch.all(out.images[0][:, ~mask] == 0)
    normal = out.normal_images[0][:, mask]
    assert torch.allclose(normal, torch.tensor([0.0, 0.0, 1.0])[:, None].expand_as(normal))
    # Background compositing.
    bg = torch.full((1, 3, size, size), 0.25)
    with_bg = renderer(verts, project(verts), albedo, lights, background=bg)
    assert torch.all(with_bg.images[0][:, ~mask] == 0.25)
    assert torch.equal(with_bg.images[0][:, mask], out.images[0][:, mask])


def test_render_gradients_reach_every_input(plane_renderer):
    renderer, verts, _ = plane_renderer
    verts = verts.clone().requires_grad_()
    trans = project(verts.detach()).requires_grad_()
    albedo = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    albedo.requires_grad_()
    lights = torch.zeros(1, 9, 3)
    lights[0, 0] = 1.0
    lights[0, 1] = 0.3
    lights.requires_grad_()
    out = renderer(verts, trans, albedo, lights)
    out.images.sum().backward()
    for name, t in [("verts", verts), ("trans", trans), ("albedo", albedo), ("lights", lights)]:
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name
    # Images are linear in the SH coefficients: d sum / d L[k, c] = sum(albedo_c * basis_k).
    basis = sh_basis(out.normal_images.detach().permute(0, 2, 3, 1))  # (1, H, W, 9)
    expected = torch.einsum("bhwk,bchw->bkc", basis, out.albedo_images.detach())
    assert torch.allclose(lights.grad, expected, atol=1e-4)


def test_render_shape_uses_decas_fixed_lights(plane_renderer):
    renderer, verts, _ = plane_renderer
    shape = renderer.render_shape(verts, project(verts))
    mask = expected_coverage(renderer.image_size)
    # Normal (0, 0, 1): four lights at 45-ish degrees (n . l = 1/sqrt(3)) and one head-on.
    expected = 180 / 255 * 1.7 * (4 / math.sqrt(3) + 1) / 5
    assert torch.allclose(shape.images[0][:, mask], torch.tensor(expected), atol=1e-5)
    assert torch.all(shape.images[0][:, ~mask] == 0)
    assert torch.equal(shape.alpha_images[0, 0] > 0, mask)
    # A detail normal image replaces the coarse normals.
    tilted = torch.tensor([1.0, 0.0, 0.0])[None, :, None, None].expand(1, 3, 32, 32)
    side = renderer.render_shape(verts, project(verts), detail_normal_images=tilted)
    expected_side = 180 / 255 * 1.7 * (2 / math.sqrt(3)) / 5
    assert torch.allclose(side.images[0][:, mask], torch.tensor(expected_side), atol=1e-5)


def test_render_colors_interpolates_vertex_values(plane_renderer):
    renderer, verts, _ = plane_renderer
    image = renderer.render_colors(project(verts), verts)  # colour = world position
    mask = expected_coverage(renderer.image_size)
    c = pixel_centers(renderer.image_size)
    x = (c[None, :] / CAM_S - CAM_T[0]).expand(32, 32)
    assert torch.allclose(image[0, 0][mask], x[mask], atol=1e-5)


def test_world2uv_inverts_the_uv_map(plane_renderer):
    renderer, verts, _ = plane_renderer
    uv_pos = renderer.world2uv(verts.expand(2, -1, -1))
    assert uv_pos.shape == (2, 3, 32, 32)
    t = (torch.arange(32.0) + 0.5) / 32
    u, v = t[None, :], 1 - t[:, None]  # texel row 0 is v = 1
    x = ((u - UV_SHIFT[0]) / UV_SCALE[0] - 0.5).expand(32, 32)
    y = ((v - UV_SHIFT[1]) / UV_SCALE[1] - 0.5).expand(32, 32)
    assert renderer.uv_mask.all()
    assert torch.allclose(uv_pos[1, 0], x, atol=1e-5)
    assert torch.allclose(uv_pos[1, 1], y, atol=1e-5)
    assert torch.all(uv_pos[:, 2] == 0)


def test_detail_normals_of_a_ramp_displacement(plane_renderer):
    renderer, verts, faces = plane_renderer
    normals = vertex_normals(verts, faces)
    size = renderer.uv_size
    # Displacement along +z growing linearly with world x: a tilted plane with slope k.
    k = 0.3
    x_world = renderer.world2uv(verts)[:, 0:1]
    uv_z = k * x_world
    mask = torch.zeros(size, size)
    mask[8:24, 8:24] = 1
    fixed = torch.full((size, size), 0.01)
    maps = renderer.displacement_to_detail(uv_z, verts, normals, mask, fixed)
    expected = F.normalize(torch.tensor([-k, 0.0, 1.0]), dim=0)
    inner = maps.uv_detail_normals[0][:, 10:22, 10:22].reshape(3, -1)
    assert torch.allclose(inner, expected[:, None].expand_as(inner), atol=1e-4)
    outside = maps.uv_detail_normals[0][:, 0:4, :].reshape(3, -1)  # mask 0: coarse normals
    assert torch.allclose(outside, torch.tensor([0.0, 0.0, 1.0])[:, None].expand_as(outside))
    assert torch.allclose(maps.uv_detail_vertices[0, 2], uv_z[0, 0] * mask + 0.01, atol=1e-6)


def test_upsample_mesh_displaces_texels_along_normals(plane_renderer):
    renderer, verts, faces = plane_renderer
    normals = vertex_normals(verts, faces)
    disp = torch.full((1, 1, 32, 32), 0.05)
    texture = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dense = renderer.upsample_mesh(verts, normals, disp, texture=texture)
    n = int(renderer.uv_mask.sum())
    assert dense.vertices.shape == (1, n, 3)
    assert torch.allclose(dense.vertices[0, :, 2], torch.tensor(0.05))
    assert dense.faces.min() >= 0 and dense.faces.max() < n
    assert dense.faces.shape[0] == renderer.dense_faces.shape[0]  # all texels are covered
    # The dense faces face the same way as the coarse mesh (+z).
    assert torch.all(face_normals(dense.vertices, dense.faces)[0, :, 2] > 0.99)
    assert torch.equal(dense.colors[0], texture[0].reshape(3, -1)[:, dense.texel_index].t())
    keep = torch.zeros(32, 32, dtype=torch.bool)
    keep[6:12, 4:12] = True  # inside the 5-row / 2-column margins of dense_faces
    part = renderer.upsample_mesh(verts, normals, disp, valid_mask=keep)
    assert part.vertices.shape[1] == 48 and part.faces.shape[0] == 2 * 5 * 7


def test_render_result_helpers(plane_renderer, tmp_path):
    renderer, verts, _ = plane_renderer
    out = renderer(verts, project(verts), torch.ones(1, 3, 32, 32))
    as64 = out.to(torch.float64)
    assert as64.images.dtype == torch.float64 and as64.fragments.bary.dtype == torch.float64
    assert as64.fragments.face_index.dtype == torch.int64
    arrays = out.numpy()
    assert arrays["images"].shape == (1, 3, 32, 32) and "fragments.face_index" in arrays
    out.save(tmp_path / "render.npz")
    assert set(np.load(tmp_path / "render.npz").files) == set(arrays)
    albedo = torch.ones(1, 3, 32, 32, requires_grad=True)
    graded = renderer(verts, project(verts), albedo)
    assert graded.images.requires_grad and not graded.detach().images.requires_grad


# ----------------------------------------------------------------------------- drawing
def test_draw_landmarks():
    image = torch.zeros(3, 224, 224)
    lmks = torch.tensor([[0.0, 0.0], [-1.0, -1.0], [2.0, 0.0], [float("nan"), 0.0]])
    out = draw_landmarks(image, lmks, color=(1.0, 0.5, 0.0), radius=0)
    assert torch.all(image == 0)  # input untouched
    assert torch.equal(out[:, 112, 112], torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(out[:, 0, 0], torch.tensor([1.0, 0.5, 0.0]))
    assert int((out.sum(0) > 0).sum()) == 2  # off-image and NaN points skipped
    disc = draw_landmarks(image[None], lmks[None, :1] * 0 + 0.5, radius=2, normalized=True)
    assert int((disc[0, 1] > 0).sum()) == 13  # a radius-2 disc has 13 pixels
    pix = draw_landmarks(image, torch.tensor([[10.7, 20.2]]), radius=0, normalized=False)
    assert pix[1, 20, 10] == 1 and int((pix > 0).sum()) == 1


def test_batched_render_equals_single_renders(plane_renderer):
    renderer, verts, _ = plane_renderer
    gen = torch.Generator().manual_seed(2)
    world = torch.cat([verts, verts @ torch.tensor([[0.9, 0.1, 0.0], [-0.1, 0.9, 0.0], [0, 0, 1]])])
    trans = project(world) * torch.tensor([[[1.0]], [[0.8]]])
    albedo = torch.rand(2, 3, 32, 32, generator=gen)
    lights = torch.randn(2, 9, 3, generator=gen)
    both = renderer(world, trans, albedo, lights)
    for b in range(2):
        one = renderer(world[b : b + 1], trans[b : b + 1], albedo[b : b + 1], lights[b : b + 1])
        assert torch.allclose(both.images[b], one.images[0], atol=1e-6)
        assert torch.equal(both.alpha_images[b], one.alpha_images[0])
    assert not torch.equal(both.alpha_images[0], both.alpha_images[1])
