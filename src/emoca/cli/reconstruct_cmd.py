"""``emoca reconstruct``: EMOCA on photos, folders, globs and videos.

Example::

    emoca reconstruct photos/ clip.mp4 -o out --save mesh,codes,renders
    emoca reconstruct clip.mp4 -o out --smooth --min-cutoff 1.0 --beta 0.5

The output layout is documented in :mod:`emoca.pipeline.reconstruct`. Exit status 1 when
any input failed (unreadable, not an image, a network or writing error); inputs without a
face are listed in the summary but are not failures.
"""

from __future__ import annotations

import argparse
import os

from emoca.model.emoca_model import DECA_NAME, DEFAULT_MODEL, EMOCA_MODELS

__all__ = ["add_arguments", "run"]

SAVE_HELP = ("comma list of mesh, codes, renders, landmarks, video (default: all but video "
             "for images; mesh, codes, landmarks, video for videos)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image or video files, folders (recursive), globs")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"{', '.join(EMOCA_MODELS + (DECA_NAME,))} or a model folder/file "
                        f"(default {DEFAULT_MODEL})")
    p.add_argument("--assets", help="assets folder (default $EMOCA_HOME or ~/.cache/emoca)")
    p.add_argument("--mode", choices=["coarse", "detail"], default="detail",
                   help="detail: also the detail code, displacement, detail renders and the "
                        "dense mesh (default)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--batch-size", type=int, default=8, help="face crops per network pass")
    p.add_argument("--save", default=None, help=SAVE_HELP)
    p.add_argument("--detector", default="mediapipe",
                   help="face detector: mediapipe (default), dlib, fan, file (with --faces)")
    p.add_argument("--faces", help="JSON/CSV of face boxes or landmarks (--detector file); "
                   "keys are image file names, '<video file name>#<frame index>' for videos")
    p.add_argument("--emotion", default="auto",
                   help="auto (an EmoDECA head from the assets, if any), none, image (the "
                        "image-based ResNet-50) or an EmoDECA folder")
    p.add_argument("--texture", choices=["photo", "albedo"], default="photo",
                   help="mesh texture: photo colours in the face (DECA's extracted texture) "
                        "or the model's albedo")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip faces and videos whose files are all there (default: on)")
    v = p.add_argument_group("video")
    v.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=False,
                   help="One Euro filter on each track's codes (default: off)")
    v.add_argument("--min-cutoff", type=float, default=1.0,
                   help="One Euro cutoff in Hz at rest (lower = smoother)")
    v.add_argument("--beta", type=float, default=0.5,
                   help="One Euro speed coefficient (higher = less lag)")
    v.add_argument("--d-cutoff", type=float, default=1.0, help="One Euro speed cutoff, Hz")
    v.add_argument("--overlay", choices=["beside", "over"], default="beside",
                   help="overlay video: input | geometry, or the geometry over the input")
    v.add_argument("--max-missed", type=int, default=5,
                   help="frames a face may go undetected before its track ends")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _detector(args: argparse.Namespace):
    from emoca.detect import create_detector

    if args.detector == "file" or args.faces:
        if not args.faces:
            raise ValueError("--detector file needs --faces FILE")
        return create_detector("file", path=args.faces)
    return create_detector(args.detector)


def _print_summary(summary, out: str) -> None:
    print(f"faces written: {len(summary.written)}  skipped (done before): "
          f"{len(summary.skipped)}  inputs without a face: {len(summary.no_face)}  "
          f"failed: {len(summary.failed)}")
    for path in summary.no_face:
        print(f"  no face: {path}")
    for path, problems in summary.problems.items():
        for problem in problems:
            print(f"  problem: {path}: {problem}")
    for path, why in summary.failed.items():
        print(f"  FAILED: {path}: {why}")
    if summary.seconds:
        print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.seconds.items()))
    print(f"results in {out}{os.sep} (summary.json)")


def run(args: argparse.Namespace) -> int:
    import torch

    from emoca.assets.locate import Assets
    from emoca.pipeline.reconstruct import (
        Reconstructor,
        SmoothingOptions,
        load_emotion_head,
        parse_save,
        reconstruct_inputs,
    )

    save = parse_save(args.save)
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    device = torch.device(args.device)
    assets = Assets(args.assets)
    from emoca.model.emoca_model import Emoca

    model = Emoca.from_pretrained(args.model, assets=assets, device=device)
    head = load_emotion_head(args.emotion, assets, model.config.name, device=device)
    smoothing = SmoothingOptions(args.min_cutoff, args.beta, args.d_cutoff) \
        if args.smooth else None
    detector = _detector(args)
    rec = Reconstructor(model, detector, head, mode=args.mode, batch_size=args.batch_size)
    try:
        summary = reconstruct_inputs(args.inputs, args.out, rec, save=save,
                                     resume=args.resume, texture=args.texture,
                                     smoothing=smoothing, overlay=args.overlay,
                                     max_missed=args.max_missed,
                                     progress=not args.no_progress)
    finally:
        detector.close()
    _print_summary(summary, args.out)
    return 0 if summary.ok else 1
