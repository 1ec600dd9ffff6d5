"""Crops per second through EMOCA's networks at B = 1, 32, 256, on CUDA when present, else CPU.

Reproduce::

    .venv/bin/python benchmarks/gpu.py                          # CUDA if present, else CPU
    .venv/bin/python benchmarks/gpu.py --iters 1 --batch-sizes 1 32 256   # quick CPU run

"coarse" is what ``--mode coarse`` runs per crop: E_flame + E_expression (two ResNet-50s),
then FLAME and the 2D/3D landmarks; "detail" adds E_detail. Each setting is timed from a
CPU batch of crops (pinned, non-blocking copy on CUDA) to float32 codes and landmarks on
the host, after ``--warmup`` untimed passes; the table gives the best of ``--iters``. The
look-alike weights have the official shapes, so the times are those of the real networks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_reproduce, print_table  # noqa: E402

MODEL = "EMOCA_v2_lr_mse_20"


def _model(device: torch.device):
    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model
    from emoca.model.emoca_model import Emoca

    root = write_official_assets(Path(tempfile.mkdtemp(prefix="emoca_gpu_")), seed=0)
    write_emoca_model(root, MODEL, seed=1, deca_seed=0)
    return lambda: Emoca.from_pretrained(MODEL, assets=root, device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def crops_per_second(rec, batch: int, detail: bool, iters: int, warmup: int) -> float:
    """Best-of-``iters`` crops/s: host crops -> codes + FLAME landmarks back on the host."""
    crops = torch.rand(batch, 3, 224, 224)
    if rec.device.type == "cuda":
        crops = crops.pin_memory()

    def once() -> None:
        with torch.inference_mode():
            codes = rec.encode(crops, detail=detail)
            out = rec.model.decode(codes, render=False, detail=False)
            out.landmarks2d.cpu(), codes.exp.cpu()

    for _ in range(warmup):
        once()
    best = float("inf")
    for _ in range(iters):
        _sync(rec.device)
        t0 = time.perf_counter()
        once()
        _sync(rec.device)
        best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    ap.add_argument("--iters", type=int, default=None, help="timed passes (CPU 1, CUDA 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed passes (CPU 0, CUDA 3)")
    ap.add_argument("--settings", nargs="+", default=None,
                    help="of fp32, bf16, fp16, fp32+cl, bf16+cl, fp16+cl (cl: channels-last); "
                         "default: all on CUDA, fp32 and bf16 on CPU")
    ap.add_argument("--modes", nargs="+", default=["coarse", "detail"])
    args = ap.parse_args()
    from emoca.pipeline.reconstructor import Reconstructor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    iters = args.iters or (10 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    settings = args.settings or (["fp32", "fp32+cl", "bf16+cl", "fp16+cl"] if cuda
                                 else ["fp32", "bf16"])
    if cuda:
        torch.backends.cudnn.benchmark = True
    load = _model(device)
    rows = []
    for setting in settings:
        precision, _, cl = setting.partition("+")
        rec = Reconstructor(load(), None, precision=precision, channels_last=cl == "cl")
        for mode in args.modes:
            row = [setting, mode]
            for b in args.batch_sizes:
                try:
                    row.append(f"{crops_per_second(rec, b, mode == 'detail', iters, warmup):.1f}")
                except torch.OutOfMemoryError:
                    row.append("out of memory")
                    torch.cuda.empty_cache()
            rows.append(row)
            print(" | ".join(row), flush=True)
        del rec
    print_table(f"crops/s on {device} ({machine()}), best of {iters}",
                ["setting", "mode"] + [f"B={b}" for b in args.batch_sizes], rows)
    print_reproduce()


if __name__ == "__main__":
    main()
