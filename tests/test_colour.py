"""sRGB <-> linear light against the IEC 61966-2-1 formulas, and the fit's closed-form grey
light and albedo solved in linear light on a synthetic render with a known answer."""

from __future__ import annotations

import pytest
import torch

from emoca.model.fit_colour import shade, solve_grey_light_albedo
from emoca.render.colour import linear_to_srgb, srgb_to_linear
from emoca.render.shading import add_sh_light


def test_srgb_to_linear_known_values():
    # IEC 61966-2-1: c / 12.92 up to 0.04045, ((c + 0.055) / 1.055) ** 2.4 above;
    # values worked out by hand from the standard's formula
    c = torch.tensor([0.0, 0.02, 0.04045, 0.2, 0.5, 128 / 255, 0.8, 1.0], dtype=torch.float64)
    want = torch.tensor([0.0, 0.02 / 12.92, 0.0031308049535603713, 0.033104766570885055,
                         0.21404114048223255, 0.21586050011389923, 0.6038273388553378, 1.0],
                        dtype=torch.float64)
    torch.testing.assert_close(srgb_to_linear(c), want, rtol=1e-12, atol=1e-12)


def test_linear_to_srgb_known_values():
    x = torch.tensor([0.0, 0.001, 0.0031308, 0.18, 0.5, 1.0], dtype=torch.float64)
    # 18 % grey encodes to ~118/255; linear 0.5 to ~188/255
    want = torch.tensor([0.0, 0.01292, 0.04044994, 0.46135612950044164, 0.7353569830524495,
                         1.0], dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(x), want, rtol=1e-6, atol=1e-7)


def test_round_trip_continuity_and_finite_gradients():
    c = torch.linspace(-0.1, 1.2, 2001, dtype=torch.float64, requires_grad=True)
    back = linear_to_srgb(srgb_to_linear(c))
    torch.testing.assert_close(back, c.detach(), rtol=0, atol=1e-12)
    back.sum().backward()
    assert torch.isfinite(c.grad).all()
    # the two pieces meet at the knees (no jump)
    eps = 1e-9
    for f, knee in ((srgb_to_linear, 0.04045), (linear_to_srgb, 0.0031308)):
        lo, hi = f(torch.tensor([knee - eps, knee + eps], dtype=torch.float64))
        assert abs(float(hi - lo)) < 1e-6
    x = torch.zeros(3, requires_grad=True)
    linear_to_srgb(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def _hemisphere(size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, S, S) unit normals of a sphere facing the camera (+z) and its (1, 1, S, S) mask."""
    t = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-t, t, indexing="ij")
    r2 = x * x + y * y
    inside = r2 < 0.95
    z = (1 - r2.clamp(max=1)).sqrt()
    n = torch.stack([x, y, z])[None] * inside
    return n, inside[None, None].to(torch.float64)


def test_linear_solve_recovers_a_known_light_and_albedo():
    normals, mask = _hemisphere()
    light = torch.tensor([3.0, 0.4, 0.6, 1.2, 0.05, -0.1, 0.08, 0.1, -0.2], dtype=torch.float64)
    shading = add_sh_light(normals, light[None, :, None].expand(1, 9, 3))[:, :1]
    mean = (shading * mask).sum() / mask.sum()
    light, shading = light / mean, shading / mean  # the solver's scale: mean shading 1
    albedo = torch.tensor([[0.78, 0.57, 0.45]], dtype=torch.float64)  # sRGB skin tone
    photo = shade(albedo[:, :, None, None], shading, linear=True) * mask
    got_light, got_albedo = solve_grey_light_albedo(photo, normals, mask, ridge=0.0,
                                                    linear=True)
    torch.testing.assert_close(got_albedo, albedo, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_light[0, :, 0], light, rtol=0, atol=1e-6)
    # the same photo solved on encoded values cannot explain it: its render is off
    l_s, a_s = solve_grey_light_albedo(photo, normals, mask, ridge=0.0, linear=False)
    srgb_render = shade(a_s[:, :, None, None], add_sh_light(normals, l_s)[:, :1], linear=False)
    err = ((srgb_render - photo).abs() * mask).sum() / mask.sum() / 3
    assert float(err) > 1e-3


@pytest.mark.parametrize("linear", [False, True])
def test_shade_with_unit_shading_is_the_albedo(linear):
    a = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(shade(a, torch.ones(2, 1, 4, 4, dtype=torch.float64), linear), a)
