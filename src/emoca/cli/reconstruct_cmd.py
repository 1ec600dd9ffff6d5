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

from emoca.cli.common import positive_int, print_summary
from emoca.model.catalog import DEFAULT_MODEL, reconstruction_models

__all__ = ["add_arguments", "run"]

SAVE_HELP = ("comma list of mesh, codes, renders, landmarks, video (default: all but video "
             "for images; mesh, codes, landmarks, video for videos)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image or video files, folders (recursive), globs")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"{', '.join(reconstruction_models())} or a model folder/file "
                        f"(default {DEFAULT_MODEL})")
    p.add_argument("--assets", help="assets folder (default $EMOCA_HOME or ~/.cache/emoca)")
    p.add_argument("--mode", choices=["coarse", "detail"], default="detail",
                   help="detail: also the detail code, displacement, detail renders and the "
                        "dense mesh (default)")
    p.add_argument("--device", default=None,
                   help="torch device (cpu, cuda, cuda:1, mps; default cpu, and with "
                        "--engine ray: one GPU per actor when the cluster has GPUs)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="face crops per network pass")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="encoders under autocast (bf16/fp16: faster on GPUs, codes move by "
                        "~0.5%% (bf16) / ~0.05%% (fp16); FLAME and renders stay fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="encoders in NHWC memory order (faster convolutions on GPUs)")
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
    v.add_argument("--max-missed", type=int, default=5, choices=range(0, 10_000),
                   metavar="N",
                   help="frames a face may go undetected before its track ends")
    b = p.add_argument_group("datasets")
    b.add_argument("--shard", metavar="I/N",
                   help="process only shard I of N (0-based; a deterministic split by path "
                        "relative to the inputs' common folder), e.g. "
                        "--shard $SLURM_ARRAY_TASK_ID/128; then `emoca merge-shards OUT`")
    b.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: a Ray Data pipeline writing "
                        "Parquet shards of codes to OUT/table/ (pip install 'emoca[ray]')")
    b.add_argument("--address", help="Ray cluster address (default: start a local one, or "
                   "$RAY_ADDRESS)")
    b.add_argument("--workers", type=positive_int, default=None,
                   help="Ray: network actors (default: one per GPU, else CPU count / 2)")
    b.add_argument("--inputs-per-shard", type=positive_int, default=64,
                   help="Ray: inputs per Parquet shard (the unit of resume; default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from emoca.pipeline.reconstruct import SmoothingOptions, run_reconstruct
    from emoca.pipeline.shards import parse_shard

    shard = parse_shard(args.shard)
    if args.engine == "ray":
        return _run_ray(args, shard)
    smoothing = SmoothingOptions(args.min_cutoff, args.beta, args.d_cutoff) \
        if args.smooth else None
    summary = run_reconstruct(
        args.inputs, args.out, model=args.model, assets=args.assets, mode=args.mode,
        device=args.device or "cpu", batch_size=args.batch_size, save=args.save,
        detector=args.detector, faces=args.faces, emotion=args.emotion, texture=args.texture,
        resume=args.resume, smoothing=smoothing, overlay=args.overlay,
        max_missed=args.max_missed, progress=not args.no_progress, shard=shard,
        precision=args.precision, channels_last=args.channels_last)
    print_summary(summary, args.out)
    return 0 if summary.ok else 1


def _run_ray(args: argparse.Namespace, shard) -> int:
    from emoca.errors import UsageError
    from emoca.pipeline.ray_engine import RayOptions, run_ray

    if args.smooth:
        raise UsageError("--smooth needs whole tracks in one process: use --engine local")
    summary = run_ray(args.inputs, args.out, RayOptions(
        model=args.model, assets=args.assets, mode=args.mode, device=args.device or "auto",
        batch_size=args.batch_size, save=args.save, detector=args.detector, faces=args.faces,
        emotion=args.emotion, texture=args.texture, resume=args.resume,
        max_missed=args.max_missed, address=args.address, workers=args.workers,
        inputs_per_shard=args.inputs_per_shard, shard=shard, progress=not args.no_progress,
        precision=args.precision, channels_last=args.channels_last))
    print_summary(summary, args.out)
    return 0 if summary.ok else 1
