"""``emoca demo``: the whole open job on a real photo shipped inside an installed package.

The photo is ``skimage.data.astronaut()`` (public domain, NASA). The open ICT-FaceKit model
is fitted to it with EMOCA's losses (landmarks, relative eye/lip/mouth-corner, photometric,
emotion consistency through the open FER network), and the mesh, ARKit weights, overlay
renders and emotion read-outs are written. When the official EMOCA files are present, the
network reconstruction runs too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--assets", help="official assets folder (default: $EMOCA_HOME or "
                   "~/.cache/emoca)")
    p.add_argument("--ict-dir", help="ICT-FaceKit folder (default: <assets>/ICT-FaceKit, "
                   "else the copy inside the package)")


def run(args: argparse.Namespace) -> int:
    import skimage.data
    from PIL import Image

    from emoca.cli.common import print_summary
    from emoca.pipeline.fit import fit_inputs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = out / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    print(f"input photo: {photo} (skimage.data.astronaut)")
    t0 = time.perf_counter()
    summary = fit_inputs([photo], out / "fit", assets=args.assets, ict_dir=args.ict_dir,
                         resume=False, progress=False)
    print_summary(summary, out / "fit")
    status = 0 if summary.ok else 1
    face = out / "fit" / "astronaut" / "face_0"
    print(f"\nICT-FaceKit fit done in {time.perf_counter() - t0:.1f} s:")
    for name, what in (("overlay.png", "photo | render | landmarks (green fit, red detected)"),
                       ("overlay_full.png", "the fitted head drawn into the photo"),
                       ("mesh.obj", "mesh with a UV texture from the photo (also .ply, .glb)"),
                       ("params.json", "ARKit blendshape weights by name, pose, emotion")):
        print(f"  {face / name}: {what}")
    from emoca.assets.locate import Assets

    assets = Assets(args.assets)
    if not assets.missing_required() and assets.find("emoca_v2_lr_mse_20") is not None:
        from emoca.cli import reconstruct_cmd
        from emoca.cli.main import build_parser

        rec_args = build_parser().parse_args(
            ["reconstruct", str(photo), "-o", str(out / "reconstruct"), "--assets",
             str(assets.root)])
        status = max(status, reconstruct_cmd.run(rec_args))
        print(f"\nEMOCA reconstruction (official files in {assets.root}): "
              f"{out / 'reconstruct' / 'astronaut'}")
    else:
        print(f"\n(official FLAME/EMOCA files not found in {assets.root}: `emoca assets "
              "download` fetches them; then this demo also runs `emoca reconstruct`)")
    return status
