"""Animated GLBs equal the face models they come from, at every key frame.

Three independent readers: our own numpy glTF evaluator (tests/gltf_eval.py, written from
the glTF 2.0 spec), three.js (GLTFLoader + AnimationMixer + SkinnedMesh.getVertexPosition
in node) and trimesh; plus the Khronos glTF Validator. Truth is the FLAME / ICT-FaceKit
forward of emoca.face_model (float64).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import gltf_eval as ge  # noqa: E402

pytest.importorskip("pygltflib")

TOL = 1e-5  # metres
CHECK = Path(__file__).resolve().parents[1] / "tools" / "gltf_check"


def _node_ready() -> bool:
    return shutil.which("node") is not None and (CHECK / "node_modules" / "three").is_dir() \
        and (CHECK / "node_modules" / "gltf-validator").is_dir()


def three_check(glb: Path, tmp: Path) -> tuple[dict, np.ndarray]:
    """The validator's summary and three.js's (T, V, 3) vertices at every key frame."""
    prefix = tmp / glb.stem
    subprocess.run(["node", str(CHECK / "check.mjs"), str(glb), str(prefix)], check=True,
                   timeout=120)
    info = json.loads(prefix.with_suffix(".json").read_text())
    verts = np.fromfile(prefix.with_suffix(".f32"), np.float32)
    return info, verts.reshape(len(info["times"]), info["vertices"], 3).astype(np.float64)


def flame_forward(flame, shape, exp, pose, neck=None, eyes=None) -> np.ndarray:
    f = copy.deepcopy(flame).double()  # the session fixture stays float32
    t = len(exp)
    d = torch.as_tensor
    with torch.no_grad():
        out = f(shape=d(np.broadcast_to(shape, (t, len(shape))).copy()), expression=d(exp),
                pose=d(pose), neck_pose=None if neck is None else d(neck),
                eye_pose=None if eyes is None else d(eyes))
    return out.vertices.numpy()


@pytest.fixture(scope="module")
def ict_model(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir)


@pytest.fixture(scope="module")
def flame_case(flame, tmp_path_factory):
    """A FLAME GLB with large random expression, jaw, neck, head and eye rotations."""
    from emoca.animation.flame_glb import FlameSequence, flame_gltf
    from emoca.io.gltf import write_animated_glb

    rng = np.random.default_rng(1)
    t = 5
    seq = FlameSequence(shape=rng.standard_normal(100) * 1.5,
                        expression=rng.standard_normal((t, 50)) * 1.5,
                        pose=rng.standard_normal((t, 6)) * 0.3, times=np.arange(t) / 25.0,
                        neck_pose=rng.standard_normal((t, 3)) * 0.2,
                        eye_pose=rng.standard_normal((t, 6)) * 0.2)
    built = flame_gltf(flame, seq)
    path = write_animated_glb(tmp_path_factory.mktemp("flame") / "flame.glb", built.mesh)
    ref = flame_forward(flame, seq.shape, seq.expression, seq.pose, seq.neck_pose, seq.eye_pose)
    return path, ref[:, built.vertex_index]


@pytest.fixture(scope="module")
def ict_case(ict_model, tmp_path_factory):
    from emoca.animation.ict_glb import IctSequence, ict_gltf
    from emoca.face_model.arkit import arkit_to_ict
    from emoca.io.gltf import write_animated_glb

    rng = np.random.default_rng(2)
    t = 4
    seq = IctSequence(identity=rng.standard_normal(100), arkit=rng.uniform(0, 1, (t, 52)),
                      rotation=rng.standard_normal((t, 3)) * 0.4, times=np.arange(t) / 30.0)
    built = ict_gltf(ict_model, seq)
    path = write_animated_glb(tmp_path_factory.mktemp("ict") / "ict.glb", built.mesh)
    d = torch.as_tensor
    with torch.no_grad():
        ref = copy.deepcopy(ict_model).double()(identity=d(np.tile(seq.identity, (t, 1))),
                                 expression=d(arkit_to_ict(seq.arkit, ict_model.expression_names),
                                              dtype=torch.float64),
                                 rotation=d(seq.rotation)).vertices.numpy() * 0.01
    return path, ref[:, built.vertex_index]


@pytest.mark.parametrize("case", ["flame_case", "ict_case"])
def test_numpy_evaluator_matches_model(case, request) -> None:
    path, ref = request.getfixturevalue(case)
    gltf = ge.load(path)
    times = ge.key_times(gltf)
    assert len(times) == len(ref)
    err = max(np.abs(ge.mesh_vertices(gltf, t) - ref[i]).max() for i, t in enumerate(times))
    assert err <= TOL, err


def test_flame_glb_layout(flame_case) -> None:
    """86 named targets (50 expression, 36 pose correctives), 5 joints in FLAME's tree."""
    gltf = ge.load(flame_case[0])
    names = gltf.meshes[0].extras["targetNames"]
    assert len(names) == 86 and names[0] == "exp_00" and names[50] == "pose_neck_00"
    assert names[-1] == "pose_eye_right_22"
    skin = gltf.skins[0]
    joint_names = [gltf.nodes[j].name for j in skin.joints]
    assert joint_names == ["root", "neck", "jaw", "eye_left", "eye_right"]
    assert gltf.nodes[skin.joints[1]].children == [skin.joints[2], skin.joints[3],
                                                   skin.joints[4]]


