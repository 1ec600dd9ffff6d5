"""Emoca / DECA model and the emotion recognisers on look-alike official files.

Independent checks: a known code forced through the encoders must come out unchanged and
decode to exactly FLAME's vertices and to landmarks given by DECA's camera formula written
out here; an ambient-only light renders the grey albedo as a known constant; the emotion
heads are recomputed with ``torch.nn.functional`` from tensors read by ``torch.load``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emoca.assets.locate import Assets, MissingAssetError
from emoca.assets.synthetic import write_official_assets
from emoca.assets.synthetic_checkpoints import (
    lightning_callback_importable,
    write_deca_model,
    write_emoca_model,
    write_emodeca_model,
    write_emotion_net,
)
from emoca.model.checkpoints import EmocaArch
from emoca.model.emoca_model import Emoca, EmocaCodes, combine_expression_code
from emoca.model.emotion import EmotionRecognizer, ParameterEmotionRecognizer

MODEL = "EMOCA_v2_mp"  # a v2 model: also exercises the MediaPipe landmarks
SH_C0 = 1.0 / math.sqrt(4.0 * math.pi)  # DECA's constant factor of the SH band 0


def raw_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with lightning_callback_importable() as cls, torch.serialization.safe_globals([cls]):
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_official_assets(tmp_path_factory.mktemp("model_assets"), seed=0,
                                 albedo="bfm", albedo_components=4)
    write_deca_model(root / "DECA" / "data" / "deca_model.tar", seed=0)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    write_emotion_net(root, seed=10)
    write_emodeca_model(root, seed=11, deca_seed=0)
    return root


@pytest.fixture(scope="module")
def emoca(root: Path) -> Emoca:
    return Emoca.from_pretrained(MODEL, assets=Assets(root))


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def codes(emoca: Emoca, crops: torch.Tensor) -> EmocaCodes:
    with torch.no_grad():
        return emoca.encode(crops)


def visible_codes(batch: int = 2, ambient: float = 3.5) -> EmocaCodes:
    """Codes that put the head in the middle of the crop under ambient-only light."""
    g = torch.Generator().manual_seed(1)
    light = torch.zeros(batch, 9, 3)
    light[:, 0] = ambient
    pose = torch.zeros(batch, 6)
    pose[:, 3] = 0.15  # open the jaw a little
    return EmocaCodes(shape=0.5 * torch.randn(batch, 100, generator=g),
                      tex=torch.zeros(batch, 50),
                      exp=0.5 * torch.randn(batch, 50, generator=g), pose=pose,
                      cam=torch.tensor([[9.0, 0.0, 0.0]]).repeat(batch, 1), light=light,
                      detail=torch.randn(batch, 128, generator=g))


# ------------------------------------------------------------------------------ encode


def test_encode_gives_the_documented_shapes(codes: EmocaCodes) -> None:
    expected = {"shape": (2, 100), "tex": (2, 50), "exp": (2, 50), "pose": (2, 6),
                "cam": (2, 3), "light": (2, 9, 3), "detail": (2, 128)}
    for name, shape in expected.items():
        value = getattr(codes, name)
        assert tuple(value.shape) == shape, name
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    assert tuple(codes.jaw_pose.shape) == (2, 3)


def test_encode_refuses_other_sizes(emoca: Emoca) -> None:
    with pytest.raises(ValueError, match="224"):
        emoca.encode(torch.rand(1, 3, 112, 112))


def test_deca_differs_from_emoca_only_in_the_expression(root: Path, crops: torch.Tensor,
                                                        codes: EmocaCodes) -> None:
    deca = Emoca.from_pretrained("DECA", assets=Assets(root))
    assert deca.E_expression is None and deca.config.detail_normals == "deca"
    with torch.no_grad():
        deca_codes = deca.encode(crops, detail=False)
        coarse = deca.E_flame(crops)
    for name in ("shape", "tex", "pose", "cam", "light"):
        torch.testing.assert_close(getattr(deca_codes, name), getattr(codes, name),
                                   rtol=0, atol=1e-6, msg=name)
    assert not torch.allclose(deca_codes.exp, codes.exp, atol=1e-4)
    # DECA's expression is E_flame's slice 150:200 (shape 100 | tex 50 | exp 50 | ...)
    torch.testing.assert_close(deca_codes.exp, coarse[:, 150:200], rtol=0, atol=0)
    assert deca_codes.detail is None


@pytest.mark.parametrize(("jaw", "glob"), [(False, False), (True, False), (False, True),
                                           (True, True)])
def test_expression_encoder_output_replaces_the_official_parts(jaw: bool, glob: bool) -> None:
    arch = EmocaArch(exp_deca_jaw_pose=jaw, exp_deca_global_pose=glob)
    exp, pose = torch.full((1, 50), -1.0), torch.arange(6.0)[None]
    out = torch.arange(100.0, 100.0 + arch.expression_dim)[None]
    new_exp, new_pose = combine_expression_code(exp, pose, out, arch)
    assert torch.equal(new_exp, out[:, :50])
    tail = out[0, 50:].tolist()
    want_global = tail[:3] if glob else [0.0, 1.0, 2.0]
    want_jaw = tail[-3:] if jaw else [3.0, 4.0, 5.0]
    assert new_pose[0].tolist() == want_global + want_jaw
    with pytest.raises(ValueError, match="output has"):
        combine_expression_code(exp, pose, torch.zeros(1, arch.expression_dim + 1), arch)


# ------------------------------------------------------------------------------ decode


def test_known_code_decodes_to_flame_and_the_camera_formula(emoca: Emoca,
                                                            crops: torch.Tensor) -> None:
    model = copy.deepcopy(emoca)
    g = torch.Generator().manual_seed(3)
    shape, tex = 0.5 * torch.randn(100, generator=g), 0.3 * torch.randn(50, generator=g)
    deca_exp, exp = torch.randn(50, generator=g), torch.randn(50, generator=g)
    pose = torch.tensor([0.1, -0.2, 0.05, 0.2, 0.01, -0.02])
    cam = torch.tensor([8.5, 0.01, -0.02])
    light = torch.randn(27, generator=g)
    detail = torch.randn(128, generator=g)
    with torch.no_grad():  # a zero last layer makes each encoder output its bias
        for net, bias in ((model.E_flame, torch.cat([shape, tex, deca_exp, pose, cam, light])),
                          (model.E_expression, exp), (model.E_detail, detail)):
            net.layers[2].weight.zero_()
            net.layers[2].bias.copy_(bias)
        codes = model.encode(crops[:1])
        out = model.decode(codes, render=False, detail=False)
        flame = model.flame(shape[None], exp[None], pose[None])
    for name, value in (("shape", shape), ("tex", tex), ("exp", exp), ("pose", pose),
                        ("cam", cam), ("detail", detail)):
        assert torch.equal(getattr(codes, name)[0], value), name
    assert torch.equal(codes.light[0], light.view(9, 3))
    assert torch.equal(out.vertices, flame.vertices)
    assert torch.equal(out.landmarks3d, flame.landmarks3d)
    s, tx, ty = cam.tolist()
    lmk = flame.landmarks68[0]
    x = s * (lmk[:, 0] + tx)
    y = -s * (lmk[:, 1] + ty)
    expected = torch.stack([(x + 1) * 112, (y + 1) * 112], dim=-1)
    torch.testing.assert_close(out.landmarks2d[0], expected, rtol=0, atol=1e-4)
    v = flame.vertices[0]
    torch.testing.assert_close(out.transformed_vertices[0, :, 2], -s * v[:, 2])
    torch.testing.assert_close(out.transformed_vertices[0, :, 1], -s * (v[:, 1] + ty))
    assert out.rendered is None and out.displacement_map is None


def test_decode_renders_grey_albedo_under_ambient_light(emoca: Emoca) -> None:
    codes = visible_codes(ambient=3.5)
    with torch.no_grad():
        out = emoca.decode(codes, render=True, detail=True, dense=True)
    b, size = 2, 224
    shapes = {"vertices": (b, 5023, 3), "transformed_vertices": (b, 5023, 3),
              "landmarks2d": (b, 68, 2), "landmarks3d": (b, 68, 3),
              "landmarks3d_projected": (b, 68, 3), "landmarks2d_mediapipe": (b, 105, 2),
              "albedo": (b, 3, 256, 256), "rendered": (b, 3, size, size),
              "alpha": (b, 1, size, size), "render_mask": (b, 1, size, size),
              "normals": (b, 5023, 3), "shape_images": (b, 3, size, size),
              "displacement_map": (b, 1, 256, 256), "uv_detail_normals": (b, 3, 256, 256),
              "detail_render": (b, 3, size, size), "shape_detail_images": (b, 3, size, size)}
    for name, shape in shapes.items():
        value = getattr(out, name)
        assert tuple(value.shape) == shape, name
        assert torch.isfinite(value).all(), name
    alpha = out.alpha[:, 0] > 0.5
    assert 0.05 < alpha.float().mean() < 0.9  # the head is in view, not filling the crop
    assert (out.render_mask <= out.alpha + 1e-6).all() and out.render_mask.sum() > 0
    # grey albedo 0.5 times constant SH band-0 shading, zero off the mesh
    expected = 0.5 * 3.5 * SH_C0
    for image in (out.rendered, out.detail_render):
        inside = image.permute(0, 2, 3, 1)[alpha]
        assert (inside - expected).abs().quantile(0.99) < 1e-4
        assert image.permute(0, 2, 3, 1)[~alpha].abs().max() == 0
    # the predicted displacement is tanh-bounded by 0.01 (metres)
    uv_z = out.displacement_map - emoca.fixed_uv_dis
    assert uv_z.abs().max() <= 0.01 + 1e-7 and uv_z.abs().max() > 0
    # detail normals are unit where the UV grid mesh has triangles (DECA's dense_faces skip
    # 2 columns and 5 rows at the borders) and the template covers the texel, except where
    # the grid triangles are smaller than DECA's normalisation eps (1e-6 m^2)
    normals = out.uv_detail_normals.norm(dim=1)
    assert normals.max() <= 1 + 1e-4
    covered = emoca.renderer.uv_mask[5:251, 2:254][None].expand(b, -1, -1)
    unit = (normals[:, 5:251, 2:254][covered] - 1).abs() < 1e-4
    assert unit.float().mean() > 0.95
    mesh = out.dense_mesh
    assert mesh.vertices.shape[0] == b and mesh.faces.shape[1] == 3
    assert int(mesh.faces.max()) < mesh.vertices.shape[1]


def test_detail_needs_a_detail_code(emoca: Emoca) -> None:
    codes = visible_codes()
    no_detail = EmocaCodes(**{**codes.__dict__, "detail": None})
    with pytest.raises(ValueError, match="detail"):
        emoca.decode(no_detail, render=False, detail=True)
    out = emoca.decode(no_detail, render=False, detail=False)
    assert out.displacement_map is None


# ---------------------------------------------------------------------- loading/saving


def test_save_pretrained_round_trip(emoca: Emoca, root: Path, tmp_path: Path) -> None:
    emoca.save_pretrained(tmp_path / "saved")
    again = Emoca.from_pretrained(tmp_path / "saved", assets=Assets(root))
    assert again.config == emoca.config
    assert set(again.networks) == set(emoca.networks)
    for name, net in emoca.networks.items():
        theirs = again.networks[name].state_dict()
        for key, value in net.state_dict().items():
            assert torch.equal(theirs[key], value), (name, key)
    codes = visible_codes()
    with torch.no_grad():
        a = emoca.decode(codes, render=False)
        b = again.decode(codes, render=False)
    assert torch.equal(a.vertices, b.vertices)
    assert torch.equal(a.displacement_map, b.displacement_map)


def test_unknown_and_missing_models_say_what_to_do(root: Path) -> None:
    with pytest.raises(ValueError, match="EMOCA_v2_lr_mse_20"):
        Emoca.from_pretrained("EMOCA_v3", assets=Assets(root))
    with pytest.raises(MissingAssetError, match="emoca_v2_lr_cos_1.5"):
        Emoca.from_pretrained("EMOCA_v2_lr_cos_1.5", assets=Assets(root))


# ----------------------------------------------------------------------------- emotion


def test_emotion_recognizer_matches_its_linear_head(root: Path, crops: torch.Tensor) -> None:
    recognizer = EmotionRecognizer.from_pretrained(assets=Assets(root))
    pred = recognizer.predict(crops, batch_size=1)
    raw = raw_state_dict(Path(recognizer.config["checkpoint"]))
    head = pred.feature @ raw["linear.weight"].T + raw["linear.bias"]
    assert tuple(pred.probs.shape) == (2, 8) and tuple(pred.feature.shape) == (2, 2048)
    torch.testing.assert_close(pred.logits, head[:, :8])
    torch.testing.assert_close(pred.probs, torch.softmax(head[:, :8], dim=1))
    torch.testing.assert_close(pred.valence, head[:, 8])
    torch.testing.assert_close(pred.arousal, head[:, 9])
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(2))
    assert len(pred.labels()) == 2


def test_parameter_emotion_recognizer_is_the_emodeca_mlp(root: Path) -> None:
    folder = root / "EmotionRecognition" / "face_reconstruction_based" / "EMOCA-emorec"
    head = ParameterEmotionRecognizer.from_folder(folder)
    codes = visible_codes()
    pred = head.predict(codes)
    raw = raw_state_dict(Path(head.config["checkpoint"]))
    x = torch.cat([codes.shape, codes.exp, codes.jaw_pose], dim=1)  # EmoDECA's order
    for k in range(4):
        p = f"mlp.model.{3 * k}"
        bn = f"mlp.model.{3 * k + 1}"
        x = F.linear(x, raw[f"{p}.weight"], raw[f"{p}.bias"])
        x = F.batch_norm(x, raw[f"{bn}.running_mean"], raw[f"{bn}.running_var"],
                         raw[f"{bn}.weight"], raw[f"{bn}.bias"], training=False, eps=1e-5)
        x = F.leaky_relu(x, 0.2)
    x = F.linear(x, raw["mlp.model.12.weight"], raw["mlp.model.12.bias"])
    torch.testing.assert_close(pred.logits, x[:, :8])
    torch.testing.assert_close(pred.valence, x[:, 8])
    torch.testing.assert_close(pred.arousal, x[:, 9])
    assert pred.feature is None
