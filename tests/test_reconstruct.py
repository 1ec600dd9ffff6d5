"""``emoca reconstruct`` end to end on look-alike weights and FLAME, plus the pieces it adds.

Independent references: meshes are read back with trimesh and compared with FLAME run on
the saved codes; 2D landmarks are mapped back with numpy's inverse of the saved matrix;
the One Euro smoothing of the video codes is recomputed by a loop written from the paper;
the geometry drawn into the full photo is compared with the model's own 224x224 render
sampled through the crop transform.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import matplotlib.cbook as cbook
import numpy as np
import pytest
import skimage.data
import torch
from clips import write_drifting_clip  # tests/clips.py
from PIL import Image

from emoca.assets.synthetic import write_official_assets
from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model
from emoca.cli import reconstruct_cmd
from emoca.detect.crop import CropTransform
from emoca.model.emoca_model import Emoca, EmocaCodes
from emoca.pipeline.reconstruct import composite_geometry, parse_save, unique_names
from emoca.pipeline.reconstruct_files import split_uv_seams

MODEL = "EMOCA_v2_lr_mse_20"
N_FRAMES = 6

COARSE_FILES = {"face.json", "codes.npz", "codes.json", "landmarks.json", "landmarks2d.npy",
                "landmarks3d.npy", "mesh_coarse.obj", "mesh_coarse.mtl", "mesh_coarse.png",
                "mesh_coarse_normals.png", "mesh_coarse.ply", "mesh_coarse.glb", "albedo.png",
                "crop.png", "render_coarse.png", "geometry_coarse.png", "landmarks.png",
                "overlay.png"}
DETAIL_FILES = COARSE_FILES | {"mesh_detail.obj", "render_detail.png", "geometry_detail.png"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_official_assets(tmp_path_factory.mktemp("rec_assets"), seed=0,
                                 albedo="bfm", albedo_components=4)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    write_emodeca_model(root, seed=11, deca_seed=0)
    return root


@pytest.fixture(scope="module")
def model(root: Path) -> Emoca:
    return Emoca.from_pretrained(MODEL, assets=root)


def _grace() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


def _pair() -> np.ndarray:
    a, g = skimage.data.astronaut(), _grace()
    h = max(a.shape[0], g.shape[0])
    return np.concatenate([np.pad(x, ((0, h - x.shape[0]), (0, 0), (0, 0))) for x in (a, g)],
                          axis=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rec_inputs")
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(_pair()).save(d / "pair.jpg", quality=92)
    Image.fromarray(np.full((64, 80, 3), 128, np.uint8)).save(d / "blank.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (d / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    write_drifting_clip(d / "clip.mp4", N_FRAMES, tone=True)
    return d


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    reconstruct_cmd.add_arguments(parser)
    return reconstruct_cmd.run(parser.parse_args(argv))


def _argv(inputs: Path, out: Path, root: Path) -> list[str]:
    return [str(inputs), "-o", str(out), "--assets", str(root), "--batch-size", "4",
            "--smooth", "--min-cutoff", "1.0", "--beta", "0.5", "--no-progress"]


@pytest.fixture(scope="module")
def run1(inputs: Path, root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("rec_out")
    rc = _cli(_argv(inputs, out, root))
    return rc, out, json.loads((out / "summary.json").read_text())


# ------------------------------------------------------------------------------ the CLI


def test_cli_records_bad_inputs_and_exits_1(run1, inputs: Path) -> None:
    rc, out, summary = run1
    assert rc == 1 and summary["ok"] is False
    assert set(summary["failed"]) == {str(inputs / "broken.jpg"), str(inputs / "bad.mp4")}
    assert "video" in summary["failed"][str(inputs / "bad.mp4")]
    assert summary["no_face"] == [str(inputs / "blank.png")]
    assert json.loads((out / "blank" / "faces.json").read_text())["n_faces"] == 0
    assert sorted(Path(p).relative_to(out).as_posix() for p in summary["written"]) == [
        "astronaut/face_0", "clip/track_0", "pair/face_0", "pair/face_1"]
    assert set(summary["seconds"]) >= {"read", "detect", "crop", "networks", "flame",
                                       "render", "export"}
    # no temporary files left behind by the atomic writers
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_two_pasted_photos_give_two_face_folders_left_to_right(run1) -> None:
    _, out, _ = run1
    faces = json.loads((out / "pair" / "faces.json").read_text())
    assert faces["n_faces"] == 2 and faces["size"] == [1024, 600]
    b0, b1 = (json.loads((out / "pair" / f"face_{k}" / "face.json").read_text())["box"]
              for k in (0, 1))
    assert b0[2] <= 512 <= b1[0]  # astronaut on the left half, Grace Hopper on the right


@pytest.mark.parametrize("face", ["astronaut/face_0", "pair/face_0", "pair/face_1"])
def test_every_promised_file_exists_and_reloads(run1, model: Emoca, face: str) -> None:
    import trimesh

    _, out, _ = run1
    d = out / face
    done = json.loads((d / "done.json").read_text())
    assert set(done["files"]) == DETAIL_FILES
    assert all((d / f).stat().st_size > 0 for f in DETAIL_FILES)

    codes = dict(np.load(d / "codes.npz"))
    with torch.no_grad():
        flame = model.flame(*(torch.as_tensor(codes[k])[None] for k in ("shape", "exp", "pose")))
    verts = flame.vertices[0].numpy()
    faces = model.flame.faces.numpy()
    ply = trimesh.load(d / "mesh_coarse.ply", process=False)
    np.testing.assert_allclose(ply.vertices, verts, atol=1e-6)  # float32 PLY: exact
    np.testing.assert_array_equal(ply.faces, faces)
    # OBJ and GLB split vertices on UV seams: compare every triangle corner instead
    for name in ("mesh_coarse.obj", "mesh_coarse.glb"):
        m = trimesh.load(d / name, process=False, force="mesh")
        assert m.faces.shape == faces.shape, name
        np.testing.assert_allclose(m.vertices[m.faces], verts[faces], atol=2e-6, err_msg=name)
        assert m.visual.uv is not None and len(m.visual.uv) == len(m.vertices), name
    dense = trimesh.load(d / "mesh_detail.obj", process=False)
    assert len(dense.vertices) > len(verts) and np.isfinite(dense.vertices).all()
    mtl = (d / "mesh_coarse.mtl").read_text()
    assert "map_Kd mesh_coarse.png" in mtl and "mesh_coarse_normals.png" in mtl

    doc = json.loads((d / "codes.json").read_text())
    for k in ("shape", "exp", "pose", "cam", "light", "tex", "detail"):
        np.testing.assert_allclose(doc["codes"][k], codes[k], atol=1e-6)
        assert k in doc["units"]
    np.testing.assert_array_equal(codes["jaw_pose"], codes["pose"][3:])
    assert codes["emotion_probs"].shape == (8,)
    assert abs(float(codes["emotion_probs"].sum()) - 1) < 1e-5
    lm = json.loads((d / "landmarks.json").read_text())
    assert np.load(d / "landmarks2d.npy").shape == (68, 2)
    np.testing.assert_allclose(np.load(d / "landmarks3d.npy"), flame.landmarks3d[0].numpy(),
                               atol=1e-6)
    assert np.asarray(lm["landmarks2d_mediapipe"]).shape == (105, 2)

    photo = Image.open(json.loads((d / "face.json").read_text())["source"])
    assert Image.open(d / "overlay.png").size == photo.size
    for name in ("crop.png", "render_coarse.png", "geometry_detail.png", "landmarks.png"):
        assert Image.open(d / name).size == (224, 224), name
    assert Image.open(d / "mesh_coarse.png").size == (256, 256)


@pytest.mark.parametrize("face", ["astronaut/face_0", "pair/face_1"])
def test_2d_landmarks_map_back_through_the_crop_transform(run1, model: Emoca,
                                                          face: str) -> None:
    _, out, _ = run1
    d = out / face
    codes = dict(np.load(d / "codes.npz"))
    lm = json.loads((d / "landmarks.json").read_text())
    crop = np.asarray(lm["landmarks2d_crop"])
    # crop points from the codes: the model's pixels span [i, i+1], the crop's are centred
    c = EmocaCodes(**{k: torch.as_tensor(codes[k])[None] for k in
                      ("shape", "tex", "exp", "pose", "cam", "light")})
    with torch.no_grad():
        expected_crop = model.decode(c, render=False, detail=False).landmarks2d[0].numpy() - 0.5
    np.testing.assert_allclose(crop, expected_crop, atol=1e-4)
    inv = np.linalg.inv(codes["image_to_crop"])
    expected = crop @ inv[:2, :2].T + inv[:2, 2]
    np.testing.assert_allclose(np.asarray(lm["landmarks2d"]), expected, atol=1e-3)
    np.testing.assert_allclose(np.load(d / "landmarks2d.npy"), expected, atol=1e-3)
    # and the detector's landmarks are where the saved box says the face is
    det = np.asarray(lm["detected_landmarks68"])
    x0, y0, x1, y1 = codes["box"]
    inside = (det[:, 0] > x0 - 20) & (det[:, 0] < x1 + 20) & (det[:, 1] > y0 - 20) & \
        (det[:, 1] < y1 + 20)
    assert inside.mean() > 0.95


def _one_euro(x: np.ndarray, t: np.ndarray, min_cutoff: float, beta: float,
              d_cutoff: float = 1.0) -> np.ndarray:
    """The One Euro filter as in Casiez et al. 2012 (derivative of the filtered signal)."""
    def alpha(te: float, fc: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * fc)
        return 1.0 / (1.0 + tau / te)

    out = [x[0].astype(np.float64)]
    dx_hat = np.zeros_like(out[0])
    for i in range(1, len(x)):
        te = t[i] - t[i - 1]
        dx = (x[i] - out[-1]) / te
        dx_hat = alpha(te, d_cutoff) * dx + (1 - alpha(te, d_cutoff)) * dx_hat
        a = alpha(te, min_cutoff + beta * np.abs(dx_hat))
        out.append(a * x[i] + (1 - a) * out[-1])
    return np.stack(out)


def test_video_track_codes_smoothing_landmarks_and_overlay(run1, model: Emoca) -> None:
    import av

    _, out, _ = run1
    d = out / "clip"
    record = json.loads((d / "video.json").read_text())
    assert record["tracks"] == {"0": N_FRAMES} and record["problems"] == []
    assert record["frames_read"] == N_FRAMES and record["skipped_frames"] == []
    a = dict(np.load(d / "track_0" / "codes.npz"))
    np.testing.assert_array_equal(a["frame"], np.arange(N_FRAMES))
    np.testing.assert_allclose(a["time"], np.arange(N_FRAMES) / 10.0, atol=1e-6)
    assert a["exp"].shape == (N_FRAMES, 50) and a["light"].shape == (N_FRAMES, 9, 3)
    for k in ("exp", "shape", "cam"):
        np.testing.assert_allclose(a[k], _one_euro(a[f"raw_{k}"], a["time"], 1.0, 0.5),
                                   rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(a["exp"], a["raw_exp"])  # the crops move: codes do change
    # landmarks from the smoothed codes, through each frame's crop transform
    c = EmocaCodes(**{k: torch.as_tensor(a[k]) for k in
                      ("shape", "tex", "exp", "pose", "cam", "light")})
    with torch.no_grad():
        crop = model.decode(c, render=False, detail=False).landmarks2d.double().numpy() - 0.5
    inv = np.linalg.inv(a["image_to_crop"])
    expected = np.einsum("tij,tnj->tni", inv[:, :2, :2], crop) + inv[:, None, :2, 2]
    np.testing.assert_allclose(a["landmarks2d"], expected, atol=1e-3)
    assert a["emotion_probs"].shape == (N_FRAMES, 8)
    assert (d / "track_0" / "mesh_neutral.obj").stat().st_size > 0
    with av.open(str(d / "overlay.mp4")) as v:
        kinds = sorted(s.type for s in v.streams)
        vs = v.streams.video[0]
        size = (vs.codec_context.width, vs.codec_context.height)
        frames = [f.to_ndarray(format="rgb24") for f in v.decode(video=0)]
    assert kinds == ["audio", "video"] and size == (512, 256) and len(frames) == N_FRAMES
    # left half is the input frame itself (up to H.264)
    first = skimage.data.astronaut()[40:296, 100:356].astype(float)
    assert np.abs(frames[0][:, :256].astype(float) - first).mean() < 6


def test_resume_after_deleting_one_output_redoes_only_that_face(run1, inputs: Path,
                                                                root: Path,
                                                                tmp_path: Path) -> None:
    _, out1, _ = run1
    out = tmp_path / "out"
    shutil.copytree(out1, out)  # copy2 keeps the modification times
    victim = out / "pair" / "face_1" / "mesh_coarse.ply"
    victim.unlink()
    stale = out / "pair" / "face_1" / ".mesh_coarse.ply.x1y2.part"  # as a SIGKILL leaves it
    stale.write_bytes(b"half a file")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.name != "summary.json" and p != stale}
    rc = _cli(_argv(inputs, out, root))
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 1  # broken.jpg and bad.mp4 still fail
    assert summary["written"] == [str(out / "pair" / "face_1")]
    assert sorted(Path(p).relative_to(out).as_posix() for p in summary["skipped"]) == [
        "astronaut/face_0", "clip", "pair/face_0"]
    assert victim.is_file() and not stale.exists()
    changed = {p.relative_to(out).as_posix() for p, t in before.items()
               if p.stat().st_mtime_ns != t}
    assert changed and all(c.startswith("pair/") for c in changed)
    assert not any(c.startswith("pair/face_0/") for c in changed)
    assert set(os.listdir(out / "pair" / "face_1")) == DETAIL_FILES | {"done.json"}


# ------------------------------------------------------------------------------ pieces


def _visible_codes(batch: int = 1) -> EmocaCodes:
    g = torch.Generator().manual_seed(1)
    light = torch.zeros(batch, 9, 3)
    light[:, 0] = 3.5
    pose = torch.zeros(batch, 6)
    pose[:, :3] = torch.tensor([0.1, 0.3, 0.0])  # turned head: exercises the facing mask
    return EmocaCodes(shape=0.5 * torch.randn(batch, 100, generator=g),
                      tex=torch.zeros(batch, 50), exp=0.5 * torch.randn(batch, 50, generator=g),
                      pose=pose, cam=torch.tensor([[8.0, 0.01, -0.02]]).repeat(batch, 1),
                      light=light, detail=None)


def test_composite_geometry_matches_the_models_crop_render(model: Emoca) -> None:
    codes = _visible_codes()
    with torch.no_grad():
        out = model.decode(codes, render=True, detail=False)
    # a crop square of 447 px in a 360x300 photo (about 2 photo pixels per crop pixel)
    transform = CropTransform.from_square((190.0, 140.0), 447.0, 224)
    photo = np.full((300, 360, 3), 7, np.uint8)
    comp = composite_geometry(photo, out.vertices[0], out.transformed_vertices[0], transform,
                              model.flame.faces, model.renderer.face_uv, None, 224)
    drawn = (comp != 7).any(axis=2)
    # reference: each photo pixel looks up the nearest pixel of the model's shape render
    ys, xs = np.mgrid[0:300, 0:360]
    pts = np.stack([xs, ys], -1).reshape(-1, 2).astype(float)
    crop = np.rint(transform.to_crop(pts)).astype(int)
    ok = ((crop >= 0) & (crop < 224)).all(axis=1)
    shape = model.renderer.render_shape(out.vertices, out.transformed_vertices)
    ref_alpha = np.zeros(len(pts), bool)
    ref_alpha[ok] = shape.alpha_images[0, 0].numpy()[crop[ok, 1], crop[ok, 0]] > 0.5
    ref_alpha = ref_alpha.reshape(300, 360)
    inter, union = (drawn & ref_alpha).sum(), (drawn | ref_alpha).sum()
    # measured 0.994; a one-crop-pixel shift of the mapping gives 0.983
    assert ref_alpha.sum() > 5000 and inter / union > 0.99
    ref_img = np.zeros((len(pts), 3))
    ref_img[ok] = shape.images[0].permute(1, 2, 0).numpy()[crop[ok, 1], crop[ok, 0]]
    both = (drawn & ref_alpha).reshape(-1)
    diff = np.abs(comp.reshape(-1, 3)[both] / 255.0 - ref_img[both]).mean()
    assert diff < 0.006  # measured 0.0033; 0.0073 with a one-crop-pixel shift


def test_api_takes_paths_pil_numpy_and_tensors(model: Emoca, root: Path, inputs: Path) -> None:
    from emoca.api import reconstruct

    img = skimage.data.astronaut()
    faces = reconstruct([inputs / "astronaut.png", Image.fromarray(img),
                         torch.from_numpy(img).permute(2, 0, 1).float() / 255.0],
                        model=model, assets=root, batch_size=2)
    assert len(faces) == 3 and [f.face_index for f in faces] == [0, 0, 0]
    assert faces[0].source == str(inputs / "astronaut.png") and faces[1].source == "<image 1>"
    for f in faces[1:]:
        torch.testing.assert_close(f.codes.exp, faces[0].codes.exp, atol=1e-4, rtol=0)
        torch.testing.assert_close(f.landmarks2d, faces[0].landmarks2d, atol=1e-3, rtol=0)
    f = faces[2]
    assert f.vertices.shape == (5023, 3) and f.landmarks3d.shape == (68, 3)
    assert f.codes.detail.shape == (1, 128) and f.emotion is not None
    assert f.emotion.label in ("neutral", "happy", "sad", "surprise", "fear", "disgust",
                               "anger", "contempt")
    assert "renders" not in f._cache  # lazily rendered
    assert f.overlay.shape == img.shape and f.overlay.dtype == np.uint8
    assert f.coarse.shape == (3, 224, 224) and f.detail.shape == (3, 224, 224)
    assert "renders" in f._cache and f.renders is f._cache["renders"]


def test_split_uv_seams_keeps_every_corner() -> None:
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    uv_faces = np.array([[0, 1, 2], [4, 1, 3]])  # vertex 2 has two UVs: a seam
    vi, ti, new = split_uv_seams(faces, uv_faces)
    assert len(vi) == 5
    np.testing.assert_array_equal(vi[new], faces)
    np.testing.assert_array_equal(ti[new], uv_faces)


def test_output_names_are_unique_and_stable() -> None:
    paths = [Path("a/x.jpg"), Path("b/x.png"), Path("c/y.jpg"), Path("d/x.png")]
    names = unique_names(paths)
    assert names[Path("c/y.jpg")] == "y" and names[Path("a/x.jpg")] == "x_jpg"
    assert len(set(names.values())) == 4
    assert unique_names(list(reversed(paths))) == names


def test_parse_save() -> None:
    assert parse_save("mesh, codes") == {"mesh", "codes"}
    assert parse_save(None) is None
    with pytest.raises(ValueError, match="meshes"):
        parse_save("meshes")
