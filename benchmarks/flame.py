"""FLAME forward time (vertices + 68 landmarks) on look-alike assets, B=1 and B=256."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_reproduce, print_table, timeit  # noqa: E402

from emoca.assets.synthetic import write_flame_files  # noqa: E402
from emoca.face_model.flame import FLAME  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    root = write_flame_files(tempfile.mkdtemp())
    g = root / "FLAME/geometry"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        flame = FLAME.from_file(g / "generic_model.pkl", g / "landmark_embedding.npy").to(dev)
        for b in args.batches:
            p = dict(shape=torch.randn(b, 100, device=dev), expression=torch.randn(b, 50,
                     device=dev), pose=torch.randn(b, 6, device=dev) * 0.2)
            with torch.inference_mode():
                t = timeit(lambda p=p, flame=flame: flame(**p), repeat=args.repeat)
            rows.append([dev, str(b), f"{t * 1e3:.2f}", f"{t / b * 1e3:.3f}"])
    print_table("FLAME forward (vertices + landmarks)", ["device", "B", "ms / batch",
                "ms / item"], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
