"""FLAME against independent references (smplx's LBS, analytic cases, the embeddings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import smplx.lbs
import torch
import torch.nn.functional as F

from emoca.face_model.flame import FLAME, FlameAlbedo, nearest_source_index
from emoca.face_model.lbs import batch_rodrigues, contour_rows_from_yaw, rotation_euler_y
from emoca.io.safe_pickle import load_npy


def _zeros(b: int = 1):
    return dict(shape=torch.zeros(b, 100), expression=torch.zeros(b, 50), pose=torch.zeros(b, 6))


def test_vertices_equal_smplx_lbs(flame):
    g = torch.Generator().manual_seed(0)
    b = 3
    shape, exp = torch.randn(b, 100, generator=g), torch.randn(b, 50, generator=g)
    pose = torch.randn(b, 6, generator=g) * 0.4
    neck, eyes = torch.randn(b, 3, generator=g) * 0.2, torch.randn(b, 6, generator=g) * 0.2
    out = flame(shape=shape, expression=exp, pose=pose, neck_pose=neck, eye_pose=eyes)
    full = torch.cat([pose[:, :3], neck, pose[:, 3:], eyes], 1)
    ref, ref_joints = smplx.lbs.lbs(torch.cat([shape, exp], 1), full, flame.v_template,
                                    flame.shapedirs, flame.posedirs, flame.J_regressor,
                                    flame.parents, flame.lbs_weights)
    torch.testing.assert_close(out.vertices, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref_joints, atol=1e-5, rtol=0)


def test_zero_parameters_give_the_template(flame, fake_assets):
    from emoca.io.safe_pickle import load_pickle

    raw = load_pickle(fake_assets / "FLAME/geometry/generic_model.pkl")
    out = flame(**_zeros(2))
    np.testing.assert_allclose(out.vertices[1].numpy(), raw["v_template"], atol=1e-6)


def test_shape_and_expression_use_the_right_official_columns(flame, fake_assets):
    from emoca.io.safe_pickle import load_pickle

    raw = load_pickle(fake_assets / "FLAME/geometry/generic_model.pkl")
    p = _zeros()
    p["expression"][0, 7] = 2.0
    p["shape"][0, 3] = -1.5
    got = flame(**p).vertices[0].numpy()
    want = raw["v_template"] + 2.0 * raw["shapedirs"][..., 307] - 1.5 * raw["shapedirs"][..., 3]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_jaw_rotation_moves_only_jaw_weighted_vertices(flame):
    p = _zeros()
    p["pose"][0, 3] = math.pi / 2  # 90 degrees about x at the jaw
    moved = (flame(**p).vertices[0] - flame(**_zeros()).vertices[0]).norm(dim=-1)
    jaw_w = flame.lbs_weights[:, 2]
    # pose correctives move everything a little; skinning moves only jaw-weighted vertices
    rest = moved[jaw_w == 0]
    pose_feature = (batch_rodrigues(torch.tensor([[math.pi / 2, 0.0, 0.0]])) - torch.eye(3))
    feat = torch.zeros(1, 36)
    feat[0, 9:18] = pose_feature.reshape(-1)  # pose feature blocks: neck, jaw, eye, eye
    corrective = (feat @ flame.posedirs).view(-1, 3).norm(dim=-1)
    torch.testing.assert_close(rest, corrective[jaw_w == 0], atol=1e-6, rtol=0)
    assert moved[jaw_w > 0.5].min() > 0.005  # jaw vertices swing by centimetres


def test_landmarks_are_their_barycentric_combinations(flame, fake_assets):
    emb = load_npy(fake_assets / "FLAME/geometry/landmark_embedding.npy")
    g = torch.Generator().manual_seed(1)
    out = flame(shape=torch.randn(1, 100, generator=g), expression=torch.randn(1, 50, generator=g),
                pose=torch.zeros(1, 6))
    v, f = out.vertices[0].numpy(), flame.faces.numpy()
    fidx, bary = emb["static_lmk_faces_idx"], emb["static_lmk_bary_coords"]
    want = np.einsum("lk,lkc->lc", bary, v[f[fidx]])
    np.testing.assert_allclose(out.landmarks68[0, 17:].numpy(), want, atol=1e-6)
    # zero yaw: contour from row 0 of the dynamic table
    dyn_f = emb["dynamic_lmk_faces_idx"][0].numpy()
    dyn_b = emb["dynamic_lmk_bary_coords"][0].numpy()
    want = np.einsum("lk,lkc->lc", dyn_b, v[f[dyn_f]])
    np.testing.assert_allclose(out.landmarks68[0, :17].numpy(), want, atol=1e-6)
    full = np.einsum("lk,lkc->lc", emb["full_lmk_bary_coords"][0],
                     v[f[emb["full_lmk_faces_idx"][0]]])
    np.testing.assert_allclose(out.landmarks3d[0].numpy(), full, atol=1e-6)


@pytest.mark.parametrize("yaw_deg, row", [(0, 0), (10, 10), (30, 30), (39, 39), (50, 39),
                                          (-1, 40), (-20, 59), (-30, 69), (-39, 78), (-60, 78)])
def test_contour_row_follows_yaw(yaw_deg, row):
    # DECA/EMOCA: yaw = +euler_y(R_root @ R_neck), no sign change (smplx negates, they don't)
    r = batch_rodrigues(torch.tensor([[0.0, math.radians(yaw_deg), 0.0]]))
    assert contour_rows_from_yaw(r, torch.eye(3)[None]).item() == row


def _official_contour_row(global_pose: np.ndarray, neck_pose: np.ndarray) -> int:
    """The contour row from the formula alone (numpy + scipy, none of our code).

    yaw = round(min(degrees(atan2(-R[2,0], sqrt(R[0,0]^2 + R[1,0]^2))), 39)) for
    R = R_root @ R_neck; negative yaw y maps to row 39 - y, below -39 to row 78.
    """
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(global_pose).as_matrix() @ Rotation.from_rotvec(neck_pose).as_matrix()
    yaw = int(np.round(min(np.degrees(np.arctan2(-r[2, 0], np.hypot(r[0, 0], r[1, 0]))), 39)))
    if yaw >= 0:
        return yaw
    return 78 if yaw < -39 else 39 - yaw


@pytest.mark.parametrize("global_y_deg, pitch, neck_y, expected_row", [
    (30, 0.0, 0.0, 30), (-30, 0.0, 0.0, 69), (-50, 0.0, 0.0, 78), (50, 0.0, 0.0, 39),
    (12, 0.05, 0.02, None), (-17, -0.1, -0.03, None)])
def test_turned_head_uses_the_official_contour_row(flame, fake_assets, global_y_deg, pitch,
                                                    neck_y, expected_row):
    emb = load_npy(fake_assets / "FLAME/geometry/landmark_embedding.npy")
    g = torch.Generator().manual_seed(global_y_deg + 100)
    p = dict(shape=torch.randn(1, 100, generator=g), expression=torch.randn(1, 50, generator=g),
             pose=torch.zeros(1, 6))
    p["pose"][0, 1] = math.radians(global_y_deg)
    p["pose"][0, 0] = pitch
    neck = torch.tensor([[0.0, neck_y, 0.0]])
    row = _official_contour_row(p["pose"][0, :3].double().numpy(), neck[0].double().numpy())
    if expected_row is not None:
        assert row == expected_row  # the formula itself gives the rows the issue states
    out = flame(**p, neck_pose=neck)
    v, f = out.vertices[0].double().numpy(), flame.faces.numpy()
    dyn_f = emb["dynamic_lmk_faces_idx"][row].numpy()
    dyn_b = emb["dynamic_lmk_bary_coords"][row].double().numpy()
    want = np.einsum("lk,lkc->lc", dyn_b, v[f[dyn_f]])
    np.testing.assert_allclose(out.landmarks68[0, :17].double().numpy(), want, atol=1e-6)
    # the fitter's path (skinning only the landmark vertices) picks the same row
    only = flame.landmarks_only(**p, neck_pose=neck)[0, :17].double().numpy()
    np.testing.assert_allclose(only, want, atol=1e-6)
    # and no other row gives these points (the look-alike table differs row to row)
    other = 78 - row if row != 39 else 0
    wrong = np.einsum("lk,lkc->lc", emb["dynamic_lmk_bary_coords"][other].double().numpy(),
                      v[f[emb["dynamic_lmk_faces_idx"][other].numpy()]])
    assert np.abs(wrong - want).max() > 1e-4


def test_euler_y_matches_scipy():
    from scipy.spatial.transform import Rotation

    rv = np.random.default_rng(0).normal(size=(6, 3)) * 0.5
    r = torch.tensor(Rotation.from_rotvec(rv).as_matrix(), dtype=torch.float64)
    # x-y-z extrinsic-like decomposition: the y angle of R = Rz Ry Rx
    want = Rotation.from_rotvec(rv).as_euler("ZYX")[:, 1]
    np.testing.assert_allclose(rotation_euler_y(r).numpy(), want, atol=1e-9)


def test_flame_2023_plain_numpy_file_loads(tmp_path):
    from emoca.assets.synthetic import write_flame_files

    root = write_flame_files(tmp_path, seed=3, flame_version="2023")
    g = root / "FLAME/geometry"
    assert b"chumpy" not in (g / "flame2023.pkl").read_bytes()
    f = FLAME.from_file(g / "flame2023.pkl", g / "landmark_embedding.npy")
    assert f(**_zeros()).vertices.shape == (1, 5023, 3)


def test_bad_shapes_are_clear_errors(flame):
    with pytest.raises(ValueError, match="expression must be"):
        flame(shape=torch.zeros(1, 100), expression=torch.zeros(1, 10), pose=torch.zeros(1, 6))
    with pytest.raises(FileNotFoundError, match="nowhere.pkl"):
        FLAME.from_file("/nowhere.pkl")


def test_albedo_both_flavours_and_grey(tmp_path):
    rng = np.random.default_rng(0)
    mean = rng.uniform(0, 1, (512, 512, 3))
    pcs = rng.normal(0, 0.01, (512, 512, 3, 3))
    np.savez(tmp_path / "bfm.npz", MU=mean.reshape(-1), PC=pcs.reshape(-1, 3))
    np.savez(tmp_path / "tex.npz", mean=(mean * 255).astype(np.float32),
             tex_dir=(pcs * 255).astype(np.float32))
    code = torch.tensor([[1.0, -2.0, 0.5] + [0.0] * 47])
    a = FlameAlbedo.from_file(tmp_path / "bfm.npz")(code)
    b = FlameAlbedo.from_file(tmp_path / "tex.npz")(code)
    assert a.shape == (1, 3, 256, 256)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    # reference: nearest 512 -> 256 picks texel (2r, 2c), no averaging; BGR -> RGB
    tex = mean + pcs @ np.array([1.0, -2.0, 0.5])
    want = tex[::2, ::2, ::-1]
    np.testing.assert_allclose(a[0].permute(1, 2, 0).numpy(), want, atol=1e-5)
    grey = FlameAlbedo.from_file(None)(code)
    assert torch.all(grey == 0.5)


def _official_flametex(mu: np.ndarray, pc: np.ndarray, texcode: torch.Tensor) -> torch.Tensor:
    """DECA/EMOCA's FLAMETex.forward as its code reads (float32 model, elementwise product
    and sum, default F.interpolate, channels [2, 1, 0]): written out here independently."""
    n = texcode.shape[1]
    mean = torch.from_numpy(mu.reshape(1, -1)).float()[None]
    basis = torch.from_numpy(pc.reshape(-1, pc.shape[-1])[:, :n]).float()[None]
    texture = mean + (basis * texcode[:, None, :]).sum(-1)
    texture = texture.reshape(texcode.shape[0], 512, 512, 3).permute(0, 3, 1, 2)
    texture = F.interpolate(texture, [256, 256])
    return texture[:, [2, 1, 0], :, :]


def test_albedo_equals_the_official_flametex(tmp_path):
    rng = np.random.default_rng(3)
    # a texture with detail at the pixel scale, where nearest and bilinear differ
    mu = rng.uniform(0, 1, 512 * 512 * 3)
    pc = rng.normal(0, 0.05, (512 * 512 * 3, 5))
    np.savez(tmp_path / "bfm.npz", MU=mu, PC=pc)
    code = torch.tensor([[0.7, -1.1, 0.3, 2.0, -0.4], [0.0, 0.5, -0.9, 0.1, 1.2]])
    ours = FlameAlbedo.from_file(tmp_path / "bfm.npz", n_tex=5)
    got = ours(torch.cat([code, torch.zeros(2, 45)], 1))
    want = _official_flametex(mu, pc, code)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    assert ours.basis.shape == (256 * 256 * 3, 5)  # only the picked texels are kept
    assert nearest_source_index(512, 256).tolist() == list(range(0, 512, 2))


def test_template_uvs(flame):
    assert flame.uv_coords.shape == (5118, 2) and flame.uv_faces.shape == (9976, 3)
    assert flame.uv_coords.min() >= 0 and flame.uv_coords.max() <= 1


def test_both_face_models_satisfy_the_protocol(flame, ict_dir):
    from emoca.face_model.base import FaceModel
    from emoca.face_model.ict import ICTFaceModel

    ict = ICTFaceModel.from_dir(ict_dir, n_identity=4)
    for model in (flame, ict):
        assert isinstance(model, FaceModel)
        sizes = model.parameter_sizes()
        out = model(**{k: torch.zeros(2, n) for k, n in sizes.items()})
        assert out.vertices.shape == (2, model.num_vertices, 3)
        assert out.landmarks68.shape == (2, 68, 3)
        assert int(model.faces.max()) < model.num_vertices


def test_landmarks_only_equals_the_full_forward(flame):
    g = torch.Generator().manual_seed(5)
    p = dict(shape=torch.randn(3, 100, generator=g), expression=torch.randn(3, 50, generator=g),
             pose=torch.randn(3, 6, generator=g) * 0.4)
    p["pose"][1, 1] = -0.6  # a yaw that switches the contour row
    torch.testing.assert_close(flame.landmarks_only(**p), flame(**p).landmarks68, atol=1e-6,
                               rtol=0)
    assert len(flame._lmk_sub) < flame.num_vertices // 2
