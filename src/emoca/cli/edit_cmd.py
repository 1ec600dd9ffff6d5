"""``emoca edit``: move a performance's expression toward an emotion, keeping identity, head
pose and mouth timing. Parse -> :func:`emoca.animation.edit_run.edit` -> print."""

from __future__ import annotations

import argparse

from emoca.cli.common import positive_float

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
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--emotion", choices=EMOTIONS, help="target emotion")
    g.add_argument("--valence", type=float, help="target valence in [-1, 1] (with --arousal; "
                   "picks a blend of the emotion prototypes near it on the circumplex)")
    p.add_argument("--arousal", type=float, help="target arousal in [-1, 1] (with --valence)")
    p.add_argument("--strength", type=_strength, default=0.7,
                   help="how far toward the emotion's prototype, 0..1 (default 0.7)")
    p.add_argument("--refine-steps", type=int, default=10,
                   help="gradient steps per frame on the image emotion network's renders "
                        "after the prototype edit (0: prototype only; default 10)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--assets", help="assets folder with your FLAME files (FLAME tracks)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (default: the packaged copy)")
    p.add_argument("--fps", type=positive_float, default=30.0,
                   help="frame rate for face folders without frame times (default 30)")


def run(args: argparse.Namespace) -> int:
    from emoca.animation.edit_run import edit
    from emoca.errors import UsageError

    if (args.valence is None) != (args.arousal is None):
        raise UsageError("--valence and --arousal go together")
    if args.refine_steps < 0:
        raise UsageError(f"--refine-steps must be at least 0, got {args.refine_steps}")
    r = edit(args.inputs, args.out, args.emotion, strength=args.strength,
             valence=args.valence, arousal=args.arousal, assets=args.assets,
             ict_dir=args.ict_dir, fps=args.fps, refine_steps=args.refine_steps)
    lip = r["lip_distance_correlation"]
    lip_text = "n/a" if lip is None else f"{lip:.3f}"
    if r["emotion"]:
        emo = (f"P({r['emotion']}) on renders {r['target_prob_before']:.3f} -> "
               f"{r['target_prob_after']:.3f}")
    else:
        before = dict(zip(r["emotion_classes"], r["mean_probs_before"], strict=True))
        after = dict(zip(r["emotion_classes"], r["mean_probs_after"], strict=True))
        emo = "FER on renders " + ", ".join(f"{k} {before[k]:.2f}->{after[k]:.2f}"
                                             for k in r["emotion_classes"])
    print(f"{r['frames']} frames edited x {r['strength']:g}: {emo}; lip-distance correlation "
          f"{lip_text} -> {args.out}")
    return 0
