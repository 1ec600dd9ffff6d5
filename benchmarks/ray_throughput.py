"""The Ray engine on 2 local workers against the single-process runner, same inputs.

Reproduce::

    .venv/bin/python benchmarks/ray_throughput.py                  # 24 and 48 photos, coarse
    .venv/bin/python benchmarks/ray_throughput.py --images 8 --mode detail

Inputs: photos (the astronaut and Grace Hopper, one face each) with their boxes in a faces
file, so detection costs nothing and both engines crop the same faces; look-alike weights
with the official shapes; codes only. The single process runs with ``--cpus`` torch
threads; Ray gets a local cluster of ``--cpus`` CPUs and 2 network actors of ``cpus / 2``
threads each (Ray's cluster is started before the clock starts).

Each engine runs ``N`` and then ``2N`` photos (the single process after a 2-photo warm-up
run; every Ray run starts its own actors). "wall" is the whole ``2N`` call (actor start
and model loading included); "marginal" is ``N / (T(2N) - T(N))``, the rate once started,
which is what a dataset of a million photos sees. The ratio column compares marginal
rates. The last row bounds what any split into 1-thread workers can reach here: two
encoder forwards per face, timed in this process at 1 thread and at ``--cpus`` threads;
ceiling = workers x rate(1 thread) / rate(cpus threads). On a shared machine quote the
ratios, not the rates.
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


def _encoder_rates(cpus: int, batch: int) -> dict[int, float]:
    """Crops/s of the two coarse encoders (look-alike weights) at 1 and ``cpus`` threads."""
    import torch

    from emoca.nets.encoders import ResnetEncoder

    nets = [ResnetEncoder(236).eval(), ResnetEncoder(50).eval()]
    x = torch.rand(batch, 3, 224, 224)
    rates = {}
    for threads in sorted({1, cpus}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for net in nets:
                net(x)  # warm-up
            t0 = time.perf_counter()
            for _ in range(2):
                for net in nets:
                    net(x)
        rates[threads] = 2 * batch / (time.perf_counter() - t0)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24, help="N: runs N, then 2N photos")
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

    n = args.images
    work = Path(tempfile.mkdtemp(prefix="emoca_raybench_"))
    assets = write_official_assets(work / "assets", seed=0)
    write_emoca_model(assets, MODEL, seed=1, deca_seed=0)
    inputs = {k: _inputs(work / f"in{k}", k) for k in (2, n, 2 * n)}
    workers, threads = 2, max(1, args.cpus // 2)

    def single(k: int) -> float:
        data, boxes = inputs[k]
        t0 = time.perf_counter()
        s = run_reconstruct([data], work / f"single{k}", model=MODEL, assets=assets,
                            mode=args.mode, batch_size=args.batch, save="codes",
                            detector="file", faces=boxes, progress=False)
        sec = time.perf_counter() - t0
        assert s.ok and len(s.written) == k, s.failed
        return sec

    def on_ray(k: int) -> float:
        data, boxes = inputs[k]
        t0 = time.perf_counter()
        s = run_ray([data], work / f"ray{k}", RayOptions(
            model=MODEL, assets=str(assets), mode=args.mode, batch_size=args.batch,
            save=None, detector="file", faces=str(boxes), device="cpu", progress=False,
            workers=workers, threads=threads, inputs_per_shard=8))
        sec = time.perf_counter() - t0
        assert s.ok and s.table_rows == k, s.failed
        return sec

    torch.set_num_threads(args.cpus)
    single(2)  # first-call costs (lazy imports, kernel set-up) would flatter the marginal
    times = {"single": {k: single(k) for k in (n, 2 * n)}}
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        times["ray"] = {k: on_ray(k) for k in (n, 2 * n)}
    finally:
        ray.shutdown()
    rates = _encoder_rates(args.cpus, args.batch)
    torch.set_num_threads(args.cpus)  # the table's machine line names the --cpus setting

    def marginal(t: dict[int, float]) -> float:
        return n / max(t[2 * n] - t[n], 1e-9)

    base = marginal(times["single"])
    rows = []
    for name, label, tt in (("single", f"single process, {args.cpus} threads", args.cpus),
                            ("ray", f"Ray, {workers} actors", threads)):
        t = times[name]
        rows.append([label, f"{tt}", f"{t[2 * n]:.1f}", f"{2 * n / t[2 * n]:.2f}",
                     f"{marginal(t):.2f}", f"{marginal(t) / base:.2f}"])
    ceiling = workers * rates[1] / rates[args.cpus]
    rows.append(["ceiling: encoders only", f"1 vs {args.cpus}", "",
                 f"{rates[1]:.2f} vs {rates[args.cpus]:.2f}", "", f"{ceiling:.2f}"])
    print_table(f"{n} then {2 * n} faces, {args.mode}, batch {args.batch} ({machine()})",
                ["engine", "threads", f"wall s ({2 * n})", "faces/s (wall)",
                 "faces/s (marginal)", "ratio"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
