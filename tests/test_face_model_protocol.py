"""Both face models answer the questions the fitter asks, instead of being told apart by
which parameter names they happen to have."""

from __future__ import annotations

import pytest
import torch

from emoca.face_model.base import FaceModel


@pytest.fixture(scope="module")
def ict(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.default(ict_dir)


def _models(flame, ict):
    return {"flame": flame, "ict": ict}


def test_protocol_attributes_name_real_forward_arguments(flame, ict) -> None:
    for name, model in _models(flame, ict).items():
        assert isinstance(model, FaceModel)
        assert model.name == name
        sizes = model.parameter_sizes()
        assert model.identity_param in sizes and model.pose_param in sizes
        assert "expression" in sizes
        names = model.expression_names
        assert names is None or len(names) == sizes["expression"]
    assert ict.expression_bounds == (0.0, 1.0) and flame.expression_bounds is None


def test_ict_landmarks_only_equals_the_full_forward(ict) -> None:
    g = torch.Generator().manual_seed(0)
    sizes = ict.parameter_sizes()
    p = {k: torch.randn(3, n, generator=g) * 0.3 for k, n in sizes.items()}
    p["expression"] = p["expression"].abs().clamp(max=1)
    p["scale"] = 1 + p["scale"].abs()
    torch.testing.assert_close(ict.landmarks_only(**p), ict(**p).landmarks68,
                               atol=1e-4, rtol=1e-5)  # cm: 1e-4 cm = 1 micrometre
    # partial arguments broadcast like the forward's
    torch.testing.assert_close(ict.landmarks_only(expression=p["expression"]),
                               ict(expression=p["expression"]).landmarks68, atol=1e-4,
                               rtol=1e-5)


def test_surface_points_are_declared_not_guessed(flame, ict) -> None:
    # the fitter evaluates only the points it compares on models that declare it
    # (SurfacePointModel); on ICT a point basis at the landmark vertices equals the forward's
    # landmarks, and FLAME (skinned, not linear) does not claim it
    from emoca.face_model.base import SurfacePointModel

    assert isinstance(ict, SurfacePointModel) and not isinstance(flame, SurfacePointModel)
    g = torch.Generator().manual_seed(1)
    p = {k: torch.randn(2, n, generator=g) * 0.3 for k, n in ict.parameter_sizes().items()}
    p["expression"] = p["expression"].abs().clamp(max=1)
    p["scale"] = 1 + p["scale"].abs()
    basis = ict.point_basis(ict.landmark_indices[:, None])
    torch.testing.assert_close(basis(**p), ict(**p).landmarks68, atol=1e-4, rtol=1e-5)