def test_ict_glb_has_arkit_targets_in_metres(ict_case, ict_model) -> None:
    from emoca.face_model.arkit import ARKIT_NAMES

    gltf = ge.load(ict_case[0])
    assert tuple(gltf.meshes[0].extras["targetNames"]) == ARKIT_NAMES
    pos = ge.accessor(gltf, gltf.meshes[0].primitives[0].attributes.POSITION)
    assert 0.1 < np.ptp(pos[:, 1]) < 0.5  # a head is tens of centimetres tall, in metres


@pytest.mark.skipif(not _node_ready(), reason="node or tools/gltf_check/node_modules missing "
                    "(npm ci --prefix tools/gltf_check)")
@pytest.mark.parametrize("case", ["flame_case", "ict_case"])
def test_threejs_and_khronos_validator(case, request, tmp_path) -> None:
    path, ref = request.getfixturevalue(case)
    info, verts = three_check(path, tmp_path)
    assert info["validator"]["numErrors"] == 0, info["validator"]["messages"]
    assert info["validator"]["numWarnings"] == 0, info["validator"]["messages"]
    assert verts.shape == ref.shape
    err = np.abs(verts - ref).max()
    assert err <= TOL, err


@pytest.mark.parametrize("case", ["flame_case", "ict_case"])
def test_trimesh_loads(case, request) -> None:
    trimesh = pytest.importorskip("trimesh")
    path, ref = request.getfixturevalue(case)
    scene = trimesh.load(path, force="scene")
    meshes = list(scene.geometry.values())
    assert len(meshes) == 1 and len(meshes[0].vertices) == ref.shape[1]


def test_quaternions_round_trip() -> None:
    """Every Shepperd pivot (incl. 180-degree turns) gives back the same matrix."""
    from emoca.geometry import axis_angle_to_matrix
    from emoca.io.gltf import matrix_to_quaternion

    aa = np.concatenate([np.random.default_rng(0).standard_normal((200, 3)),
                         np.pi * np.eye(3), -np.pi * np.eye(3), np.zeros((1, 3))])
    rot = axis_angle_to_matrix(torch.as_tensor(aa)).numpy()
    q = matrix_to_quaternion(rot)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0) and (q[:, 3] >= 0).all()
    back = np.stack([ge.quat_to_matrix(x) for x in q])
    assert np.abs(back - rot).max() < 1e-12


def test_more_than_four_influences_use_a_second_set() -> None:
    from emoca.io.gltf import limit_influences

    w = np.array([[0.4, 0.3, 0.1, 0.1, 0.1], [1.0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0]])
    joints, weights, dropped = limit_influences(w)
    assert joints.shape == (3, 8) and dropped == 0.0
    dense = np.zeros_like(w)
    for r in range(3):
        np.add.at(dense[r], joints[r], weights[r])
    assert np.allclose(dense, w)
    assert (joints[weights == 0] == 0).all()
    j4, w4, dropped = limit_influences(w, tol=0.15)  # drop the 0.1s: 4 slots, renormalised
    assert j4.shape == (3, 4) and dropped == pytest.approx(0.1)
    assert np.allclose(w4[0, :2], [0.4 / 0.7, 0.3 / 0.7])
