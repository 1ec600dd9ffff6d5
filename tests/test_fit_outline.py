"""The fit's dynamic jaw (emoca.model.fit_outline) and ``dense+dlib``'s configuration.

Truth: the outline of the rasterized mesh (mask boundary) for where the jaw points must lie
on a turned head; a synthetic head of known pose and shape for the fit itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from silhouette import outline_pixels

from emoca.geometry import ndc_to_pixels, orthographic_project
from emoca.model.fit_adapter import FitAdapter, fit_view
from emoca.model.fit_config import FitConfig

SIZE = 224


@pytest.fixture(scope="module")
def ict(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir)


def _head(ict, yaw_deg: float):
    g = torch.Generator().manual_seed(3)
    names = ict.expression_names
    exp = torch.zeros(1, len(names))
    exp[0, names.index("jawOpen")] = 0.3
    exp[0, names.index("mouthSmile_L")] = 0.5
    return {"identity": 0.5 * torch.randn(1, ict.n_identity, generator=g),
            "expression": exp,
            "rotation": torch.tensor([[0.05, math.radians(yaw_deg), 0.02]])}


@pytest.mark.parametrize("yaw", [30.0, -30.0])
def test_far_side_jaw_lies_on_the_rendered_outline(ict, yaw):
    face = ict.region_view("face")  # skin only: its outline is the cheek's, not the skull's
    ad = FitAdapter(face, ict.n_identity, dynamic_jaw=True)
    fixed = FitAdapter(face, ict.n_identity)
    params = _head(ict, yaw)
    cam = torch.tensor([[0.07, 0.0, 0.0]])
    edge = outline_pixels(face(**params).vertices, face.faces, cam, SIZE)
    jaw = ndc_to_pixels(orthographic_project(ad.landmarks(params), cam)[..., :2], SIZE)[0, :17]
    jaw0 = ndc_to_pixels(orthographic_project(fixed.landmarks(params), cam)[..., :2],
                         SIZE)[0, :17]
    d = np.linalg.norm(jaw.numpy()[:, None] - edge[None], axis=-1).min(1)
    d0 = np.linalg.norm(jaw0.numpy()[:, None] - edge[None], axis=-1).min(1)
    # yaw > 0 turns the face's own left side (jaw 9-16, image right) away from the camera
    far = slice(10, 16) if yaw > 0 else slice(1, 7)
    assert d[far].max() < 1.5, d[far]
    assert d0[far].mean() > 2.0 * d[far].mean() + 1.0, (d0[far], d[far])
    # the chin and near side keep ICT's fixed vertices
    torch.testing.assert_close(jaw[8], jaw0[8])


def test_dynamic_jaw_is_the_fixed_one_on_the_frontal_mean_face(ict):
    face = ict.region_view("face")
    params = {"identity": torch.zeros(1, ict.n_identity),
              "expression": torch.zeros(1, len(ict.expression_names)),
              "rotation": torch.zeros(1, 3)}
    torch.testing.assert_close(FitAdapter(face, 100, dynamic_jaw=True).landmarks(params),
                               FitAdapter(face, 100).landmarks(params))


def test_fit_with_outline_jaw_recovers_a_turned_head(ict):
    """A known head turned 30 degrees; targets: its dense points and 68 landmarks with the
    jaw on its outline (as dlib draws it). The dynamic-jaw fit lands on them and finds the
    yaw; the same fit with fixed jaw vertices cannot."""
    from emoca.face_model.mediapipe_embedding import MediaPipeEmbedding
    from emoca.model.fitting import Fitter

    view = fit_view(ict)
    params = _head(ict, 30.0)
    cam = torch.tensor([[0.08, 0.0, 1.0]])
    emb = MediaPipeEmbedding.load()
    verts = view(**params).vertices

    def px(points):
        return ndc_to_pixels(orthographic_project(points, cam)[..., :2], SIZE)

    dense = torch.zeros(1, 478, 2)
    dense[:, torch.as_tensor(emb.mediapipe_indices)] = px(emb.points(verts))
    lmk = px(FitAdapter(view, 100, dynamic_jaw=True).landmarks(params))
    crops = torch.zeros(1, 3, SIZE, SIZE)
    base = FitConfig(steps_appearance=0)
    errs = {}
    for name, cfg in (("dynamic", base.with_second_68()),
                      ("fixed", base.replace(w_landmarks_with_dense=1.0))):
        res = Fitter(ict, None, cfg).fit(crops, lmk, mediapipe=dense)
        iod = (lmk[:, 36:42].mean(1) - lmk[:, 42:48].mean(1)).norm(dim=-1)
        errs[name] = float(((res.landmarks2d - lmk).norm(dim=-1)[:, :17].mean(1) / iod)[0])
        if name == "dynamic":
            yaw = math.degrees(float(res.params["rotation"][0, 1]))
            assert abs(yaw - 30.0) < 3.0, yaw
    assert errs["dynamic"] < 0.02, errs
    assert errs["fixed"] > 2 * errs["dynamic"], errs
