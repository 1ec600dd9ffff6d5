"""Benchmark of emoca.render: rasterizer and renderer speed, scaling, and agreement with a
plain loop reference.

Prints markdown tables. Usage:

    .venv/bin/python benchmarks/render.py            # full
    .venv/bin/python benchmarks/render.py --quick    # fewer repeats, smaller scaling sweep
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from emoca.render import Renderer, interpolate, rasterize

ICT_DIR = Path("/work/shared/ict-facekit")


# ----------------------------------------------------------------------------- meshes
def ellipsoid_mesh(n_lat: int, n_lon: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed UV-sphere mesh squashed to a head-like ellipsoid, with lat/long UVs.

    Returns world vertices (V, 3), faces (F, 3) counter-clockwise from outside, uv (V, 2).
    V = (n_lat - 1) * n_lon + 2, F = 2 * n_lon * (n_lat - 1).
    """
    theta = torch.arange(1, n_lat, dtype=torch.float64) * math.pi / n_lat
    phi = torch.arange(n_lon, dtype=torch.float64) * 2 * math.pi / n_lon
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0.0, 0.0, 1.0]]), ring, torch.tensor([[0.0, 0.0, -1.0]])])
    # Axis z of the sphere becomes the head's vertical (y); the face looks along +z.
    verts = verts[:, [0, 2, 1]] * torch.tensor([0.85, 0.95, -0.9])
    faces = []
    last = verts.shape[0] - 1
    j = torch.arange(n_lon)
    jn = (j + 1) % n_lon
    faces.append(torch.stack([torch.zeros_like(j), 1 + j, 1 + jn], 1))
    for i in range(n_lat - 2):
        a, b = 1 + i * n_lon + j, 1 + i * n_lon + jn
        faces.append(torch.stack([a, a + n_lon, b], 1))
        faces.append(torch.stack([b, a + n_lon, b + n_lon], 1))
    base = 1 + (n_lat - 2) * n_lon
    faces.append(torch.stack([base + j, torch.full_like(j, last), base + jn], 1))
    faces = torch.cat(faces)
    uv = torch.stack(
        [
            torch.atan2(verts[:, 2], verts[:, 0]) / (2 * math.pi) + 0.5,
            0.5 - torch.asin(verts[:, 1] / 0.95).clamp(-1.57, 1.57) / math.pi,
        ],
        1,
    )
    return verts.float(), faces, uv.float()


def flame_like_mesh():
    # 71 x 72 -> 5,042 vertices and 10,080 faces (FLAME: 5,023 / 9,976).
    return ellipsoid_mesh(71, 72)


