"""``emoca retarget``: FLAME performance -> ARKit-52 curves (``--to arkit``), or ARKit
(ICT-FaceKit fit) performance -> FLAME codes (``--to flame``). Parse ->
:func:`emoca.animation.retarget_run.retarget` -> print."""

from __future__ import annotations

import argparse

from emoca.cli.common import positive_float

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="TRACK",
                   help="a track folder (reconstruct/fit), or face folders as a sequence")
    p.add_argument("--to", required=True, choices=["arkit", "flame"],
                   help="arkit: ARKit curves from a FLAME capture; flame: FLAME codes from "
                        "ARKit weights (an ICT-FaceKit fit)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--assets", help="assets folder with your FLAME files; the map is cached "
                   "in <assets>/retarget/")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (default: the packaged copy)")
    p.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate for face folders without frame times (default 30)")


def run(args: argparse.Namespace) -> int:
    from emoca.animation.retarget_run import retarget

    rec = retarget(args.inputs, args.out, args.to, assets=args.assets, ict_dir=args.ict_dir,
                   fps=args.fps)
    m = rec["map"]
    print(f"retargeted {rec['frames']} frames to {args.to} -> {args.out} (map "
          f"{'built' if m['built_now'] else 'cached'}: {m['cache']})")
    if "residual_rms_m" in rec:
        r = rec["residual_rms_m"]
        print(f"  FLAME vertices not explained by ARKit weights: RMS {r['mean'] * 1000:.2f} mm "
              f"mean, {r['max'] * 1000:.2f} mm worst frame")
    return 0
