"""Open fitting cost: seconds per image and the cost of each loss term per iteration.

Fits ICT-FaceKit to the astronaut and Grace Hopper photos (detection excluded) with the
current FitConfig (dense MediaPipe points), with the 68 points only, without the sparsity
passes (``plain prior``) and with the previous
defaults (``--no-compare`` skips those), then times
the pieces of one appearance-stage iteration separately. Both wall and process CPU seconds
are printed: on a shared machine the CPU seconds and the ratio between the two configs,
measured in the same run, are the figures to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table, timeit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ict-dir", default=None, help="default: the packaged ICT-FaceKit copy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-compare", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    from emoca.detect import create_detector
    from emoca.detect.crop import crops_from_image
    from emoca.face_model.ict import ICTFaceModel
    from emoca.model.fitting import FitConfig, Fitter, orthographic_project
    from emoca.nets.fer_xception import FerXception

    ict = ICTFaceModel.default(args.ict_dir)
    fer = FerXception.from_hdf5()
    det = create_detector("mediapipe")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        grace = np.asarray(im.convert("RGB"))
    fitter = Fitter(ict, fer)
    configs = [("current", fitter)]
    if not args.no_compare:
        # the 68 points alone (MediaPipe's converted, no dense embedding), and the defaults
        # before the speed and colour work
        configs.append(("68 only", Fitter(ict, fer, FitConfig(w_dense=0.0))))
        # without the reweighted sparsity passes (emoca.model.fit_sparsity): their cost
        configs.append(("plain prior", Fitter(ict, fer, FitConfig(sparsity_passes=0))))
        previous = FitConfig(render_size=112, steps_appearance=30, lm_tol=0.0,
                             grey_light=False, w_albedo_prior=0.0, w_dense=0.0)
        configs.append(("previous", Fitter(ict, fer, previous,
                                           skin_vertices=torch.arange(ict.num_vertices))))
    rows = []
    ratios = []
    for name, img in (("astronaut", skimage.data.astronaut()), ("grace_hopper", grace)):
        c = crops_from_image(img, det)[0]
        lmk = torch.as_tensor(c.transform.to_crop(c.detection.landmarks68()),
                              dtype=torch.float32)[None]
        mp = torch.as_tensor(c.transform.to_crop(c.detection.landmarks), dtype=torch.float32)[None]
        t_det = timeit(lambda img=img: crops_from_image(img, det), repeat=args.repeat)
        cpu = {}
        for label, ftr in configs:
            stage_t: dict[str, float] = {}
            last = [0.0]

            def cb(stage: str, it: int, _: dict, stage_t=stage_t, last=last) -> None:
                now = time.perf_counter()
                stage_t[stage] = stage_t.get(stage, 0.0) + now - last[0]
                last[0] = now

            ftr.fit(c.image[None], lmk, mediapipe=mp)  # warm-up (first-call costs)
            times, cpus = [], []
            for _ in range(args.repeat):
                stage_t.clear()
                t0, c0 = time.perf_counter(), time.process_time()
                last[0] = t0
                res = ftr.fit(c.image[None], lmk, mediapipe=mp, callback=cb)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            total = float(np.median(times))
            cpu[label] = float(np.median(cpus))
            rows.append([name, label, f"{t_det * 1e3:.0f}", f"{total:.2f}", f"{cpu[label]:.2f}",
                         f"{float(res.landmark_error):.4f}"])
        if "68 only" in cpu:
            ratios.append((cpu["68 only"] / cpu["current"],
                           cpu["current"] / cpu["plain prior"]))
    print_table("Fit per image (ICT-FaceKit)",
                ["photo", "config", "detect+crop ms", "fit wall s", "fit CPU s",
                 "landmark err / IOD"], rows)
    if ratios:
        print("CPU-time speed-up current vs 68 only: "
              + ", ".join(f"{r:.2f}x" for r, _ in ratios))
        print("CPU-time cost of the sparsity passes (current / plain prior): "
              + ", ".join(f"{r:.2f}x" for _, r in ratios))

    # one appearance iteration, piece by piece
    b = 1
    small = torch.rand(b, 3, fitter.cfg.render_size, fitter.cfg.render_size)
    free = fitter.adapter.init(b, torch.device("cpu"))
    cam = torch.tensor([[0.09, 0.0, 1.0]])
    light = torch.zeros(b, 9, 3)
    light[:, 0] = 3.0
    albedo = torch.full((b, 3), 0.6)
    free["expression"].requires_grad_(True)

    def geometry():
        return ict(**fitter.adapter.model_params(free)).vertices

    def render():
        return fitter._render(free, cam, light, albedo, small)

    def photometric_step():
        _, images, _, skin = render()
        ((images - small).abs() * skin).sum().backward()

    def emotion_step():
        _, images, _, _ = render()
        fer(images).feature.sum().backward()

    def landmarks_only():
        orthographic_project(fitter.adapter.landmarks(free), cam).sum().backward()

    parts = [("ICT mesh forward", geometry), ("landmarks (68-vertex path) fwd+bwd", landmarks_only),
             (f"render {fitter.cfg.render_size} (raster+shade) forward", render),
             ("photometric term fwd+bwd (incl. render)", photometric_step),
             ("emotion term fwd+bwd (incl. render)", emotion_step)]
    rows = [[n, f"{timeit(fn, repeat=5) * 1e3:.1f}"] for n, fn in parts]
    print_table("One appearance-stage iteration, by term", ["piece", "ms"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
