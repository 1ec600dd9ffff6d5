"""Fitting a short video: tracks, shared identity per chunk, ARKit curves, overlay with audio."""

from __future__ import annotations

import csv

import numpy as np
import skimage.data


def _make_clip(path, n=6):
    import av
    img = skimage.data.astronaut()
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
    a = c.add_stream("aac", rate=16000)
    for i in range(n):  # the face drifts across the frame
        fr = np.ascontiguousarray(img[40 + 4 * i:296 + 4 * i, 100 + 3 * i:356 + 3 * i])
        for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
            c.mux(p)
    t = np.arange(16000 * n // 10) / 16000.0
    af = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                    format="fltp", layout="mono")
    af.sample_rate = 16000
    for p in [*a.encode(af), *a.encode(None), *s.encode(None)]:
        c.mux(p)
    c.close()


def test_video_fit_writes_curves_neutral_mesh_and_overlay(tmp_path, ict_dir):
    import av

    from emoca.detect import create_detector
    from emoca.face_model.ict import ICTFaceModel
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.pipeline.fit_processor import FitProcessor
    from emoca.pipeline.video import process_video

    clip = tmp_path / "clip.mp4"
    _make_clip(clip)
    ict = ICTFaceModel.from_dir(ict_dir)
    fitter = Fitter(ict, None, FitConfig(steps_appearance=3))
    proc = FitProcessor(fitter, create_detector("mediapipe"), chunk=3)
    res = process_video(clip, tmp_path / "out" / "clip", proc, progress=False)
    assert res["tracks"] == {"0": 6} and res["problems"] == []
    tdir = tmp_path / "out" / "clip" / "track_0"
    rows = list(csv.reader((tdir / "blendshapes.csv").open()))
    from emoca.face_model.arkit import ARKIT_NAMES

    assert rows[0] == ["frame", "time", *ARKIT_NAMES] and len(rows[0]) == 2 + 52
    weights = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    assert weights.shape == (6, 52) and weights.min() >= 0 and weights.max() <= 1
    p = np.load(tdir / "params.npz")
    # the CSV's ARKit columns are the ICT weights, split halves averaged
    i_in = ict.expression_names.index("browInnerUp_L"), ict.expression_names.index("browInnerUp_R")
    np.testing.assert_allclose(weights[:, ARKIT_NAMES.index("browInnerUp")],
                               p["expression"][:, list(i_in)].mean(1), atol=2e-5)
    np.testing.assert_allclose(weights[:, ARKIT_NAMES.index("jawOpen")],
                               p["expression"][:, ict.expression_names.index("jawOpen")],
                               atol=2e-5)
    np.testing.assert_array_equal(p["frame"], np.arange(6))
    # one identity per chunk of 3 frames, different chunks fitted separately
    np.testing.assert_array_equal(p["identity"][0], p["identity"][2])
    np.testing.assert_array_equal(p["identity"][3], p["identity"][5])
    assert float(p["landmark_error"].max()) < 0.05
    # the head follows the face: camera translation moves with the drifting crop
    assert not np.allclose(p["cam"][0], p["cam"][5])
    assert (tdir / "neutral.obj").stat().st_size > 0
    with av.open(str(tmp_path / "out" / "clip" / "overlay.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        frames = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"] and frames == 6
