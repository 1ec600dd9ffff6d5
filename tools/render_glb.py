"""Render a GLB as a viewer would (trimesh reads it; our rasterizer draws it), to look at.

Usage: python tools/render_glb.py MESH.glb OUT.png [--yaw 0 45 90] [--morph default|zero]

Each view: the mesh turned by ``yaw`` degrees about y, orthographic, textured with the
material's base-colour texture through the file's UVs, lit by a head light. A mesh with
morph targets is drawn at its default weights (``mesh.weights``, what viewers show) or,
with ``--morph zero``, at its base shape; the morphs are evaluated by the tests' glTF
reader (tests/gltf_eval.py: trimesh ignores morph targets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def main() -> None:
    import trimesh

    from emoca.geometry import axis_angle_to_matrix
    from emoca.render.geometry import vertex_normals
    from emoca.render.raster import interpolate_many, rasterize

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("glb")
    ap.add_argument("out")
    ap.add_argument("--yaw", type=float, nargs="+", default=[0.0, 45.0, 90.0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--morph", choices=["default", "zero"], default="default")
    a = ap.parse_args()
    mesh = trimesh.load(a.glb, process=False, force="mesh")
    v = torch.tensor(_vertices(a.glb, a.morph, np.asarray(mesh.vertices)), dtype=torch.float32)
    f = torch.tensor(np.asarray(mesh.faces), dtype=torch.int64)
    uv = torch.tensor(np.asarray(mesh.visual.uv), dtype=torch.float32)
    tex = torch.tensor(np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")),
                       dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    centre = (v.max(0).values + v.min(0).values) / 2
    half = float((v.max(0).values - v.min(0).values)[:2].max()) / 2 * 1.1
    views = []
    for yaw in a.yaw:
        rot = axis_angle_to_matrix(torch.tensor([[0.0, float(np.radians(yaw)), 0.0]]))[0]
        p = (v - centre) @ rot.T
        # screen: x right, y down, smaller z closer (the viewer looks down -z)
        scr = torch.stack([p[:, 0] / half, -p[:, 1] / half, -p[:, 2] / half + 10], -1)
        frags = rasterize(scr[None], f, a.size, a.size)
        n = vertex_normals(p[None], f)
        grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1)
        nn_, g = interpolate_many([n, grid[None]], frags, f)
        col = F.grid_sample(tex, g, align_corners=False)[0]
        shade = 0.3 + 0.7 * nn_[0, ..., 2].clamp(min=0)
        img = col * shade[None] * frags.mask[0][None] + (~frags.mask[0])[None] * 0.2
        views.append(img)
    out = torch.cat(views, 2).clamp(0, 1).permute(1, 2, 0).numpy()
    Image.fromarray((out * 255 + 0.5).astype(np.uint8)).save(a.out)


def _vertices(path: str, morph: str, plain: np.ndarray) -> np.ndarray:
    """(V, 3) world vertices of the first mesh with its morph weights (``plain``: trimesh's,
    which has no morphs, used when the file has none)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import gltf_eval

    gltf = gltf_eval.load(path)
    m = gltf.meshes[gltf.nodes[0].mesh]
    if not m.primitives[0].targets:
        return plain
    if morph == "zero":
        m.weights = [0.0] * len(m.primitives[0].targets)
    return gltf_eval.mesh_vertices(gltf, 0.0)


if __name__ == "__main__":
    main()
