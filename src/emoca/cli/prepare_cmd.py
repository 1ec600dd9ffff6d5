"""``emoca prepare``: detect, crop and store faces with labels and landmarks for training.

Examples::

    # AffectNet: its CSV and the Manually_Annotated_Images folder (its box is the crop box)
    emoca prepare data/affectnet_train --affectnet training.csv --images Manually_Annotated_Images
    # your own photos: a CSV with path, expression, valence, arousal[, group]
    emoca prepare data/mine --csv labels.csv --detector mediapipe
    # AFEW-VA: the folder with 001/ .. 600/
    emoca prepare data/afew --afew-va AFEW-VA/

Running the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="crop cache folder to write (read by emoca train / evaluate)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--affectnet", metavar="CSV", help="AffectNet annotation CSV")
    src.add_argument("--csv", metavar="CSV",
                     help="label CSV (path, expression, valence, arousal, group)")
    src.add_argument("--afew-va", metavar="DIR", help="AFEW-VA folder")
    p.add_argument("--images", help="folder the CSV's image paths are relative to "
                                    "(AffectNet: Manually_Annotated_Images; default: the "
                                    "CSV's folder)")
    p.add_argument("--detector", default="mediapipe",
                   help="face detector for images without box/landmarks (default mediapipe)")
    p.add_argument("--faces", metavar="FILE",
                   help="boxes/landmarks per image in a JSON or CSV file (the 'file' "
                        "detector) instead of running a detector")
    p.add_argument("--landmarks", choices=["auto", "detect"], default="auto",
                   help="auto: the dataset's landmarks, else the detector's; detect: run "
                        "the detector on every crop")
    p.add_argument("--keep-invalid", action="store_true",
                   help="AffectNet: keep rows without emotion labels (classes 8-10)")
    p.add_argument("--limit", type=int, default=None, help="only the first N faces")
    p.add_argument("--workers", type=int, default=0, help="parallel worker processes")
    p.add_argument("--chunk", type=int, default=2048, help="faces per saved progress step")
    p.add_argument("--retry-failed", action="store_true",
                   help="try faces that failed in an earlier run again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def read_records(args: argparse.Namespace) -> tuple[list, str | None]:
    """The records named on the command line and the folder their paths are relative to."""
    from emoca.data import read_afew_va, read_affectnet_csv, read_label_csv

    if args.affectnet:
        records = read_affectnet_csv(args.affectnet, drop_invalid=not args.keep_invalid)
        root = args.images or str(Path(args.affectnet).parent)
    elif args.csv:
        records = read_label_csv(args.csv, image_root=args.images)
        root = None  # read_label_csv made the paths absolute
    else:
        records = read_afew_va(args.afew_va)
        root = args.afew_va
    if args.limit is not None:
        records = records[: args.limit]
    return records, root


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from emoca.detect import create_detector
    from emoca.train.prepare import prepare_crops

    records, root = read_records(args)
    if args.faces:
        factory = partial(create_detector, "file", path=args.faces)
    else:
        factory = partial(create_detector, args.detector)
    summary = prepare_crops(records, args.out, image_root=root, detector_factory=factory,
                            landmarks=args.landmarks, num_workers=args.workers,
                            chunk_size=args.chunk, retry_failed=args.retry_failed,
                            progress=not args.no_progress)
    out = Path(args.out)
    (out / "prepare_summary.json").write_text(json.dumps(summary.to_json(), indent=1))
    print(f"faces: {len(records)}  written: {summary.written}  already there: "
          f"{summary.present}  failed: {len(summary.failed)}  skipped (failed before): "
          f"{summary.skipped_failed}")
    for key, why in list(summary.failed.items())[:20]:
        print(f"  failed: {key}: {why}")
    if len(summary.failed) > 20:
        print(f"  ... and {len(summary.failed) - 20} more (see {out / 'prepare_failed.jsonl'})")
    return 0
