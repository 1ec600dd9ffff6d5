"""Worked example of the animation commands on a short clip made from a photo with known
motion (no public face video ships in a package): photo -> clip -> ``emoca fit`` track ->
``emoca animate`` GLB -> ``emoca retarget --to flame`` (look-alike FLAME unless
``--assets``) -> ``emoca edit --emotion sad`` (the astronaut smiles already). Prints what
each step measured.

    .venv/bin/python examples/animation_worked_example.py --out example_out
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def make_clip(path: Path, frames: int, fps: float) -> np.ndarray:
    """skimage's astronaut, rolled by a known angle per frame (degrees, returned)."""
    import skimage.data

    from emoca.io.video_write import VideoWriter

    img = Image.fromarray(skimage.data.astronaut()).crop((96, 0, 352, 256))
    roll = 10.0 * np.sin(np.linspace(0, 2 * np.pi, frames, endpoint=False))
    with VideoWriter(path, fps, (256, 256)) as w:
        for a in roll:
            w.write(np.asarray(img.rotate(float(a), resample=Image.BICUBIC,
                                          fillcolor=(128, 128, 128))))
    return roll


def emoca(*args: str) -> None:
    cmd = [sys.executable, "-m", "emoca.cli.main", *args]
    print("$ emoca " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="example_out")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--assets", help="your assets folder (FLAME); default: look-alike files")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    roll = make_clip(out / "clip.mp4", args.frames, args.fps)
    emoca("fit", str(out / "clip.mp4"), "-o", str(out / "fit"), "--no-progress")
    track = out / "fit" / "clip" / "track_0"
    with np.load(track / "params.npz") as z:
        rot = z["rotation"]
    import torch

    from emoca.animation.curves import yaw_pitch_roll
    from emoca.geometry import axis_angle_to_matrix

    fitted_roll = np.degrees(yaw_pitch_roll(axis_angle_to_matrix(torch.as_tensor(rot)
                                                                 .double()).numpy())[:, 2])
    r = np.corrcoef(fitted_roll, roll)[0, 1]
    print(f"known roll vs fitted head roll: r = {r:.3f} (image rotation is the opposite "
          f"sign of head roll in y-up model space); fitted range {fitted_roll.min():.1f}.."
          f"{fitted_roll.max():.1f} deg, known {roll.min():.1f}..{roll.max():.1f}")
    emoca("animate", str(track), "-o", str(out / "anim"))
    assets = args.assets
    if assets is None:
        assets = str(out / "lookalike_assets")
        emoca("assets", "synthetic", assets)
    emoca("retarget", str(track), "--to", "flame", "-o", str(out / "flame"), "--assets", assets)
    emoca("edit", str(track), "--emotion", "sad", "-o", str(out / "sad"))
    rec = json.loads((out / "sad" / "edit.json").read_text())
    print(json.dumps({k: rec[k] for k in ("target_prob_before", "target_prob_after",
                                          "frames_target_top_before",
                                          "frames_target_top_after",
                                          "lip_distance_correlation")}, indent=1))


if __name__ == "__main__":
    main()
