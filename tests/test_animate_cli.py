"""``emoca animate`` on track and face folders laid out as reconstruct/fit write them."""

from __future__ import annotations

import copy
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import gltf_eval as ge  # noqa: E402

pytest.importorskip("pygltflib")


def _npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def reconstruct_track(tmp_path_factory) -> tuple[Path, dict]:
    """out/clip/track_0/codes.npz of 4 frames at 25 fps, starting at frame 10."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("rec") / "clip"
    t = 4
    codes = {"frame": np.arange(10, 10 + t), "time": (10 + np.arange(t)) / 25.0,
             "shape": (rng.standard_normal((1, 100)) + 0.2 * rng.standard_normal((t, 100))
                       ).astype(np.float32),
             "exp": rng.standard_normal((t, 50)).astype(np.float32),
             "pose": (rng.standard_normal((t, 6)) * 0.2).astype(np.float32),
             "cam": np.ones((t, 3), np.float32)}
    _npz(root / "track_0" / "codes.npz", **codes)
    (root / "video.json").write_text(json.dumps({"fps": 25.0, "video": "/data/clip.mp4"}))
    return root / "track_0", codes


def test_reconstruct_track_to_exact_flame_glb(reconstruct_track, fake_assets, flame,
                                              tmp_path) -> None:
    from emoca.cli.main import main

    track, codes = reconstruct_track
    out = tmp_path / "anim"
    assert main(["animate", str(track), "-o", str(out), "--assets", str(fake_assets)]) == 0
    rec = json.loads((out / "animation.json").read_text())
    assert rec["model"] == "flame" and rec["frames"] == 4 and rec["fps"] == 25.0
    assert rec["times_s"] == pytest.approx([0, 0.04, 0.08, 0.12])
    assert rec["start_time_s"] == pytest.approx(0.4) and rec["frame_indices"] == [10, 11, 12, 13]
    assert rec["video"] == "/data/clip.mp4"
    assert len(rec["morph_targets"]) == 86 and rec["joints"][2] == "jaw"
    # truth: FLAME forward with the track's mean shape (the GLB bakes one identity)
    f = copy.deepcopy(flame).double()
    d = torch.as_tensor
    shape = codes["shape"].astype(np.float64).mean(0)
    with torch.no_grad():
        ref = f(shape=d(np.tile(shape, (4, 1))), expression=d(codes["exp"]).double(),
                pose=d(codes["pose"]).double()).vertices.numpy()
        # the recorded identity shift is the per-frame shapes' distance from the mean one
        zero = torch.zeros(4, 50, dtype=torch.float64)
        per = f(shape=d(codes["shape"]).double(), expression=zero,
                pose=torch.zeros(4, 6, dtype=torch.float64)).vertices.numpy()
        mean = f(shape=d(np.tile(shape, (4, 1))), expression=zero,
                 pose=torch.zeros(4, 6, dtype=torch.float64)).vertices.numpy()
    shift = np.linalg.norm(per - mean, axis=-1).max()
    assert rec["baking"]["identity_max_vertex_shift_m"] == pytest.approx(shift, rel=1e-4)
    gltf = ge.load(out / "animation.glb")
    pos = ge.accessor(gltf, gltf.meshes[0].primitives[0].attributes.POSITION)
    assert _nearest_error(pos, mean[0]) < 1e-6  # the base mesh is the mean-shaped head
    for i, t in enumerate(ge.key_times(gltf)):
        # UV seams duplicate vertices: every GLB vertex sits on a FLAME vertex
        err = _nearest_error(ge.mesh_vertices(gltf, t), ref[i])
        assert err <= 1e-5, (i, err)


def _nearest_error(glb_verts: np.ndarray, model_verts: np.ndarray) -> float:
    """Largest distance from a GLB vertex to the closest model vertex (seams duplicate)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(model_verts).query(glb_verts)
    return float(dist.max())


def test_fit_ict_track_writes_arkit_curves(ict_dir, tmp_path) -> None:
    from emoca.cli.main import main
    from emoca.face_model.arkit import ARKIT_NAMES, LIVE_LINK_ORDER
    from emoca.face_model.ict import ICTFaceModel

    names = ICTFaceModel.from_dir(ict_dir).expression_names
    t = 3
    expr = np.zeros((t, len(names)), np.float32)
    expr[:, names.index("jawOpen")] = [0.0, 0.5, 1.0]
    expr[1, names.index("browInnerUp_L")] = 0.2  # halves differ: ARKit gets the mean
    expr[1, names.index("browInnerUp_R")] = 0.6
    rot = np.zeros((t, 3), np.float32)
    rot[:, 1] = [0.0, 0.3, -0.2]  # yaw about +y
    track = tmp_path / "clip" / "track_0"
    _npz(track / "params.npz", frame=np.array([0, 2, 4]), time=np.array([0.0, 1 / 15, 2 / 15]),
         identity=np.zeros((t, 100), np.float32), expression=expr, rotation=rot)
    (tmp_path / "clip" / "video.json").write_text(json.dumps({"fps": 30.0}))
    out = tmp_path / "anim"
    assert main(["animate", str(track), "-o", str(out), "--ict-dir", str(ict_dir)]) == 0
    rec = json.loads((out / "animation.json").read_text())
    assert rec["model"] == "ict" and rec["morph_targets"] == list(ARKIT_NAMES)
    assert rec["baking"]["arkit_max_vertex_shift_m"] > 0  # the split brow was averaged
    rows = list(csv.reader((out / "live_link.csv").open()))
    head = rows[0]
    assert head[:2] == ["Timecode", "BlendShapeCount"] and len(head) == 2 + 52 + 9
    assert head[2:54] == [n[0].upper() + n[1:] for n in LIVE_LINK_ORDER]
    assert head[54:57] == ["HeadYaw", "HeadPitch", "HeadRoll"]
    assert rows[2][0] == "00:00:00:02.000" and rows[2][1] == "61"
    jaw = head.index("JawOpen")
    assert [float(r[jaw]) for r in rows[1:]] == pytest.approx([0, 0.5, 1])
    assert float(rows[2][head.index("BrowInnerUp")]) == pytest.approx(0.4)
    assert [float(r[54]) for r in rows[1:]] == pytest.approx([0, 0.3, -0.2], abs=1e-6)
    plain = list(csv.reader((out / "curves.csv").open()))
    assert plain[0][:3] == ["frame", "time", "browDownLeft"] and plain[3][0] == "4"


