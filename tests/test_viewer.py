"""``emoca view`` in a real browser: Debian's headless chromium, driven over the DevTools
protocol (raw CDP over ``websocket-client``), on a small output of the real
``emoca reconstruct`` (look-alike weights and FLAME, a photo and an 8-frame video).

Independent truth: the page's 3D pane is cleared to a known colour, so a drawn face is a
count of pixels that differ from it inside the pane; motion is the difference between
screenshots at two frames; the curves are coloured pixels on their canvas. The page's
own state (``window.emocaViewer``) says which frame it shows, so the test asks, not
waits and hopes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cdp_browser import Browser, chromium  # tests/cdp_browser.py
from clips import write_drifting_clip  # tests/clips.py
from PIL import Image

BG = (0x20, 0x23, 0x2A)  # view3d.js BACKGROUND
VALENCE = (0x4F, 0xC3, 0xF7)  # curves.js COLORS.valence
N_FRAMES = 8


# ------------------------------------------------------------------------------ fixtures

MODEL = "EMOCA_v2_lr_mse_20"


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real ``emoca reconstruct`` on a photo and an 8-frame clip (look-alike files)."""
    import skimage.data

    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model
    from emoca.cli.main import main

    d = tmp_path_factory.mktemp("viewer")
    assets = write_official_assets(d / "assets", seed=0, albedo="bfm", albedo_components=4)
    write_emoca_model(assets, MODEL, seed=1, deca_seed=0)
    write_emodeca_model(assets, seed=11, deca_seed=0)
    inputs = d / "in"
    inputs.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(inputs / "astronaut.png")
    write_drifting_clip(inputs / "clip.mp4", N_FRAMES, step=(5, 6))
    out = d / "out"
    rc = main(["reconstruct", str(inputs), "-o", str(out), "--assets", str(assets),
               "--no-progress"])
    assert rc == 0
    _give_the_track_a_known_motion(out / "clip" / "track_0" / "codes.npz")
    return {"assets": assets, "out": out, "inputs": inputs, "root": d}


def _give_the_track_a_known_motion(path: Path) -> None:
    """The look-alike networks' codes hardly change over the clip (~1e-5), so the test
    gives the track a known performance in the same file: the jaw opens by 0.3 rad and
    the head turns by 0.4 rad over the clip, valence and arousal follow sines and the
    expression probabilities a smooth blend (each row still sums to 1)."""
    a = dict(np.load(path))
    t = np.linspace(0.0, 1.0, N_FRAMES, dtype=np.float32)
    a["pose"][:, 1] = 0.4 * t - 0.2
    a["pose"][:, 3] = 0.3 * t
    a["valence"] = (0.8 * np.sin(2 * np.pi * t)).astype(np.float32)
    a["arousal"] = (0.6 * np.cos(2 * np.pi * t)).astype(np.float32)
    logits = np.stack([np.sin(2 * np.pi * t + k) * 2 for k in range(8)], 1)
    a["emotion_probs"] = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(
        np.float32)
    np.savez(path, **a)


