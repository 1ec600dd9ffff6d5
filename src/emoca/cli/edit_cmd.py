"""``emoca edit``: move a performance's expression toward an emotion, keeping identity, head
pose and mouth timing. Parse -> :func:`emoca.animation.edit_run.edit` -> print."""

from __future__ import annotations

import argparse

from emoca.cli.animate_cmd import positive_float

__all__ = ["add_arguments", "run"]

EMOTIONS = ("happy", "sad", "surprise", "fear", "angry", "disgust", "neutral")


def _strength(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="TRACK",
                   help="a track folder (reconstruct/fit), or face folders as a sequence")
    p.add_argument("--emotion", required=True, choices=EMOTIONS, help="target emotion")
    p.add_argument("--strength", type=_strength, default=0.7,
                   help="how far toward the emotion's prototype, 0..1 (default 0.7)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--assets", help="assets folder with your FLAME files (FLAME tracks)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (default: the packaged copy)")
    p.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate for face folders without frame times (default 30)")


def run(args: argparse.Namespace) -> int:
    from emoca.animation.edit_run import edit

    r = edit(args.inputs, args.out, args.emotion, strength=args.strength, assets=args.assets,
             ict_dir=args.ict_dir, fps=args.fps)
    lip = r["lip_distance_correlation"]
    print(f"{r['frames']} frames toward {r['emotion']} x {r['strength']:g}: P({r['emotion']}) "
          f"on renders {r['target_prob_before']:.3f} -> {r['target_prob_after']:.3f}; "
          f"lip-distance correlation {'n/a' if lip is None else f'{lip:.3f}'} -> {args.out}")
    return 0
