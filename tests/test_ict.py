"""ICT-FaceKit model: loaders (npz and OBJ folder), OBJ reader, regions, rigid pose."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from emoca.assets.ict_facekit import PACKED_NAME, packaged_ict_dir, unpack_modes
from emoca.face_model.ict import (
    EXTRA_EXPRESSION_NAMES,
    REGIONS,
    ICTFaceModel,
    ICTModelData,
    axis_angle_to_matrix,
    expression_weights,
)
from emoca.io.obj import read_obj

SHARED_ICT = Path(__file__).resolve().parents[2] / "shared" / "ict-facekit"
PACKAGED_ICT = packaged_ict_dir()
# the compact npz beside the repository when present, else the packaged lossless copy (the
# same arrays): the tests run on a machine that has only the repository
ICT = SHARED_ICT if (SHARED_ICT / "ict_facekit_modes.npz").is_file() else PACKAGED_ICT
NPZ = ICT / ("ict_facekit_modes.npz" if ICT == SHARED_ICT else PACKED_NAME)
CHIN = [6, 7, 8, 9, 10]  # Multi-PIE jaw contour around the chin
BROWS_EYES = list(range(17, 27)) + list(range(36, 48))


@pytest.fixture(scope="module")
def npz() -> dict[str, np.ndarray]:
    z = np.load(NPZ) if NPZ.suffix == ".npz" else unpack_modes(NPZ)
    return {
        "neutral": z["neutral"],
        "identity_modes": z["identity_modes"][:3],
        "expression_modes": z["expression_modes"],
        "expression_names": [str(s) for s in z["expression_names"]],
    }


@pytest.fixture(scope="module")
def indices() -> dict:
    return json.loads((ICT / "vertex_indices.json").read_text())


@pytest.fixture(scope="module")
def full_model() -> ICTFaceModel:
    return ICTFaceModel.from_npz(NPZ, region="full", n_identity=3)


@pytest.fixture(scope="module")
def head_model() -> ICTFaceModel:
    return ICTFaceModel.from_npz(NPZ, n_identity=3)  # default region "face_head"


def _naive_obj_vertices(path: Path) -> np.ndarray:
    """Independent parse of the `v` lines with numpy's text reader."""
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        rows = [line[2:] for line in f if line.startswith("v ")]
    return np.loadtxt(rows, dtype=np.float32)


# ---------------------------------------------------------------------------- OBJ reader


def test_read_obj_triangulates_quads_and_tris_consistently(tmp_path: Path) -> None:
    text = (
        "# comment\nmtllib x.mtl\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0 0.5 0.5 0.5\nv 2 0 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 0.5\n"
        "usemtl m\nf 1/1 2/2 3/3 4/4\nf 2/5 5/2 3/3\nf -3/-1 -2/-2 -1/-3\n"
    )
    plain = tmp_path / "m.obj"
    plain.write_text(text)
    packed = tmp_path / "m.obj.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        mesh = read_obj(path)
        np.testing.assert_array_equal(mesh.vertices[3], [0, 1, 0])  # colour columns dropped
        assert mesh.uvs.shape == (5, 2)
        # quad a b c d -> (a,b,c), (a,c,d), with the same split for uv indices
        np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2], [2, 3, 4]])
        np.testing.assert_array_equal(mesh.uv_faces, [[0, 1, 2], [0, 2, 3], [4, 1, 2], [4, 3, 2]])
        assert mesh.n_source_polygons == {4: 1, 3: 2}


def test_read_obj_rejects_out_of_range_index(tmp_path: Path) -> None:
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n")
    with pytest.raises(ValueError, match="out of range"):
        read_obj(path)


def test_neutral_obj_matches_npz_and_triangle_count(npz) -> None:
    mesh = read_obj(ICT / "generic_neutral_mesh.obj.gz")
    np.testing.assert_array_equal(
        mesh.vertices, _naive_obj_vertices(ICT / "generic_neutral_mesh.obj.gz")
    )
    np.testing.assert_array_equal(mesh.vertices, npz["neutral"])
    assert mesh.n_source_polygons == {3: 548, 4: 25836}
    assert mesh.faces.shape == (548 + 2 * 25836, 3)
    assert mesh.uvs.shape == (28911, 2)