class Server:
    """``emoca view`` as a user starts it (the CLI, port 0), stopped at the end."""

    def __init__(self, out: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emoca.cli.main", "view", str(out), "--port", "0",
             "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.proc.kill()
            raise AssertionError(f"emoca view did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split()[2]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path) as r:
            return r.read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server(rec):
    s = Server(rec["out"], "--assets", str(rec["assets"]))
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def _open(browser: Browser, url: str) -> None:
    browser.eval("window.emocaViewer = undefined")  # never read the last page's state
    browser.events.clear()
    browser.call("Page.navigate", url=url)
    browser.wait_for("window.emocaViewer && window.emocaViewer.ready", 90)


def _box(browser: Browser, element_id: str) -> tuple[int, int, int, int]:
    r = browser.eval(f"(r => [r.left, r.top, r.right, r.bottom])"
                     f"(document.getElementById('{element_id}').getBoundingClientRect())")
    return tuple(int(round(v)) for v in r)


def _crop(shot: np.ndarray, box: tuple[int, int, int, int], inset: int = 2) -> np.ndarray:
    x0, y0, x1, y1 = box
    return shot[y0 + inset:y1 - inset, x0 + inset:x1 - inset].astype(np.int16)


def _near(img: np.ndarray, color: tuple[int, int, int], tol: int = 24) -> np.ndarray:
    return (np.abs(img - np.array(color, np.int16)) <= tol).all(axis=-1)


def _face_drawn(browser: Browser) -> float:
    """Share of non-background pixels in the middle half of the 3D pane."""
    a = _crop(browser.screenshot(), _box(browser, "three-canvas"))
    h, w = a.shape[:2]
    return float((~_near(a[h // 4:3 * h // 4, w // 4:3 * w // 4], BG, 6)).mean())


# ------------------------------------------------------------------------------ tests


def test_missing_browser_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()


def test_bin_curve_means_equal_runs() -> None:
    from emoca.viewer.tracks import bin_curve

    v = np.arange(10, dtype=np.float64)
    np.testing.assert_allclose(bin_curve(v, 3), [1.0, 4.0, 7.5])  # [0..2], [3..5], [6..9]
    np.testing.assert_array_equal(bin_curve(v, 20), v)
    two = np.stack([v, -v], 1)
    np.testing.assert_allclose(bin_curve(two, 5)[:, 1], -(v[0::2] + v[1::2]) / 2)


def test_catalog_and_streams_follow_the_files(server: Server, rec) -> None:
    """Every number the page gets is the output's own: FLAME on the saved codes (float16),
    the inverse of the saved crop matrices, the saved frame times and emotion."""
    import torch

    from emoca.face_model.flame import FLAME

    index = json.loads(server.get("data/index.json"))
    items = {it["id"]: it for it in index["items"]}
    assert set(items) == {"astronaut", "clip"}
    face = items["astronaut"]["faces"][0]
    assert face["glb"] == "out/astronaut/face_0/mesh_coarse.glb" and face["tool"] == "reconstruct"
    assert server.get(face["glb"])[:4] == b"glTF"
    assert server.get(items["astronaut"]["media"]) == (rec["inputs"] / "astronaut.png").read_bytes()
    clip = items["clip"]
    assert [t["id"] for t in clip["tracks"]] == ["track_0"] and clip["fps"] == 10
    meta = json.loads(server.get(clip["tracks"][0]["meta"]))
    codes = dict(np.load(rec["out"] / "clip" / "track_0" / "codes.npz"))
    assert meta["frames"] == N_FRAMES and meta["frame"] == list(range(N_FRAMES))
    np.testing.assert_allclose(meta["time"], codes["time"], atol=1e-4)
    np.testing.assert_allclose(meta["curves"]["valence"], codes["valence"], atol=1e-4)
    np.testing.assert_allclose(meta["curves"]["probs"], codes["emotion_probs"], atol=1e-4)

    flame = FLAME.from_file(rec["assets"] / "FLAME" / "geometry" / "generic_model.pkl")
    with torch.no_grad():
        want = flame(torch.as_tensor(codes["shape"]), torch.as_tensor(codes["exp"]),
                     torch.as_tensor(codes["pose"])).vertices.numpy()
    got = np.frombuffer(server.get(meta["verts"].format(chunk="00000")), np.float16)
    got = got.astype(np.float32).reshape(N_FRAMES, meta["vertex_count"], 3)
    np.testing.assert_allclose(got, want, atol=2e-4)  # float16: 2^-11 of ~0.1 m
    faces = np.frombuffer(server.get(meta["faces"]), np.uint32).reshape(-1, 3)
    np.testing.assert_array_equal(faces, flame.faces.numpy())
    data = json.loads(server.get(meta["frame_data"].format(chunk="00000")))
    inv = np.linalg.inv(codes["image_to_crop"]).reshape(N_FRAMES, 9)
    np.testing.assert_allclose(data["crop_to_image"], inv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(data["cam"], codes["cam"], atol=1e-5)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        server.get("out/../../etc/passwd")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        server.get(meta["verts"].format(chunk="00001"))


def test_page_in_chromium_draws_face_moves_and_curves(server: Server, browser: Browser,
                                                      tmp_path: Path) -> None:
    _open(browser, server.url + "?item=clip")
    st = browser.eval("window.emocaViewer.state")
    assert st["item"] == "clip" and st["tracks"] == ["track_0"] and st["frames"] == N_FRAMES
    assert st["hasVertices"] and st["errors"] == []
    shots = {}
    for frame in (0, N_FRAMES - 1):
        assert browser.eval(f"window.emocaViewer.seekFrame({frame})") == frame
        assert browser.eval("window.emocaViewer.state.frameShown") == frame
        shots[frame] = browser.screenshot()
        Image.fromarray(shots[frame]).save(tmp_path / f"viewer_{frame}.png")
    assert browser.errors() == [], browser.errors()

    pane = _box(browser, "three-canvas")
    a, b = (_crop(shots[f], pane) for f in (0, N_FRAMES - 1))
    # the face: pixels unlike the clear colour, inside the middle of the 3D pane
    h, w = a.shape[:2]
    middle = a[h // 4:3 * h // 4, w // 4:3 * w // 4]
    drawn = ~_near(middle, BG, tol=6)
    assert drawn.mean() > 0.25, f"only {drawn.mean():.1%} of the 3D pane's middle is drawn"
    assert _near(a[:8, :8], BG, tol=2).all()  # the corner is background: the face is framed
    # it moves: FLAME on frame 7's codes differs from frame 0's
    changed = (np.abs(a - b).max(axis=-1) > 8).mean()
    assert changed > 0.002, f"the 3D face did not change between frames ({changed:.3%})"
    # the video moved on too (the input drifts by 6 px per frame)
    media = _box(browser, "media-pane")
    assert np.abs(_crop(shots[0], media) - _crop(shots[N_FRAMES - 1], media)).mean() > 3
    # the curves: valence pixels on the curve canvas, and the frame marker moved right
    curves = _box(browser, "curves")
    ca, cb = _crop(shots[0], curves, 0), _crop(shots[N_FRAMES - 1], curves, 0)
    assert _near(ca, VALENCE, tol=30).sum() > 200
    assert browser.eval("window.emocaViewer.state.curvePoints") >= 2 * N_FRAMES
    white_a = np.flatnonzero(_near(ca, (255, 255, 255), 10).sum(axis=0) > ca.shape[0] // 2)
    white_b = np.flatnonzero(_near(cb, (255, 255, 255), 10).sum(axis=0) > cb.shape[0] // 2)
    assert len(white_a) and len(white_b) and white_b.mean() > white_a.mean() + 0.8 * ca.shape[1]
    if os.environ.get("EMOCA_SAVE_SCREENSHOT"):
        Image.fromarray(shots[N_FRAMES - 1]).save(os.environ["EMOCA_SAVE_SCREENSHOT"])


def test_clicking_the_curve_jumps_there(server: Server, browser: Browser) -> None:
    _open(browser, server.url + "?item=clip")
    # the curves arrive after "ready": click once they are drawn
    browser.wait_for(f"window.emocaViewer.state.curvePoints >= {N_FRAMES}", 60)
    x0, y0, x1, y1 = _box(browser, "curves")
    x = x0 + (x1 - x0) * (4.5 / 7)  # between frames 4 and 5 on a 0..0.7 s axis
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=(y0 + y1) / 2,
                     button="left", clickCount=1)
    browser.wait_for("window.emocaViewer.state.frameShown === 4", 60)
    # play: the video runs and the 3D face follows it to the last frame
    browser.eval("document.getElementById('play').click()")
    browser.wait_for(f"window.emocaViewer.state.frameShown === {N_FRAMES - 1}", 60)
    assert browser.errors() == [], browser.errors()


def test_without_flame_a_track_shows_its_identity_mesh(rec, browser: Browser,
                                                       tmp_path: Path) -> None:
    s = Server(rec["out"], "--assets", str(tmp_path))  # an assets folder without FLAME
    try:
        meta = json.loads(s.get("data/clip/track_0/meta.json"))
        assert meta["vertex_count"] == 0 and meta["faces"] is None
        assert str(tmp_path) in meta["no_vertices"]  # the hint names where it looked
        _open(browser, s.url + "?item=clip")
        st = browser.eval("window.emocaViewer.state")
        assert not st["hasVertices"] and st["note"].startswith("identity mesh only")
        assert _face_drawn(browser) > 0.25
        assert browser.errors() == [], browser.errors()
    finally:
        s.close()


def test_photo_face_glb_and_overlay_projection(server: Server, browser: Browser, rec) -> None:
    """The overlay's model->image map (view3d.js) against README's formula in numpy:
    crop x' = s (x + tx), y' = -s (y + ty); crop pixel = (x' + 1) S / 2 - 0.5; image pixel =
    inverse(image_to_crop) @ crop pixel."""
    _open(browser, server.url + "?item=astronaut")
    st = browser.eval("window.emocaViewer.state")
    assert st["item"] == "astronaut" and st["sub"] == "face_0" and st["errors"] == []
    assert _face_drawn(browser) > 0.25
    face_dir = rec["out"] / "astronaut" / "face_0"
    pts = np.asarray(json.loads((face_dir / "landmarks.json").read_text())["landmarks3d"])
    face = json.loads((face_dir / "face.json").read_text())
    saved_cam = json.loads((face_dir / "codes.json").read_text())["codes"]["cam"]
    crop_to_image = np.linalg.inv(np.asarray(face["image_to_crop"]))
    for cam in (saved_cam, [7.5, 0.01, -0.02]):  # the saved one, and a face-sized one
        got = np.asarray(browser.eval(
            "import('./static/view3d.js').then(m => { const e = m.modelToImage("
            f"{json.dumps(cam)}, {json.dumps(crop_to_image.reshape(-1).tolist())}, 224)"
            f".elements; return {json.dumps(pts.tolist())}.map(p => "
            "[e[0]*p[0] + e[4]*p[1] + e[8]*p[2] + e[12], "
            "e[1]*p[0] + e[5]*p[1] + e[9]*p[2] + e[13]]); })"))
        s, tx, ty = cam
        u = (s * (pts[:, 0] + tx) + 1) * 112 - 0.5
        v = (-s * (pts[:, 1] + ty) + 1) * 112 - 0.5
        want = (crop_to_image @ np.stack([u, v, np.ones_like(u)]))[:2].T
        np.testing.assert_allclose(got, want, atol=1e-3)
    assert browser.errors() == [], browser.errors()


# ------------------------------------------------------------------------ animate output

ANIM_NAMES = ["jawOpen", "mouthSmileLeft"]


def _animated_glb(path: Path, times: np.ndarray, weights: np.ndarray) -> None:
    """A glTF 2.0 file written from the spec by hand: a quad with two morph targets
    (named in ``extras.targetNames``) and one animation channel of their weights."""
    pos = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32) * 0.05
    tgt = [np.tile([[0, -0.02, 0]], (4, 1)).astype(np.float32),
           np.tile([[0.02, 0, 0.01]], (4, 1)).astype(np.float32)]
    idx = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    blobs = [idx.tobytes() + b"\0\0", pos.tobytes(), tgt[0].tobytes(), tgt[1].tobytes(),
             times.astype(np.float32).tobytes(), weights.astype(np.float32).tobytes()]
    views, off = [], 0
    for b in blobs:
        views.append({"buffer": 0, "byteOffset": off, "byteLength": len(b)})
        off += len(b)
    views[0]["byteLength"] = 12

    def vec3(view: int, a: np.ndarray) -> dict:
        return {"bufferView": view, "componentType": 5126, "count": 4, "type": "VEC3",
                "min": a.min(0).tolist(), "max": a.max(0).tolist()}

    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0,
                                    "targets": [{"POSITION": 2}, {"POSITION": 3}]}],
                    "weights": [0.0, 0.0], "extras": {"targetNames": ANIM_NAMES}}],
        "accessors": [
            {"bufferView": 0, "componentType": 5123, "count": 6, "type": "SCALAR"},
            vec3(1, pos), vec3(2, tgt[0]), vec3(3, tgt[1]),
            {"bufferView": 4, "componentType": 5126, "count": len(times), "type": "SCALAR",
             "min": [float(times.min())], "max": [float(times.max())]},
            {"bufferView": 5, "componentType": 5126, "count": weights.size, "type": "SCALAR"}],
        "bufferViews": views, "buffers": [{"byteLength": off}],
        "animations": [{"samplers": [{"input": 4, "output": 5, "interpolation": "LINEAR"}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
    }
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary = b"".join(blobs)
    binary += b"\0" * (-len(binary) % 4)
    glb = (b"glTF" + np.array([2, 12 + 8 + len(js) + 8 + len(binary)], "<u4").tobytes()
           + np.array([len(js), 0x4E4F534A], "<u4").tobytes() + js
           + np.array([len(binary), 0x004E4942], "<u4").tobytes() + binary)
    path.write_bytes(glb)


def test_animation_glb_plays_in_sync_with_the_video(rec, browser: Browser,
                                                    tmp_path: Path) -> None:
    """three.js's GLTFLoader + AnimationMixer, clocked by the video: the morph weights on
    screen are the file's keyframes interpolated at the video's current time."""
    out = tmp_path / "anim"
    out.mkdir()
    n, start = N_FRAMES - 2, 0.2  # a track that starts at the clip's frame 2
    times = np.arange(n, dtype=np.float32) / 10
    w = np.stack([np.linspace(0, 1, n), np.linspace(0.8, 0.1, n) ** 2], 1)
    _animated_glb(out / "animation.glb", times, w)
    # animation.json as emoca animate writes it: animation time = video time - start_time_s
    (out / "animation.json").write_text(json.dumps({
        "format": "emoca-animation", "fps": 10, "frames": n, "start_time_s": start,
        "times_s": times.tolist(), "morph_targets": ANIM_NAMES,
        "video": str(rec["inputs"] / "clip.mp4")}))
    s = Server(out)
    try:
        _open(browser, s.url)
        st = browser.eval("window.emocaViewer.state")
        assert st["kind"] == "animation" and st["frames"] == n and st["errors"] == []
        for frame in (1, 4):
            assert browser.eval(f"window.emocaViewer.seekFrame({frame})") == frame
            t = browser.eval("document.getElementById('video').currentTime")
            assert times[frame] + start <= t < times[frame] + start + 0.1
            got = browser.eval("window.emocaViewer.morphWeights()")
            for k, name in enumerate(ANIM_NAMES):
                want = np.interp(t - start, times, w[:, k])
                assert got[name] == pytest.approx(want, abs=1e-5)
        assert browser.errors() == [], browser.errors()
    finally:
        s.close()


# ---------------------------------------------------------------------------- fit output


@pytest.fixture(scope="module")
def fit_out(rec) -> Path:
    """A fitted video track written by fit's own writer (``write_fit_track``) with a known
    performance: jawOpen rises 0 -> 0.8 and the head turns. (Running the fit itself takes
    minutes on this CPU; its photo outputs are covered by tests/test_fit.py.) The crop
    matrices are the reconstruct track's, so the overlay sits where the face was found."""
    import torch

    from emoca.face_model.ict import ICTFaceModel
    from emoca.pipeline.fit_files import MeshData, write_fit_track

    model = ICTFaceModel.default()
    out = rec["root"] / "fit_out"
    clip = out / "clip"
    names = list(model.expression_names)
    codes = np.load(rec["out"] / "clip" / "track_0" / "codes.npz")
    t = np.linspace(0, 1, N_FRAMES, dtype=np.float32)
    expr = np.zeros((N_FRAMES, len(names)), np.float32)
    expr[:, names.index("jawOpen")] = 0.8 * t
    arrays = {"frame": np.arange(N_FRAMES), "time": np.arange(N_FRAMES) / 10.0,
              "identity": np.zeros((N_FRAMES, 100), np.float32), "expression": expr,
              "rotation": np.stack([0 * t, 0.5 * t - 0.25, 0 * t], 1).astype(np.float32),
              "cam": np.tile(np.float32([0.045, 0.0, 2.0]), (N_FRAMES, 1)),
              "image_to_crop": codes["image_to_crop"]}
    neutral = model(identity=torch.zeros(1, 100)).vertices[0]
    write_fit_track(clip / "track_0", arrays, MeshData(neutral, model.faces, model.uv_coords,
                                                       model.uv_faces), tuple(names))
    (clip / "video.json").write_text(json.dumps({
        "video": str(rec["inputs"] / "clip.mp4"), "fps": 10.0, "size": [256, 256],
        "frames_read": N_FRAMES, "tracks": {"0": N_FRAMES}}))
    _fit_photo(out / "astronaut", rec["inputs"] / "astronaut.png", model)
    return out


FIT_WEIGHTS = {"jawOpen": 0.55, "mouthSmile_L": 0.7, "eyeBlink_R": 0.3}


def _fit_photo(dest: Path, photo: Path, model) -> None:
    """A photo face written by fit's own writer (``write_fit_face``), known weights."""
    import torch

    from emoca.face_model.arkit import ARKIT_NAMES, ict_to_arkit
    from emoca.pipeline.fit_export import ExportMesh
    from emoca.pipeline.fit_files import FitFace, write_fit_face
    from emoca.render.geometry import vertex_normals

    names = list(model.expression_names)
    e = torch.zeros(1, len(names))
    for k, v in FIT_WEIGHTS.items():
        e[0, names.index(k)] = v
    verts = model(expression=e).vertices[0]
    i2c = [[0.9, 0.0, -110.0], [0.0, 0.9, -40.0], [0.0, 0.0, 1.0]]
    record = {"face_model": "ict", "source": str(photo), "face_index": 0,
              "box": [150.0, 60.0, 330.0, 280.0], "camera": [0.05, 0.0, 0.0],
              "image_to_crop": i2c,
              "arkit_blendshapes": dict(zip(ARKIT_NAMES, map(float, ict_to_arkit(
                  e[0].numpy(), names)), strict=True))}
    dest.mkdir(parents=True)
    (dest / "faces.json").write_text(json.dumps({"image": str(photo), "size": [512, 512],
                                                 "faces": 1}))
    blank = np.zeros((8, 8, 3), np.uint8)
    mesh = ExportMesh(vertices=verts, faces=model.faces, uvs=model.uv_coords,
                      uv_faces=model.uv_faces, texture=torch.full((3, 64, 64), 0.6),
                      normals=vertex_normals(verts[None], model.faces)[0],
                      vertex_colors=torch.full_like(verts, 0.6), metres_per_unit=0.01)
    face = FitFace(mesh=mesh, record=record,
                   arrays={"expression": e[0].numpy()}, overlay=blank, overlay_full=blank)
    (dest / "face_0").mkdir()
    write_fit_face(dest / "face_0", face)


def test_fit_photo_glb_and_arkit_bars(fit_out: Path, browser: Browser) -> None:
    from emoca.face_model.arkit import ict_name_to_arkit

    s = Server(fit_out)
    try:
        _open(browser, s.url + "?item=astronaut")
        st = browser.eval("window.emocaViewer.state")
        assert st["sub"] == "face_0" and st["errors"] == []
        bars = st["bars"]
        assert bars["title"] == "ARKit blendshapes" and len(bars["values"]) == 52
        for k, v in FIT_WEIGHTS.items():  # ICT's one-sided modes are ARKit's Left/Right
            assert bars["values"][ict_name_to_arkit(k)] == pytest.approx(v, abs=1e-6)
        assert sum(bars["values"].values()) == pytest.approx(sum(FIT_WEIGHTS.values()), abs=1e-5)
        assert _face_drawn(browser) > 0.25
        assert browser.errors() == [], browser.errors()
    finally:
        s.close()


def test_fit_track_meshes_bars_and_motion(fit_out: Path, browser: Browser,
                                          tmp_path: Path) -> None:
    import torch

    from emoca.face_model.ict import ICTFaceModel

    s = Server(fit_out)
    try:
        meta = json.loads(s.get("data/clip/track_0/meta.json"))
        assert meta["face_model"] == "ict" and meta["units"] == "cm"
        a = dict(np.load(fit_out / "clip" / "track_0" / "params.npz"))
        model = ICTFaceModel.default()
        with torch.no_grad():
            want = model(identity=torch.as_tensor(a["identity"]),
                         expression=torch.as_tensor(a["expression"]),
                         rotation=torch.as_tensor(a["rotation"])).vertices.numpy()
        got = np.frombuffer(s.get("data/clip/track_0/verts_00000.bin"), np.float16)
        np.testing.assert_allclose(got.astype(np.float32).reshape(want.shape), want,
                                   atol=0.02)  # cm; float16 steps are 2^-11 of the value

        _open(browser, s.url + "?item=clip")
        st = browser.eval("window.emocaViewer.state")
        assert st["hasVertices"] and st["errors"] == []
        assert meta["blendshape_names"][:3] == ["browDownLeft", "browDownRight", "browInnerUp"]
        shots = []
        for frame in (0, N_FRAMES - 1):
            assert browser.eval(f"window.emocaViewer.seekFrame({frame})") == frame
            bars = browser.eval("window.emocaViewer.state.bars")
            assert bars["title"] == "ARKit blendshapes"
            jaw = a["expression"][frame, model.expression_names.index("jawOpen")]
            assert bars["values"]["jawOpen"] == pytest.approx(jaw, abs=1e-4)
            full = browser.screenshot()
            Image.fromarray(full).save(tmp_path / f"fit_{frame}.png")
            shots.append(_crop(full, _box(browser, "three-canvas")))
        h, w = shots[0].shape[:2]
        assert (~_near(shots[0][h // 4:3 * h // 4, w // 4:3 * w // 4], BG, 6)).mean() > 0.25
        assert (np.abs(shots[0] - shots[1]).max(axis=-1) > 8).mean() > 0.01  # jaw, head turn
        # the curves: jawOpen's rise is the one blendshape curve (the rest are flat zeros)
        assert "jawOpen" in meta["curves"]["series"]
        np.testing.assert_allclose(meta["curves"]["series"]["jawOpen"],
                                   a["expression"][:, model.expression_names.index("jawOpen")],
                                   atol=1e-4)
        assert browser.eval("window.emocaViewer.state.curvePoints") >= N_FRAMES
        assert browser.errors() == [], browser.errors()
    finally:
        s.close()


# ------------------------------------------------------------------- export, big outputs


def test_export_is_the_same_site(rec, server: Server, tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "emoca.cli.main", "view", str(rec["out"]),
                        "--assets", str(rec["assets"]), "--export", str(site)],
                       capture_output=True, text=True, check=True)
    assert "wrote" in r.stdout
    for rel in ("index.html", "static/app.js", "static/vendor/three/LICENSE",
                "static/vendor/three/build/three.module.js", "data/index.json",
                "data/clip/track_0/meta.json", "data/clip/track_0/faces.bin",
                "data/clip/track_0/verts_00000.bin", "data/clip/track_0/frames_00000.json",
                "media/clip/input.mp4", "out/astronaut/face_0/mesh_coarse.glb"):
        assert (site / rel).read_bytes() == server.get(rel), rel


def test_an_hour_of_video_stays_small_and_fast(rec, tmp_path: Path) -> None:
    """108,000 frames (an hour at 30 fps): the page's first request stays a few MB and
    quick, and any chunk costs the same as the first."""
    from emoca.viewer.server import Site

    out = tmp_path / "long"
    shutil.copytree(rec["out"] / "clip", out / "clip")
    a = dict(np.load(out / "clip" / "track_0" / "codes.npz"))
    n = 108_000
    big = {k: np.resize(v, (n, *v.shape[1:])) for k, v in a.items()}
    big["frame"], big["time"] = np.arange(n), np.arange(n) / 30.0
    np.savez(out / "clip" / "track_0" / "codes.npz", **big)
    site = Site(out, assets=rec["assets"])
    t0 = time.perf_counter()
    meta, _ = site.get("data/clip/track_0/meta.json")
    t_meta = time.perf_counter() - t0
    m = json.loads(meta)
    assert m["frames"] == n and len(m["curves"]["time"]) == 2000
    assert len(meta) < 4_000_000, len(meta)
    t0 = time.perf_counter()
    last = m["chunks"] - 1
    verts, _ = site.get(f"data/clip/track_0/verts_{last:05d}.bin")
    frames, _ = site.get(f"data/clip/track_0/frames_{last:05d}.json")
    t_chunk = time.perf_counter() - t0
    assert len(verts) == (n - last * m["chunk"]) * m["vertex_count"] * 3 * 2
    assert json.loads(frames)["start"] == last * m["chunk"]
    print(f"hour of video: meta.json {len(meta) / 1e6:.2f} MB in {t_meta:.2f} s, "
          f"last chunk in {t_chunk:.2f} s")
    assert t_meta < 5 and t_chunk < 5


def test_view_errors_are_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "emoca.cli.main", "view", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no output of emoca reconstruct, fit or animate" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "emoca.cli.main", "view", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not a folder" in r.stderr
