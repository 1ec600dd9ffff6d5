"""Face detection, landmarks and DECA crop geometry on real photos.

Independent references: skimage's LBP face cascade (boxes), MediaPipe's face mesh run on
the whole image (landmark mapping back to pixels), DECA's own recipe written out with
skimage's estimate_transform/warp (crop matrix and pixels), analytic boxes.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from skimage import data as skdata
from skimage.feature import Cascade
from skimage.transform import estimate_transform, warp

from emoca.detect import (
    IBUG68_PARTS,
    MEDIAPIPE_TO_IBUG68,
    CropTransform,
    Detection,
    FaceDetector,
    FileDetector,
    MediaPipeDetector,
    bbox2point,
    create_detector,
    crop_transform_for_detection,
    crop_transform_from_box,
    crops_from_image,
    list_detectors,
    mediapipe_to_ibug68,
    register_detector,
    warp_crop,
)
from emoca.detect import base as detect_base


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def side_by_side(astronaut, hopper) -> np.ndarray:
    h = max(astronaut.shape[0], hopper.shape[0])

    def pad(a):
        return np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)))

    return np.concatenate([pad(astronaut), pad(hopper)], axis=1)


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector() as det:
        yield det


@pytest.fixture(scope="module")
def faces(detector, astronaut, hopper) -> dict[str, list[Detection]]:
    return {"astronaut": detector.detect(astronaut), "hopper": detector.detect(hopper)}


def _cascade_box(image: np.ndarray) -> np.ndarray:
    cascade = Cascade(skdata.lbp_frontal_face_cascade_filename())
    found = cascade.detect_multi_scale(img=image, scale_factor=1.2, step_ratio=1,
                                       min_size=(60, 60), max_size=(400, 400))
    assert len(found) == 1
    f = found[0]
    return np.array([f["c"], f["r"], f["c"] + f["width"], f["r"] + f["height"]], float)


def _iou(a, b) -> float:
    return detect_base.box_iou(np.asarray(a, float), np.asarray(b, float))


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_one_face_per_photo_agrees_with_skimage_cascade(photo, faces, request):
    image = request.getfixturevalue(photo)
    dets = faces[photo]
    assert len(dets) == 1
    det = dets[0]
    assert det.landmarks_kind == "mediapipe478" and det.landmarks.shape == (478, 2)
    assert 0.5 < det.score <= 1.0
    ref = _cascade_box(image)
    assert _iou(det.box, ref) > 0.5
    c = (ref[:2] + ref[2:]) / 2
    assert det.box[0] < c[0] < det.box[2] and det.box[1] < c[1] < det.box[3]


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_68_landmarks_anatomy(photo, faces):
    det = faces[photo][0]
    p = det.landmarks68()
    assert p.shape == (68, 2)
    # Inside the detector box up to a margin: BlazeFace boxes stop short of the ears.
    margin = 0.15 * max(det.width, det.height)
    assert np.all(p >= det.box[:2] - margin) and np.all(p <= det.box[2:] + margin)

    def mean(part):
        return p[IBUG68_PARTS[part]].mean(axis=0)

    eyes_y = (mean("left_eye")[1] + mean("right_eye")[1]) / 2
    brows_y = (mean("left_brow")[1] + mean("right_brow")[1]) / 2
    # top to bottom: brows, eyes, nose tip, mouth, chin
    assert brows_y < eyes_y < p[30, 1] < mean("outer_lip")[1] < p[8, 1]
    assert p[27, 1] < p[28, 1] < p[29, 1] < p[30, 1]  # nose bridge runs down
    assert p[8, 1] == pytest.approx(p[IBUG68_PARTS["jaw"], 1].max(), abs=3.0)  # chin lowest
    # image left to right
    jaw = p[IBUG68_PARTS["jaw"]]
    assert np.all(np.diff(jaw[[0, 4, 8, 12, 16], 0]) > 0)
    assert np.all(np.diff(jaw[:, 0]) > -2.0)  # along the contour, up to pixel noise
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]  # eye corners
    assert p[17, 0] < p[21, 0] < p[22, 0] < p[26, 0]  # brow ends
    assert p[31, 0] < p[33, 0] < p[35, 0]  # nostrils
    assert p[48, 0] < p[51, 0] < p[54, 0] and p[60, 0] < p[64, 0]  # mouth corners
    assert jaw[0, 0] < mean("left_eye")[0] < p[30, 0] < mean("right_eye")[0] < jaw[16, 0]
    # upper lip above lower lip, eyelids: upper above lower
    assert p[51, 1] < p[62, 1] <= p[66, 1] + 1.0 < p[57, 1] + 1.0
    assert p[37, 1] < p[41, 1] and p[44, 1] < p[46, 1]


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_crop_mesh_matches_whole_image_mesh(photo, faces, request):
    """Mesh points mapped back from the per-face crop agree with the mesh run on the
    whole (single-face) photo by MediaPipe itself."""
    import mediapipe as mp

    image = request.getfixturevalue(photo)
    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=True) as mesh:
        res = mesh.process(image)
    ref = np.array([(q.x * w, q.y * h) for q in res.multi_face_landmarks[0].landmark]) - 0.5
    det = faces[photo][0]
    err = np.linalg.norm(det.landmarks - ref, axis=1)
    size = max(det.width, det.height)
    assert np.median(err) < 0.02 * size and err.max() < 0.08 * size


def test_two_pasted_photos_give_two_faces(detector, side_by_side, astronaut):
    dets = detector.detect(side_by_side)
    assert len(dets) == 2
    split = astronaut.shape[1]
    left, right = dets  # sorted left to right
    assert left.landmarks68()[:, 0].max() < split < right.landmarks68()[:, 0].min()
    assert left.box[2] < split < right.box[0]


@pytest.mark.parametrize("fill", [0, 128])
def test_blank_image_gives_no_face(detector, fill):
    assert detector.detect(np.full((240, 320, 3), fill, np.uint8)) == []


def test_grey_and_rgba_inputs_accepted(detector, astronaut):
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], 2)
    assert len(detector.detect(rgba)) == 1
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(astronaut.astype(np.float32) / 255)


def test_mediapipe_prints_nothing(astronaut, capfd):
    with MediaPipeDetector() as det:
        assert len(det.detect(astronaut)) == 1
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_missing_mediapipe_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError, match=r"pip install 'emoca\[detect\]'"):
        create_detector("mediapipe")


@pytest.mark.parametrize("backend, module, hint", [
    ("dlib", "dlib", "pip install dlib-bin face-recognition-models"),
    ("mediapipe+dlib", "dlib", "pip install dlib-bin face-recognition-models"),
    ("fan", "face_alignment", "pip install face-alignment"),
])
def test_optional_backends_give_install_hint(monkeypatch, backend, module, hint):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=hint):
        create_detector(backend)


def test_registry(monkeypatch):
    assert {"mediapipe", "dlib", "fan", "file"} <= set(list_detectors())
    monkeypatch.setattr(detect_base, "_REGISTRY", dict(detect_base._REGISTRY))

    @register_detector("Constant")
    class Constant(FaceDetector):
        def __init__(self, box=(0, 0, 1, 1)):
            self.box = box

        def detect(self, image, *, name=None):
            return [Detection(box=np.array(self.box), score=1.0)]

    det = create_detector("constant", box=(1, 2, 3, 4))
    assert isinstance(det, Constant) and det.name == "constant"
    assert det(np.zeros((4, 4, 3), np.uint8))[0].box.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="already registered"):
        register_detector("constant")(lambda: None)
    with pytest.raises(ValueError, match="mediapipe"):
        create_detector("no-such-detector")


def test_detection_validates():
    with pytest.raises(ValueError, match="68 points"):
        Detection(box=np.array([0, 0, 1, 1]), score=1, landmarks=np.zeros((5, 2)),
                  landmarks_kind="ibug68")
    with pytest.raises(ValueError, match="x1 >= x0"):
        Detection(box=np.array([5, 0, 1, 1]), score=1)
    d = Detection(box=[0, 0, 2, 4], score=0.5)
    assert d.landmarks68() is None and d.center.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        d.box[0] = 3.0  # read-only


def test_points68_are_validated_and_preferred():
    mp = np.random.default_rng(0).uniform(0, 100, (478, 2))
    d = Detection(box=[0, 0, 100, 100], score=1, landmarks=mp, landmarks_kind="mediapipe478")
    np.testing.assert_allclose(d.landmarks68(), mediapipe_to_ibug68(mp))
    second = np.arange(136, dtype=float).reshape(68, 2)
    d2 = Detection(box=[0, 0, 100, 100], score=1, landmarks=mp, landmarks_kind="mediapipe478",
                   points68=second)
    np.testing.assert_array_equal(d2.landmarks68(), second)
    np.testing.assert_array_equal(d2.landmarks, mp)  # the dense points stay
    with pytest.raises(ValueError, match="points68"):
        Detection(box=[0, 0, 1, 1], score=1, points68=np.zeros((5, 2)))


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_dlib_in_mediapipe_box_matches_dlib_own_detector(photo, request):
    """dlib's predictor in the box made from MediaPipe's points gives what it gives in dlib's
    own HOG box (the box the predictor was trained with; a second, independent start)."""
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from emoca.detect.dlib_backend import dlib_box

    image = request.getfixturevalue(photo)
    with create_detector("dlib") as own:
        ref = own(image)
    with create_detector("mediapipe+dlib") as both:
        got = both(image)
    assert len(got) == 1 and got[0].landmarks_kind == "mediapipe478"
    pts = got[0].landmarks68()
    truth = min((d.landmarks68() for d in ref),
                key=lambda p: float(np.linalg.norm(p.mean(0) - pts.mean(0))))
    iod = np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0))
    err = np.linalg.norm(pts - truth, axis=1).mean() / iod
    assert err < 0.03, err
    # and the box rule reproduces the HOG box from dlib's own points
    hog = min(ref, key=lambda d: float(np.linalg.norm(d.center - pts.mean(0))))
    assert _iou(dlib_box(truth), hog.box) > 0.8


def test_mediapipe_to_ibug68_means_pairs_numpy_and_torch():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(2, 478, 3))
    out = mediapipe_to_ibug68(pts)
    assert out.shape == (2, 68, 3)
    for i, (a, b) in enumerate(MEDIAPIPE_TO_IBUG68):
        np.testing.assert_allclose(out[:, i], (pts[:, a] + pts[:, b]) / 2)
    np.testing.assert_allclose(mediapipe_to_ibug68(torch.from_numpy(pts)).numpy(), out)
    assert np.all(MEDIAPIPE_TO_IBUG68 < 468)  # iris points are not used
    with pytest.raises(ValueError):
        mediapipe_to_ibug68(np.zeros((68, 2)))


# --------------------------------------------------------------------------- crop geometry


def _deca_tform(left, right, top, bottom, kind, crop=224):
    """DECA's TestData recipe, written out independently, with skimage's estimator."""
    if kind == "kpt68":
        old = (right - left + bottom - top) / 2 * 1.1
        center = np.array([right - (right - left) / 2, bottom - (bottom - top) / 2])
    else:
        old = (right - left + bottom - top) / 2
        center = np.array([right - (right - left) / 2,
                           bottom - (bottom - top) / 2 + old * 0.12])
    size = int(old * 1.25)
    src = np.array([[center[0] - size / 2, center[1] - size / 2],
                    [center[0] - size / 2, center[1] + size / 2],
                    [center[0] + size / 2, center[1] - size / 2]])
    dst = np.array([[0, 0], [0, crop - 1], [crop - 1, 0]])
    return estimate_transform("similarity", src, dst)


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_crop_transform_matches_deca_and_skimage(photo, faces, request):
    image = request.getfixturevalue(photo)
    det = faces[photo][0]
    lmk = det.landmarks68()
    t = crop_transform_for_detection(det)
    ref = _deca_tform(lmk[:, 0].min(), lmk[:, 0].max(), lmk[:, 1].min(), lmk[:, 1].max(),
                      "kpt68")
    np.testing.assert_allclose(t.image_to_crop, ref.params, atol=1e-9)

    in_crop = t.to_crop(lmk)
    assert np.all(in_crop >= 0) and np.all(in_crop <= 224)
    # 1.1 * 1.25 enlargement: the landmarks' mean side fills 1/1.375 of the crop
    # (up to DECA's int() of the size), centred
    assert np.ptp(in_crop, axis=0).mean() / 223 == pytest.approx(1 / 1.375, rel=0.01)
    mid = (in_crop.min(0) + in_crop.max(0)) / 2
    np.testing.assert_allclose(mid, [111.5, 111.5], atol=0.5)
    np.testing.assert_allclose(t.to_image(in_crop), lmk, atol=1e-4)
    lt = torch.tensor(lmk, dtype=torch.float64)
    np.testing.assert_allclose(t.to_image(t.to_crop(lt)).numpy(), lmk, atol=1e-4)
    np.testing.assert_allclose(ref(lmk), in_crop, atol=1e-6)  # skimage maps points alike

    crop = warp_crop(image, t)
    assert crop.shape == (3, 224, 224) and crop.dtype == torch.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0
    expected = warp(image / 255.0, ref.inverse, output_shape=(224, 224))
    diff = np.abs(crop.numpy().transpose(1, 2, 0) - expected)
    assert diff.mean() < 1e-4 and diff.max() < 1e-3


def test_warp_crop_off_image_batched_and_tensor_input(astronaut):
    # A square hanging off the top-left corner: zeros outside, as skimage's constant mode.
    squares = [((40.3, 20.7), 300.0), ((400.5, 300.25), 81.0)]
    ts = [CropTransform.from_square(c, s, crop_size=64) for c, s in squares]
    batch = warp_crop(astronaut, ts)
    assert batch.shape == (2, 3, 64, 64)
    for t, crop in zip(ts, batch, strict=True):
        src = np.array([[0, 0], [0, 63], [63, 0]], float)
        tf = estimate_transform("similarity", t.to_image(src), src)
        expected = warp(astronaut / 255.0, tf.inverse, output_shape=(64, 64))
        assert np.abs(crop.numpy().transpose(1, 2, 0) - expected).max() < 1e-3
    assert float(batch[0, :, :5, :5].abs().max()) == 0.0
    # Tensor input (3, H, W) float64 keeps its dtype; uint8 tensors are scaled.
    img_t = torch.from_numpy(astronaut.transpose(2, 0, 1).copy())
    out64 = warp_crop(img_t.double() / 255, ts[1])
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), batch[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(warp_crop(img_t, ts[1]), batch[1], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="2 images but 1"):
        warp_crop(torch.zeros(2, 3, 8, 8), [ts[0]])
    # entirely off the image: zeros; another output size resamples the same square
    off = CropTransform.from_square((-500.0, -500.0), 100.0)
    assert float(warp_crop(astronaut, off).abs().max()) == 0.0
    half = warp_crop(astronaut, CropTransform.from_square((250.5, 140.0), 171.0), size=112)
    direct = warp_crop(astronaut, CropTransform.from_square((250.5, 140.0), 171.0, 112))
    torch.testing.assert_close(half, direct, atol=1e-4, rtol=0)


def test_bbox_rule_is_decas():
    box = [100.0, 50.0, 200.0, 170.0]  # w 100, h 120
    old, center = bbox2point(100, 200, 50, 170, "bbox")
    assert old == pytest.approx(110.0) and center == pytest.approx([150.0, 110.0 + 13.2])
    old68, center68 = bbox2point(100, 200, 50, 170, "kpt68")
    assert old68 == pytest.approx(121.0) and center68 == pytest.approx([150.0, 110.0])
    t = crop_transform_from_box(box)
    assert t.size == pytest.approx(137.0)  # int(110 * 1.25)
    assert t.center == pytest.approx([150.0, 123.2])
    np.testing.assert_allclose(t.image_to_crop, _deca_tform(100, 200, 50, 170, "bbox").params,
                               atol=1e-9)
    # the bbox rule applies when a detection has no 68 landmarks
    det = Detection(box=np.array(box), score=1.0, landmarks=np.zeros((5, 2)))
    np.testing.assert_allclose(crop_transform_for_detection(det).image_to_crop, t.image_to_crop)
    t_float = crop_transform_from_box(box, integer_size=False, crop_size=112)
    assert t_float.size == pytest.approx(137.5) and t_float.crop_size == 112


def test_crops_from_image_two_faces(detector, side_by_side):
    crops = crops_from_image(side_by_side, detector)
    assert len(crops) == 2
    for c in crops:
        assert c.image.shape == (3, 224, 224)
        assert float(c.image.min()) >= 0 and float(c.image.max()) <= 1
        pts = c.transform.to_crop(c.detection.landmarks68())
        assert np.all(pts >= 0) and np.all(pts <= 224)
        # the crop holds a face, not the black padding or the other photo
        assert float(c.image.mean()) > 0.2
    assert crops_from_image(np.zeros((64, 64, 3), np.uint8), detector) == []


# --------------------------------------------------------------------------- file backend


def test_file_backend_json(tmp_path, faces, astronaut):
    lmk68 = faces["astronaut"][0].landmarks68()
    spec = {
        "photos/astronaut.png": [
            {"landmarks": lmk68.tolist()},
            {"box": [10, 20, 110, 140], "score": 0.7},
        ],
        "other.jpg": {"landmarks": [[1, 2], [5, 9], [3, 4]]},
    }
    path = tmp_path / "faces.json"
    path.write_text(json.dumps(spec))
    det = create_detector("file", path=path)
    assert isinstance(det, FileDetector)
    got = det.detect(astronaut, name="/data/run/astronaut.png")  # matched by file name
    assert [g.landmarks_kind for g in got] == ["ibug68", None]
    np.testing.assert_allclose(got[0].box, [*lmk68.min(0), *lmk68.max(0)])
    assert got[1].box.tolist() == [10, 20, 110, 140] and got[1].score == 0.7
    other = det.detect(astronaut, name="other.jpg")[0]
    assert other.landmarks_kind is None and other.box.tolist() == [1, 2, 5, 9]
    assert det.detect(astronaut, name="missing.jpg") == []
    with pytest.raises(ValueError, match="name"):
        det.detect(astronaut)
    # user landmarks give the same crop as the detector's own
    crop = crops_from_image(astronaut, det, name="photos/astronaut.png")[0]
    np.testing.assert_allclose(crop.transform.image_to_crop,
                               crop_transform_for_detection(faces["astronaut"][0]).image_to_crop)


def test_file_backend_csv(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,x0,y0,x1,y1,score\n"
                    "a.jpg,1,2,30,40,0.9\n"
                    "b.jpg, 5.5, 6, 50, 60.25\n"
                    "a.jpg,100,2,130,40,0.8\n")
    det = FileDetector(path)
    a = det.detect(None, name="a.jpg")
    assert [d.box.tolist() for d in a] == [[1, 2, 30, 40], [100, 2, 130, 40]]
    assert [d.score for d in a] == [0.9, 0.8] and a[0].landmarks is None
    assert det.detect(None, name="dir/b.jpg")[0].box.tolist() == [5.5, 6, 50, 60.25]
    bad = tmp_path / "bad.csv"
    bad.write_text("a.jpg,1,2,3\n")
    with pytest.raises(ValueError, match="image,x0,y0,x1,y1"):
        FileDetector(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"a.jpg": [{"score": 1}]}))
    with pytest.raises(ValueError, match="'box' and/or 'landmarks'"):
        FileDetector(bad_json)