# ---------------------------------------------------------------------------- model basics


def test_zero_parameters_give_neutral(full_model, head_model, npz) -> None:
    out = full_model(identity=torch.zeros(2, 3), expression=torch.zeros(2, 53))
    assert out.vertices.shape == (2, 26719, 3) and out.vertices.dtype == torch.float32
    np.testing.assert_array_equal(out.vertices[1].numpy(), npz["neutral"])
    assert full_model.faces.shape == (548 + 2 * 25836, 3)
    # no-argument call: batch of one, neutral head region
    out = head_model()
    np.testing.assert_array_equal(out.vertices[0].numpy(), npz["neutral"][:11248])
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.vertices = out.vertices  # type: ignore[misc]


def test_blend_is_the_documented_linear_combination(full_model, npz) -> None:
    g = torch.Generator().manual_seed(0)
    ident = torch.randn(2, 3, generator=g)
    expr = torch.rand(2, 53, generator=g)
    got = full_model(identity=ident, expression=expr).vertices.double().numpy()
    want = (
        npz["neutral"][None].astype(np.float64)
        + np.einsum("bi,ivc->bvc", ident.double().numpy(), npz["identity_modes"].astype(np.float64))
        + np.einsum(
            "bj,jvc->bvc", expr.double().numpy(), npz["expression_modes"][:53].astype(np.float64)
        )
    )
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_names_and_parameter_sizes(full_model, indices) -> None:
    assert list(full_model.expression_names) == indices["expressions"]
    assert full_model.identity_names == ("identity000", "identity001", "identity002")
    assert full_model.parameter_sizes() == {
        "identity": 3,
        "expression": 53,
        "rotation": 3,
        "translation": 3,
        "scale": 1,
    }
    np.testing.assert_array_equal(
        full_model.landmark_indices.numpy(), indices["idx_to_landmark_verts"]
    )
    with pytest.raises(ValueError, match="expression must have shape"):
        full_model(expression=torch.zeros(1, 52))


def test_extra_expressions(npz) -> None:
    m = ICTFaceModel.from_npz(
        NPZ, region="narrow_face", n_identity=0, include_extra_expressions=True
    )
    assert m.expression_names[53:] == EXTRA_EXPRESSION_NAMES
    k = npz["expression_names"].index("cheekRaiser_R")
    np.testing.assert_array_equal(m.expression_modes[56].numpy(), npz["expression_modes"][k][:6706])
    assert m.parameter_sizes()["expression"] == 57 and m.parameter_sizes()["identity"] == 0


def test_jaw_open_moves_chin_down_not_brows(head_model) -> None:
    rest = head_model().landmarks68[0]
    jaw = head_model(expression=expression_weights(head_model, {"jawOpen": 1.0})).landmarks68[0]
    drop = rest[CHIN, 1] - jaw[CHIN, 1]  # y is up
    assert (drop > 1.0).all(), drop  # centimetres
    assert (jaw - rest)[BROWS_EYES].norm(dim=-1).max() < 0.05
    # the mouth opens: lower inner lip moves away from the upper inner lip
    assert (jaw[66, 1] - jaw[62, 1]) < (rest[66, 1] - rest[62, 1]) - 2.0


