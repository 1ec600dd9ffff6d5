"""The Ray engine on 2 local workers against the single-process runner, same inputs.

Reproduce::

    .venv/bin/python benchmarks/ray_throughput.py                  # 48 photos, coarse
    .venv/bin/python benchmarks/ray_throughput.py --images 16 --mode detail

Inputs: ``--images`` photos (the astronaut and Grace Hopper, one face each) with their
boxes in a faces file, so detection costs nothing and both engines crop the same faces;
look-alike weights with the official shapes; ``--save codes``. The single process runs
with ``--cpus`` torch threads; Ray gets a local cluster of ``--cpus`` CPUs and 2 network
actors of ``cpus / 2`` threads each. Times are wall seconds of the whole call, actor start
and model loading included (Ray's cluster is started before the clock starts); the ratio
is faces/s of Ray over faces/s of one process. On a shared machine the ratio is the figure
to quote, not the absolute rates. The single process runs with ``--cpus`` and with 1
thread; the ratio column is relative to the faster of the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_reproduce, print_table  # noqa: E402

MODEL = "EMOCA_v2_lr_mse_20"
BOXES = {"astronaut": [175.0, 55.0, 305.0, 205.0], "grace": [160.0, 80.0, 360.0, 330.0]}


def _inputs(folder: Path, n: int) -> tuple[Path, Path]:
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.array(Image.open(f).convert("RGB"))
    images = {"astronaut": skimage.data.astronaut(), "grace": grace}
    data = folder / "photos"
    data.mkdir(parents=True)
    faces = {}
    for i in range(n):
        name = "astronaut" if i % 2 == 0 else "grace"
        Image.fromarray(images[name]).save(data / f"{name}_{i:03d}.png")
        faces[f"{name}_{i:03d}.png"] = [{"box": BOXES[name]}]
    boxes = folder / "faces.json"
    boxes.write_text(json.dumps(faces))
    return data, boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--mode", choices=["coarse", "detail"], default="coarse")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    import ray
    import torch

    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model
    from emoca.pipeline.ray_engine import RayOptions, run_ray
    from emoca.pipeline.reconstruct import run_reconstruct

    work = Path(tempfile.mkdtemp(prefix="emoca_raybench_"))
    assets = write_official_assets(work / "assets", seed=0)
    write_emoca_model(assets, MODEL, seed=1, deca_seed=0)
    data, boxes = _inputs(work, args.images)

    singles = {}
    for threads in sorted({args.cpus, 1}, reverse=True):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        s1 = run_reconstruct([data], work / f"single{threads}", model=MODEL, assets=assets,
                             mode=args.mode, batch_size=args.batch, save="codes",
                             detector="file", faces=boxes, progress=False)
        singles[threads] = time.perf_counter() - t0
        assert s1.ok and len(s1.written) == args.images, s1.failed
    single = min(singles.values())

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        t0 = time.perf_counter()
        s2 = run_ray([data], work / "ray", RayOptions(
            model=MODEL, assets=str(assets), mode=args.mode, batch_size=args.batch,
            save=None, detector="file", faces=str(boxes), device="cpu", progress=False,
            workers=2, threads=max(1, args.cpus // 2), inputs_per_shard=8))
        on_ray = time.perf_counter() - t0
    finally:
        ray.shutdown()
    assert s2.ok and s2.table_rows == args.images, s2.failed
    torch.set_num_threads(args.cpus)  # the table's machine line names the --cpus setting
    rows = [["single process", f"{t} threads", f"{sec:.1f}", f"{args.images / sec:.2f}",
             f"{single / sec:.2f}"] for t, sec in singles.items()]
    rows += [["Ray, 2 actors", f"{max(1, args.cpus // 2)} threads each", f"{on_ray:.1f}",
              f"{args.images / on_ray:.2f}", f"{single / on_ray:.2f}"]]
    print_table(f"{args.images} faces, {args.mode}, batch {args.batch} ({machine()})",
                ["engine", "threads", "seconds", "faces/s", "ratio"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
