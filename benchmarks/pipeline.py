"""``emoca reconstruct`` cost: seconds per face for each stage, at B=1 and batched, and
video frames per second.

Stages (as the pipeline's :class:`StageTimer` counts them): read (image decode / video
demux+decode), detect (MediaPipe), crop (DECA warp to 224), networks (E_flame,
E_expression, E_detail and the EmoDECA head), flame (FLAME + projection + landmarks),
render (coarse/detail/shape renders, detail normals, texture, overlay in the photo) and
export (OBJ/MTL/PNG, PLY, GLB, dense mesh, npz/json, PNG renders).

Without ``--assets`` the look-alike official files are written to a temporary folder:
their networks have the official shapes, so the timings are those of the real models.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table  # noqa: E402

STAGES = ("read", "detect", "crop", "networks", "flame", "render", "export")


def _photos(folder: Path, n: int) -> list[Path]:
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.array(Image.open(f).convert("RGB"))
    sources = [skimage.data.astronaut(), grace]
    paths = []
    for i in range(n):
        p = folder / f"photo_{i:02d}.png"
        Image.fromarray(sources[i % 2]).save(p)
        paths.append(p)
    return paths


def _clip(path: Path, frames: int, width: int = 480, height: int = 360) -> Path:
    """The astronaut drifting across a ``width`` x ``height`` frame at 25 fps."""
    import av
    import skimage.data

    canvas = np.zeros((height + 2 * frames, width + frames, 3), np.uint8)
    canvas[:512, :512] = skimage.data.astronaut()[:canvas.shape[0], :canvas.shape[1]]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            fr = np.ascontiguousarray(canvas[2 * i:2 * i + height, i:i + width])
            for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assets", help="official assets folder (default: look-alike files)")
    ap.add_argument("--model", default="EMOCA_v2_lr_mse_20")
    ap.add_argument("--images", type=int, default=4, help="photos per run (one face each)")
    ap.add_argument("--batch", type=int, default=4, help="the batched run's batch size")
    ap.add_argument("--frames", type=int, default=12, help="video frames")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs per setting; the fastest is kept (the CPU may be shared)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="emoca_bench_") as tmp_name:
        _run(args, Path(tmp_name))
    print_reproduce()


def _run(args: argparse.Namespace, tmp: Path) -> None:
    from emoca.pipeline.reconstruct import Reconstructor
    from emoca.pipeline.runner import Runner
    from emoca.pipeline.video import VideoOptions, process_video

    def reconstruct_images(paths, out, rec, **_):
        return Runner(rec, resume=False, progress=False).run(paths, out)

    def reconstruct_video(path, dest, rec, save, **_):
        rec.save = save
        return process_video(path, dest, rec, VideoOptions(overlay="video" in save),
                             progress=False)

    root = args.assets
    if root is None:
        from emoca.assets.synthetic import write_official_assets
        from emoca.assets.synthetic_checkpoints import write_emoca_model, write_emodeca_model

        root = write_official_assets(tmp / "assets", seed=0, albedo="bfm", albedo_components=4)
        write_emoca_model(root, args.model, seed=1, deca_seed=0)
        write_emodeca_model(root, seed=11, deca_seed=0)
    photos = _photos(tmp, args.images)
    rec = Reconstructor.from_pretrained(args.model, assets=root, device=args.device)
    # warm-up: first calls pay for allocator growth and MediaPipe's graph start
    reconstruct_images(photos[:1], tmp / "warm", rec, resume=False, progress=False)

    rows: dict[str, list[str]] = {s: [s] for s in (*STAGES, "total")}
    header = ["stage (ms per face)"]
    for mode in ("detail", "coarse"):
        for b in (1, args.batch):
            rec.mode, rec.batch_size = mode, b
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                rec.timer.reset()
                t0 = time.perf_counter()
                s = reconstruct_images(photos, tmp / f"out_{mode}_{b}", rec, resume=False,
                                       progress=False)
                per = {k: v / len(s.written) for k, v in rec.timer.seconds.items()}
                per["total"] = (time.perf_counter() - t0) / len(s.written)
                best = {k: min(v, best.get(k, v)) for k, v in per.items()}
            header.append(f"{mode} B={b}")
            for stage in (*STAGES, "total"):
                rows[stage].append(f"{1e3 * best.get(stage, 0.0):.0f}")
    print_table(f"Photos: {args.model}, {args.images} photos of one face (all outputs saved)",
                header, list(rows.values()))

    clip = _clip(tmp / "clip.mp4", args.frames)
    vrows = []
    for mode in ("detail", "coarse"):
        for save, label in ((frozenset({"codes", "landmarks"}), "codes + landmarks"),
                            (frozenset({"codes", "landmarks", "mesh", "video"}),
                             "+ overlay video")):
            rec.mode, rec.batch_size = mode, args.batch
            best = {}
            for _ in range(args.repeat):
                rec.timer.reset()
                t0 = time.perf_counter()
                record = reconstruct_video(clip, tmp / f"video_{mode}_{len(save)}", rec,
                                           save=save, progress=False)
                frames = record["frames_read"]
                per = {k: 1e3 * v / frames for k, v in rec.timer.seconds.items()}
                per["wall"] = (time.perf_counter() - t0) / frames
                best = {k: min(v, best.get(k, v)) for k, v in per.items()}
            vrows.append([mode, label, f"{1.0 / best['wall']:.2f}",
                          *(f"{best.get(k, 0.0):.0f}" for k in STAGES)])
    print_table(f"Video: 480x360, {args.frames} frames, one face, B={args.batch}",
                ["mode", "outputs", "frames/s", *(f"{k} ms/frame" for k in STAGES)], vrows)


if __name__ == "__main__":
    main()