def test_face_folders_play_as_a_sequence(ict_dir, tmp_path) -> None:
    from emoca.animation.export import animate

    folders = []
    for k in range(3):
        f = tmp_path / f"img{k}" / "face_0"
        _npz(f / "params.npz", identity=np.zeros(100, np.float32),
             expression=np.full(53, 0.1 * k, np.float32), rotation=np.zeros(3, np.float32))
        folders.append(f)
    res = animate(folders, tmp_path / "out", ict_dir=ict_dir, fps=10.0)
    assert res.record["frames"] == 3 and res.record["times_s"] == pytest.approx([0, 0.1, 0.2])
    assert (tmp_path / "out" / "animation.glb").stat().st_size > 0


def test_not_a_track_is_one_line_naming_the_folder(tmp_path, capsys) -> None:
    from emoca.cli.main import main

    (tmp_path / "empty").mkdir()
    assert main(["animate", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "empty") in err
    assert not (tmp_path / "o" / "animation.json").exists()


def test_identity_transfer_puts_the_performance_on_another_face(reconstruct_track, fake_assets,
                                                                flame, tmp_path,
                                                                capsys) -> None:
    from emoca.cli.main import main

    track, codes = reconstruct_track
    other = tmp_path / "photo" / "face_0"
    s2 = np.random.default_rng(9).standard_normal(100).astype(np.float32) * 2
    _npz(other / "codes.npz", shape=s2, exp=np.zeros(50, np.float32),
         pose=np.zeros(6, np.float32))
    f = copy.deepcopy(flame).double()
    for source, shape in ((other, s2), ("neutral", np.zeros(100))):
        out = tmp_path / f"out_{len(str(source))}"
        assert main(["animate", str(track), "-o", str(out), "--assets", str(fake_assets),
                     "--identity", str(source)]) == 0
        with torch.no_grad():
            ref = f(shape=torch.as_tensor(shape, dtype=torch.float64)[None],
                    expression=torch.as_tensor(codes["exp"][:1], dtype=torch.float64),
                    pose=torch.as_tensor(codes["pose"][:1], dtype=torch.float64)).vertices[0]
        gltf = ge.load(out / "animation.glb")
        assert _nearest_error(ge.mesh_vertices(gltf, 0.0), ref.numpy()) <= 1e-5
        rec = json.loads((out / "animation.json").read_text())
        assert rec["identity_from"] == str(source)
    ict_face = tmp_path / "ict" / "face_0"
    _npz(ict_face / "params.npz", identity=np.zeros(100), expression=np.zeros(53),
         rotation=np.zeros(3))
    assert main(["animate", str(track), "-o", str(tmp_path / "x"), "--assets",
                 str(fake_assets), "--identity", str(ict_face)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot drive a flame performance" in err[0]


def test_flame_fit_track_layout(flame, tmp_path) -> None:
    """``emoca fit --face-model flame`` tracks (params.npz: shape/expression/pose)."""
    from emoca.animation.export import animate

    rng = np.random.default_rng(11)
    track = tmp_path / "clip" / "track_1"
    shape = rng.standard_normal(100)
    exp, pose = rng.standard_normal((2, 50)), rng.standard_normal((2, 6)) * 0.2
    _npz(track / "params.npz", frame=np.array([3, 4]), time=np.array([0.1, 0.2]),
         shape=np.tile(shape, (2, 1)), expression=exp, pose=pose, camera=np.ones((2, 3)))
    res = animate([track], tmp_path / "out", model=flame)
    assert res.record["source"]["producer"] == "fit" and res.record["fps"] == pytest.approx(10)
    f = copy.deepcopy(flame).double()
    with torch.no_grad():
        ref = f(shape=torch.as_tensor(np.tile(shape, (2, 1))), expression=torch.as_tensor(exp),
                pose=torch.as_tensor(pose)).vertices.numpy()
    gltf = ge.load(tmp_path / "out" / "animation.glb")
    for i, t in enumerate(ge.key_times(gltf)):
        assert _nearest_error(ge.mesh_vertices(gltf, t), ref[i]) <= 1e-5


def test_yaw_pitch_roll_and_timecode() -> None:
    from emoca.animation.curves import timecode, yaw_pitch_roll

    def rx(a):
        return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])

    def ry(a):
        return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])

    def rz(a):
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    angles = np.array([0.4, -0.3, 0.2])
    got = yaw_pitch_roll(ry(angles[0]) @ rx(angles[1]) @ rz(angles[2]))
    assert np.allclose(got, angles)
    assert timecode(0.0, 30) == "00:00:00:00.000"
    assert timecode(3661.5, 30) == "01:01:01:15.000"
    assert timecode(1 / 60, 30) == "00:00:00:00.500"
