"""``emoca fit``: fit the open ICT-FaceKit model (or FLAME) to every face in photos."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image or video files, folders or globs")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--face-model", choices=["ict", "flame"], default="ict")
    p.add_argument("--assets", help="assets folder (FLAME files; ICT-FaceKit/ inside it)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (npz or the repository's FaceXModel)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-emotion", action="store_true",
                   help="no emotion consistency term (and no emotion read-out)")
    p.add_argument("--steps", type=int, default=None,
                   help="landmark-stage iterations (default from FitConfig)")
    p.add_argument("--no-resume", action="store_true", help="redo faces already finished")
    p.add_argument("--detector", default="mediapipe", help="face detector backend")
    p.add_argument("--chunk", type=int, default=32,
                   help="video: frames fitted together (one identity per chunk)")


def find_ict_dir(explicit: str | None, assets_root: str | None) -> Path:
    """An explicit folder, else ``<assets>/ICT-FaceKit``, else the copy in the package."""
    from emoca.assets.ict_facekit import ict_model_dir

    return ict_model_dir(explicit, assets_root)


def build_face_model(kind: str, args: argparse.Namespace):
    if kind == "ict":
        from emoca.face_model.ict import ICTFaceModel

        return ICTFaceModel.from_dir(find_ict_dir(args.ict_dir, args.assets))
    from emoca.assets.locate import Assets
    from emoca.face_model.flame import FLAME

    a = Assets(args.assets)
    return FLAME.from_file(a.path("flame_model"), a.path("landmark_embedding"),
                           template_obj=a.path("head_template"))


def run(args: argparse.Namespace) -> int:
    import torch

    from emoca.detect import create_detector
    from emoca.io.images import scan_inputs
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.pipeline.fit_images import fit_images

    device = torch.device(args.device)
    model = build_face_model(args.face_model, args).to(device)
    emotion = None
    if not args.no_emotion:
        from emoca.nets.fer_xception import FerXception

        emotion = FerXception.from_hdf5().to(device)
    cfg = FitConfig(w_emotion=0.0) if args.no_emotion else FitConfig()
    if args.steps is not None:
        cfg = cfg.replace(steps_landmarks=args.steps)
    fitter = Fitter(model, emotion, cfg)
    fitter.renderer.to(device)
    scan = scan_inputs(args.inputs)
    paths = [p for kind, p in scan.items if kind == "image"]
    videos = [p for kind, p in scan.items if kind == "video"]
    summary = fit_images(paths, args.out, fitter, create_detector(args.detector),
                         resume=not args.no_resume, emotion_net=emotion)
    for arg in scan.missing:
        summary.failed[arg] = "no such file, folder or matching glob"
    for p in scan.unknown:
        summary.failed[str(p)] = "not an image (unknown extension)"
    if videos:
        from emoca.pipeline.fit_video import fit_video

        for p in videos:
            try:
                res = fit_video(p, args.out, fitter, create_detector(args.detector),
                                chunk=args.chunk)
                summary.faces += list(res.tracks.values())
            except Exception as e:  # one broken video must not end the batch
                summary.failed[str(p)] = f"video: {e}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.json", "w") as f:
        json.dump(summary.to_json(), f, indent=1)
    print(f"faces fitted: {len(summary.faces)}  skipped (done before): {len(summary.skipped)}"
          f"  images without a face: {len(summary.no_face)}  failed: {len(summary.failed)}")
    for path, why in summary.failed.items():
        print(f"  failed: {path}: {why}")
    for d in summary.faces:
        print(f"  {d}{os.sep}")
    return 1 if summary.failed else 0
