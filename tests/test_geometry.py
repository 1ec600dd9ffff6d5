"""emoca.geometry: the pixel convention on cases whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoca.detect.crop import CropTransform, warp_crop
from emoca.geometry import (
    axis_angle_to_matrix,
    box_of_points,
    ndc_to_pixels,
    orthographic_project,
    pixels_to_ndc,
)
from emoca.render.raster import rasterize


@pytest.mark.parametrize(("px", "py"), [(10, 20), (0, 0), (31, 5)])
def test_rasterized_square_lands_on_the_pixel_ndc_to_pixels_names(px: int, py: int) -> None:
    """A small triangle around ``pixels_to_ndc((px, py))`` covers exactly pixel (px, py):
    the renderer, and hence every landmark we project, uses centres at integers."""
    size = 32
    centre = pixels_to_ndc(torch.tensor([float(px), float(py)]), size)
    # corners within 0.45 pixel of the centre: it can contain no other pixel centre, and a
    # half-pixel slip would leave it covering none
    offsets = torch.tensor([[-0.4, -0.4], [0.45, -0.35], [0.0, 0.45]]) * (2.0 / size)
    verts = torch.cat([centre + offsets, torch.ones(3, 1)], dim=1)[None]
    faces = torch.tensor([[0, 1, 2]])
    mask = rasterize(verts, faces, size, size).mask[0]
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert rows.tolist() == [py] and cols.tolist() == [px]
    back = ndc_to_pixels(centre, size)
    assert torch.allclose(back, torch.tensor([float(px), float(py)]), atol=1e-5)


def test_bright_pixel_is_warped_to_the_point_the_crop_transform_names() -> None:
    """One lit image pixel, cropped: the crop's brightness centroid sits at
    ``to_crop`` of the image pixel's centre (integer coordinates in both frames)."""
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    x, y = 57, 41
    image[y, x] = 255
    # 2x upsampling: the bilinear tent is sampled symmetrically around its centre, so the
    # centroid is exact; a half-pixel slip in either frame would move it by 0.5-1 pixel
    t = CropTransform.from_square((60.3, 50.0), 31.5, crop_size=64)
    crop = warp_crop(image, t)[0].numpy()
    ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
    centroid = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    expected = t.to_crop(np.array([[x, y]], dtype=np.float64))[0]
    np.testing.assert_allclose(centroid, expected, atol=1e-6)
    np.testing.assert_allclose(t.to_image(expected[None])[0], [x, y], atol=1e-9)


def test_orthographic_camera_on_hand_computed_points() -> None:
    points = torch.tensor([[[1.0, 2.0, 3.0], [-0.5, 0.0, 0.25]]])
    cam = torch.tensor([[2.0, 0.5, -1.0]])  # s, tx, ty
    out = orthographic_project(points, cam)
    expected = torch.tensor([[[3.0, -2.0, -6.0], [0.0, 2.0, -0.5]]])
    assert torch.allclose(out, expected)


def test_axis_angle_matches_scipy_and_is_finite_at_zero() -> None:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    r = rng.normal(size=(50, 3)) * rng.uniform(0, 3, size=(50, 1))
    r[0] = 0.0
    r[1] = [1e-6, -2e-6, 0.0]
    ours = axis_angle_to_matrix(torch.from_numpy(r)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(r).as_matrix(), atol=1e-12)
    zero = torch.zeros(1, 3, requires_grad=True)
    axis_angle_to_matrix(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_box_of_points_ignores_non_finite() -> None:
    p = np.array([[1.0, 5.0], [np.nan, 0.0], [3.0, -2.0]])
    np.testing.assert_array_equal(box_of_points(p), [1.0, -2.0, 3.0, 5.0])
    with pytest.raises(ValueError):
        box_of_points(np.full((2, 2), np.inf))
