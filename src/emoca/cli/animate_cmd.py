"""``emoca animate``: a captured performance (a video track of ``emoca reconstruct`` or
``emoca fit``, or face folders as a sequence) -> ``OUT/animation.glb`` + ``animation.json``.
Parse -> :func:`emoca.animation.export.animate` -> print."""

from __future__ import annotations

import argparse

from emoca.cli.common import positive_float

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="TRACK",
                   help="a track folder (out/NAME/track_T of reconstruct or fit), or several "
                        "face folders (out/NAME/face_K) played in the order given")
    p.add_argument("-o", "--out", required=True, help="output folder (animation.glb, "
                   "animation.json; live_link.csv and curves.csv with ARKit weights)")
    p.add_argument("--assets", help="assets folder with your FLAME files (FLAME tracks)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (default: the packaged copy)")
    p.add_argument("--identity", metavar="FACE|neutral",
                   help="drive another face with the performance: 'neutral' (the model's "
                        "mean head) or a face/track folder of the same face model (run "
                        "reconstruct/fit on a photo first to use its face)")
    p.add_argument("--arkit-curves", action="store_true",
                   help="FLAME tracks: also write live_link.csv/curves.csv, retargeted to "
                        "ARKit-52 (the map is built once and cached in <assets>/retarget/)")
    p.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate for face folders without frame times (default 30)")


def run(args: argparse.Namespace) -> int:
    from emoca.animation.export import animate

    res = animate(args.inputs, args.out, assets=args.assets, ict_dir=args.ict_dir,
                  fps=args.fps, identity=args.identity,
                  arkit_curves=args.arkit_curves)
    r = res.record
    print(f"{r['model']} animation: {r['frames']} frames at {r['fps']:g} fps "
          f"({r['duration_s']:.2f} s), {len(r['morph_targets'])} morph targets, "
          f"{len(r['joints'])} joints -> {res.out_dir / r['glb']}")
    return 0