def load_ict(ict_dir: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    npz, obj = ict_dir / "ict_facekit_modes.npz", ict_dir / "generic_neutral_mesh.obj.gz"
    if not (npz.exists() and obj.exists()):
        return None
    verts = torch.from_numpy(np.load(npz)["neutral"]).float()
    tris = []
    with gzip.open(obj, "rt") as f:
        for line in f:
            if line.startswith("f "):
                idx = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
                tris.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return verts, torch.tensor(tris)


def to_screen(verts: torch.Tensor, fill: float = 0.9) -> torch.Tensor:
    """Orthographic projection into DECA's raster space: fit x, y to +-fill, y down,
    z negated and shifted in front of the image plane."""
    centre = (verts.amax(0) + verts.amin(0)) / 2
    v = verts - centre
    scale = fill / v[:, :2].abs().max()
    return torch.stack([v[:, 0] * scale, -v[:, 1] * scale, -v[:, 2] * scale + 10.0], 1)


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timing(float):
    """Best wall time in ms (a float, for ratios) that also remembers the median."""

    median: float

    def __new__(cls, times: list[float]) -> Timing:
        obj = super().__new__(cls, min(times))
        obj.median = statistics.median(times)
        return obj

    def __format__(self, spec: str) -> str:
        # "best (median)": on a shared machine the best run is the least disturbed one.
        return f"{float(self):{spec}} ({self.median:{spec}})"


def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> Timing:
    """Wall time in ms over ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return Timing(times)


# ----------------------------------------------------------------------------- reference
def naive_face_index(verts: np.ndarray, faces: np.ndarray, height: int, width: int):
    """Plain loop rasterizer (pixel x face), float64; returns face index and barycentrics."""
    face_index = -np.ones((height, width), dtype=np.int64)
    bary = np.zeros((height, width, 3))
    for r in range(height):
        py = -1.0 + (2 * r + 1) / height
        for c in range(width):
            px = -1.0 + (2 * c + 1) / width
            best = np.inf
            for f, (i0, i1, i2) in enumerate(faces):
                (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = verts[[i0, i1, i2]]
                area = (x2 - x0) * (y1 - y0) - (y2 - y0) * (x1 - x0)
                if abs(area) < 1e-8 or min(z0, z1, z2) < 0:
                    continue
                w0 = ((px - x1) * (y2 - y1) - (py - y1) * (x2 - x1)) / area
                w1 = ((px - x2) * (y0 - y2) - (py - y2) * (x0 - x2)) / area
                w2 = 1.0 - w0 - w1
                if min(w0, w1, w2) <= 0:
                    continue
                z = w0 * z0 + w1 * z1 + w2 * z2
                if z < best:
                    best = z
                    face_index[r, c] = f
                    bary[r, c] = (w0, w1, w2)
    return face_index, bary


def reference_section(quick: bool) -> list[str]:
    verts, faces, _ = ellipsoid_mesh(9, 12)  # 98 vertices, 192 faces
    screen = to_screen(verts, fill=0.8)
    size = 32
    start = time.perf_counter()
    ref_face, ref_bary = naive_face_index(screen.double().numpy(), faces.numpy(), size, size)
    t_ref = (time.perf_counter() - start) * 1000
    cpu = torch.device("cpu")
    t_fast = time_call(lambda: rasterize(screen[None], faces, size, size), cpu, 5 if quick else 20)
    frags = rasterize(screen[None], faces, size, size)
    got_face = frags.face_index[0].numpy()
    same = got_face == ref_face
    both = same & (ref_face >= 0)
    max_bary = float(np.abs(frags.bary[0].numpy()[both] - ref_bary[both]).max())
    return [
        "",
        f"## Agreement with the plain loop reference ({faces.shape[0]} faces, {size}x{size})",
        "",
        "| implementation | time (ms) | speed-up |",
        "|---|---:|---:|",
        f"| plain Python loops (float64) | {t_ref:.1f} | 1 |",
        f"| emoca.render.rasterize | {t_fast:.2f} | {t_ref / float(t_fast):.0f}x |",
        "",
        f"pixels with the same face: {int(same.sum())}/{same.size} "
        f"({int((ref_face >= 0).sum())} covered); largest |barycentric difference| on them: "
        f"{max_bary:.2e}",
    ]


# ----------------------------------------------------------------------------- sections
def main_table(meshes, devices, repeats: int) -> list[str]:
    lines = [
        "## Time per batch at 224x224 (ms: best of the repeats, median in brackets)",
        "",
        "| mesh | vertices | faces | device | B | rasterize | rasterize + interpolate(9 ch) "
        "| Renderer forward | Renderer fwd+bwd | coverage |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (verts, faces, uv) in meshes.items():
        screen = to_screen(verts)
        for device in devices:
            renderer = Renderer(uv, faces, faces, 224, 256).to(device) if uv is not None else None
            for batch in (1, 32):
                world = verts.to(device)[None].expand(batch, -1, -1).contiguous()
                trans = screen.to(device)[None].expand(batch, -1, -1).contiguous()
                trans[..., 2] -= 10.0  # the renderer adds DECA's +10 itself
                raster_in = screen.to(device)[None].expand(batch, -1, -1).contiguous()
                faces_d = faces.to(device)
                attr = torch.randn(batch, verts.shape[0], 9, device=device)
                reps = max(2, repeats // (4 if batch > 1 else 1))
                t_r = time_call(partial(rasterize, raster_in, faces_d, 224, 224), device, reps)

                def rast_interp(x=raster_in, f=faces_d, a=attr):
                    return interpolate(a, rasterize(x, f, 224, 224), f)

                t_ri = time_call(rast_interp, device, reps)
                cov = rasterize(raster_in[:1], faces_d, 224, 224).mask.float().mean().item()
                if renderer is not None:
                    albedo = torch.rand(batch, 3, 256, 256, device=device)
                    light = torch.zeros(batch, 9, 3, device=device)
                    light[:, 0] = 3.0

                    def fwd(w=world, t=trans, a=albedo, li=light, r=renderer):
                        return r(w, t, a, li)

                    def fwd_bwd(w=world, t=trans, a=albedo, li=light, r=renderer):
                        w = w.clone().requires_grad_()
                        t = t.clone().requires_grad_()
                        r(w, t, a, li).images.sum().backward()

                    t_f = f"{time_call(fwd, device, reps):.1f}"
                    t_fb = f"{time_call(fwd_bwd, device, reps):.1f}"
                else:
                    t_f = t_fb = "n/a"
                lines.append(
                    f"| {name} | {verts.shape[0]:,} | {faces.shape[0]:,} | {device.type} | "
                    f"{batch} | {t_r:.1f} | {t_ri:.1f} | {t_f} | {t_fb} | {cov:.0%} |"
                )
    return lines


def scaling_tables(devices, quick: bool, repeats: int) -> list[str]:
    lines = ["", "## Scaling (B=1, ms: best (median))", ""]
    verts, faces, _ = flame_like_mesh()
    screen = to_screen(verts)
    sizes = (112, 224, 448) if quick else (112, 224, 448, 896)
    lines += ["| image size | " + " | ".join(d.type for d in devices) + " |"]
    lines += ["|---:|" + "---:|" * len(devices)]
    for size in sizes:
        row = []
        for d in devices:
            call = partial(rasterize, screen.to(d)[None], faces.to(d), size, size)
            row.append(f"{time_call(call, d, repeats):.1f}")
        lines.append(f"| {size} | " + " | ".join(row) + " |")
    lines += ["", "| faces (ellipsoid, 224x224) | " + " | ".join(d.type for d in devices) + " |"]
    lines += ["|---:|" + "---:|" * len(devices)]
    grids = [(36, 36), (71, 72), (142, 142)] + ([] if quick else [(284, 284)])
    for n_lat, n_lon in grids:
        v, f, _ = ellipsoid_mesh(n_lat, n_lon)
        s = to_screen(v)
        row = []
        for d in devices:
            call = partial(rasterize, s.to(d)[None], f.to(d), 224, 224)
            row.append(f"{time_call(call, d, repeats):.1f}")
        lines.append(f"| {f.shape[0]:,} | " + " | ".join(row) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sweeps")
    parser.add_argument("--ict-dir", type=Path, default=ICT_DIR)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 10

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    meshes = {"FLAME-size ellipsoid": flame_like_mesh()}
    ict = load_ict(args.ict_dir)
    if ict is not None:
        meshes["ICT-FaceKit neutral"] = (ict[0], ict[1], None)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    print(
        f"# emoca.render benchmark\n\ntorch {torch.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads, load average {load:.1f} at start{gpu}\n"
    )
    lines = main_table(meshes, devices, repeats)
    lines += reference_section(args.quick)
    lines += scaling_tables(devices, args.quick, repeats)
    print("\n".join(lines))
    cmd = " ".join([".venv/bin/python", "benchmarks/render.py", *sys.argv[1:]])
    print(f"\nReproduce: `{cmd}`")


if __name__ == "__main__":
    main()
