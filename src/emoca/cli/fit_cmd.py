"""``emoca fit``: fit the open ICT-FaceKit model (or FLAME) to every face in photos and
videos. Parse -> :func:`emoca.pipeline.fit.fit_inputs` -> print."""

from __future__ import annotations

import argparse

from emoca.cli.common import positive_int, print_summary

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image or video files, folders or globs")
    p.add_argument("-o", "--out", required=True, help="output folder")
    from emoca.face_model.registry import FACE_MODELS  # a plain table: no torch import

    p.add_argument("--face-model", choices=list(FACE_MODELS), default="ict",
                   help="; ".join(f"{k}: {e.description}" for k, e in FACE_MODELS.items()))
    p.add_argument("--assets", help="assets folder (FLAME files; ICT-FaceKit/ inside it)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (npz or the repository's FaceXModel)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--no-emotion", action="store_true",
                   help="no emotion consistency term (and no emotion read-out)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="landmark-stage iterations (default from FitConfig)")
    p.add_argument("--landmarks", choices=("auto", "dense", "68", "dense+dlib"),
                   default="dense",
                   help="dense (default): follow MediaPipe's points through the model's "
                        "dense embedding (ICT-FaceKit); 68: only the 68 points converted "
                        "from them; "
                        "dense+dlib: MediaPipe's points and dlib's 68 (emoca[dlib]: its model "
                        "is for non-commercial use), the jaw on the face's outline: better "
                        "68 points, worse ARKit weights (README); auto: dense+dlib when "
                        "dlib is installed, else dense")
    p.add_argument("--no-resume", action="store_true", help="redo faces already finished")
    p.add_argument("--detector", default="mediapipe", help="face detector backend")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="photo faces fitted together")
    p.add_argument("--chunk", type=positive_int, default=32,
                   help="video: frames fitted together (one identity per chunk)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from emoca.pipeline.fit import fit_inputs

    summary = fit_inputs(args.inputs, args.out, face_model=args.face_model,
                         assets=args.assets, ict_dir=args.ict_dir, device=args.device,
                         emotion=not args.no_emotion, steps=args.steps,
                         landmarks=args.landmarks,
                         detector=args.detector, batch_size=args.batch_size, chunk=args.chunk,
                         resume=not args.no_resume, progress=not args.no_progress)
    print_summary(summary, args.out)
    return 0 if summary.ok else 1