def test_expression_gradient_is_the_mode(head_model) -> None:
    expr = torch.zeros(1, 53, requires_grad=True)
    head_model(expression=expr).vertices.sum().backward()
    want = head_model.expression_modes.sum(dim=(1, 2))
    torch.testing.assert_close(expr.grad[0], want, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------- rigid pose


def test_rotation_90_about_y_maps_x_to_minus_z(head_model) -> None:
    rot = torch.tensor([[0.0, math.pi / 2, 0.0]])
    v0 = head_model().vertices[0]
    v1 = head_model(rotation=rot).vertices[0]
    want = torch.stack([v0[:, 2], v0[:, 1], -v0[:, 0]], dim=-1)  # (x, y, z) -> (z, y, -x)
    torch.testing.assert_close(v1, want, atol=1e-5, rtol=0)


def test_similarity_matches_scipy(head_model) -> None:
    g = torch.Generator().manual_seed(1)
    rot = torch.randn(3, 3, generator=g)
    rot[2] = 0.0  # zero angle: identity and a finite gradient
    trans = torch.randn(3, 3, generator=g)
    scale = torch.rand(3, 1, generator=g) + 0.5
    out = head_model(rotation=rot, translation=trans, scale=scale)
    v0 = head_model().vertices[0].double().numpy()
    for b in range(3):
        r = Rotation.from_rotvec(rot[b].double().numpy()).as_matrix()
        want = scale[b].item() * v0 @ r.T + trans[b].double().numpy()
        np.testing.assert_allclose(out.vertices[b].double().numpy(), want, atol=1e-4)
        np.testing.assert_allclose(
            out.landmarks68[b].double().numpy(),
            want[head_model.landmark_indices.numpy()],
            atol=1e-4,
        )
    tiny = torch.tensor(
        [[1e-6, -2e-6, 3e-6], [0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True
    )
    mats = axis_angle_to_matrix(tiny)
    np.testing.assert_allclose(
        mats.detach().numpy(), Rotation.from_rotvec(tiny.detach().numpy()).as_matrix(), atol=1e-12
    )
    mats.sum().backward()
    assert torch.isfinite(tiny.grad).all()
    assert torch.autograd.gradcheck(
        axis_angle_to_matrix, (torch.randn(4, 3, dtype=torch.float64, requires_grad=True),)
    )


# ---------------------------------------------------------------------------- regions


@pytest.mark.parametrize("region", ["face_head", "face", "narrow_face"])
def test_region_subsetting(full_model, region: str) -> None:
    sub = ICTFaceModel.from_npz(NPZ, region=region, n_identity=3)
    stop = REGIONS[region][1]
    assert sub.n_vertices == stop
    faces, full_faces = sub.faces.numpy(), full_model.faces.numpy()
    assert faces.min() >= 0 and faces.max() < sub.n_vertices
    # exactly the full mesh's faces that lie wholly inside the region, same order
    inside = (full_faces < stop).all(axis=1)
    np.testing.assert_array_equal(sub.vertex_indices.numpy()[faces], full_faces[inside])
    # UVs: same texture coordinates at every kept corner, compacted to those used
    np.testing.assert_array_equal(
        sub.uv_coords.numpy()[sub.uv_faces.numpy()],
        full_model.uv_coords.numpy()[full_model.uv_faces.numpy()[inside]],
    )
    assert len(np.unique(sub.uv_faces.numpy())) == sub.uv_coords.shape[0]
    # positions equal the full mesh's at the kept indices, for arbitrary parameters
    g = torch.Generator().manual_seed(2)
    kw = {
        "identity": torch.randn(2, 3, generator=g),
        "expression": torch.rand(2, 53, generator=g),
        "rotation": torch.randn(2, 3, generator=g),
        "translation": torch.randn(2, 3, generator=g),
    }
    full_out, sub_out = full_model(**kw), sub(**kw)
    torch.testing.assert_close(sub_out.vertices, full_out.vertices[:, sub.vertex_indices])
    torch.testing.assert_close(sub_out.landmarks68, full_out.landmarks68)


def test_landmark_outside_region_is_an_error() -> None:
    n = 26719
    data = ICTModelData(
        neutral=np.zeros((n, 3), np.float32),
        identity_modes=np.zeros((0, n, 3), np.float32),
        expression_modes=np.zeros((0, n, 3), np.float32),
        identity_names=(),
        expression_names=(),
        faces=np.array([[0, 1, 2], [20000, 20001, 20002]]),
        uv_coords=np.zeros((3, 2), np.float32),
        uv_faces=np.array([[0, 1, 2], [0, 1, 2]]),
        landmark_vertices=np.array([5] * 67 + [20000]),
    )
    assert ICTFaceModel(data, region="full").faces.shape == (2, 3)
    with pytest.raises(ValueError, match="20000"):
        ICTFaceModel(data, region="face_head")
    with pytest.raises(ValueError, match="unknown region"):
        ICTFaceModel(data, region="eyes")


# ---------------------------------------------------------------------------- OBJ folder


def _write_v_obj(path: Path, vertices: np.ndarray) -> None:
    # %.9g round-trips float32 exactly
    path.write_text("".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in vertices.tolist()))


@pytest.fixture(scope="module")
def obj_folder(tmp_path_factory, npz, indices) -> Path:
    """A small original-layout folder: 3 shipped OBJs + 2 written from the npz."""
    root = tmp_path_factory.mktemp("ict") / "FaceXModel"
    root.mkdir()
    neutral = npz["neutral"]
    shutil.copy(ICT / "generic_neutral_mesh.obj.gz", root / "generic_neutral_mesh.obj.gz")
    for name in ("identity000", "jawOpen", "mouthSmile_L"):
        if (ICT / f"{name}.obj.gz").is_file():  # shipped originals, beside the repository
            shutil.copy(ICT / f"{name}.obj.gz", root / f"{name}.obj.gz")
        elif name == "identity000":
            _write_v_obj(root / "identity000.obj", neutral + npz["identity_modes"][0])
        else:
            k = npz["expression_names"].index(name)
            _write_v_obj(root / f"{name}.obj", neutral + npz["expression_modes"][k])
    _write_v_obj(root / "identity001.obj", neutral + npz["identity_modes"][1])
    k = npz["expression_names"].index("browDown_L")
    _write_v_obj(root / "browDown_L.obj", neutral + npz["expression_modes"][k])
    small = dict(indices, expressions=["browDown_L", "jawOpen", "mouthSmile_L"])
    (root / "vertex_indices.json").write_text(json.dumps(small))
    return root


def test_obj_folder_agrees_with_npz(obj_folder: Path, npz) -> None:
    from_objs = ICTFaceModel.from_obj_folder(obj_folder.parent, region="full", n_identity=2)
    from_npz = ICTFaceModel.from_npz(
        NPZ, vertex_indices_json=obj_folder / "vertex_indices.json", region="full", n_identity=2
    )
    assert (
        from_objs.expression_names
        == from_npz.expression_names
        == (
            "browDown_L",
            "jawOpen",
            "mouthSmile_L",
        )
    )
    # shipped originals: file minus neutral equals the npz mode
    jaw = npz["expression_modes"][npz["expression_names"].index("jawOpen")]
    np.testing.assert_allclose(from_objs.expression_modes[1].numpy(), jaw, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        from_objs.identity_modes[0].numpy(), npz["identity_modes"][0], atol=1e-6, rtol=0
    )
    # independent parse of a shipped file, for the reader itself
    if (ICT / "jawOpen.obj.gz").is_file():
        jaw_naive = _naive_obj_vertices(ICT / "jawOpen.obj.gz") - npz["neutral"]
        np.testing.assert_allclose(jaw_naive, jaw, atol=1e-6, rtol=0)
    for name in ("neutral", "identity_basis", "expression_basis", "uv_coords"):
        torch.testing.assert_close(
            getattr(from_objs, name), getattr(from_npz, name), atol=1e-5, rtol=0
        )
    for name in ("faces", "uv_faces", "landmark_indices"):
        assert torch.equal(getattr(from_objs, name), getattr(from_npz, name))
    # from_dir picks the layout that is there
    assert (
        ICTFaceModel.from_dir(obj_folder.parent, n_identity=2).expression_names[0] == "browDown_L"
    )
    assert ICTFaceModel.from_dir(ICT, n_identity=1).n_expression == 53


def test_missing_files_are_named(obj_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "FaceXModel"
    shutil.copytree(obj_folder, broken)
    (broken / "browDown_L.obj").unlink()
    (broken / "identity001.obj").unlink()
    with pytest.raises(FileNotFoundError, match="identity001.obj, browDown_L.obj"):
        ICTFaceModel.from_obj_folder(broken, n_identity=2)
    with pytest.raises(FileNotFoundError, match="generic_neutral_mesh"):
        ICTFaceModel.from_npz(NPZ, neutral_obj=tmp_path / "generic_neutral_mesh.obj")
    with pytest.raises(FileNotFoundError, match="no ICT-FaceKit model"):
        ICTFaceModel.from_dir(tmp_path / "nothing")
