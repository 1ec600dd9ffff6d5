"""``emoca demo``: the whole job on a real photo shipped inside an installed package."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--assets", help="official assets folder (default: $EMOCA_HOME or "
                   "~/.cache/emoca); look-alike files are written when it lacks FLAME")


def run(args: argparse.Namespace) -> int:
    import torch

    from emoca.assets.locate import Assets
    from emoca.assets.synthetic import write_official_assets
    from emoca.face_model.flame import FLAME
    from emoca.io.mesh import write_obj

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    assets = Assets(args.assets)
    if assets.missing_required():
        root = write_official_assets(out / "lookalike_assets")
        print(f"official FLAME files not found in {assets.root}: using look-alike files "
              f"written to {root} (NOT the real model)")
        assets = Assets(root)
    flame = FLAME.from_file(assets.path("flame_model"), assets.path("landmark_embedding"),
                            template_obj=assets.path("head_template"))
    pose = torch.tensor([[0.0, math.radians(20), 0.0, math.radians(12), 0.0, 0.0]])
    expression = torch.zeros(1, 50)
    expression[0, :4] = torch.tensor([2.0, -1.0, 1.0, 0.5])
    posed = flame(shape=torch.zeros(1, 100), expression=expression, pose=pose)
    mesh = write_obj(out / "flame_posed.obj", posed.vertices[0], flame.faces,
                     uvs=flame.uv_coords, uv_faces=flame.uv_faces)
    print(f"posed FLAME mesh: {mesh}")
    return 0
