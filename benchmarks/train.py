"""Training speed of every stage: optimiser steps per second at the stage's default batch.

Each stage runs its real loss computation, backward pass and Adam step on synthetic
inputs (random 224x224 crops; a look-alike EMOCA model written to a temporary folder, so
no licensed files are needed), after ``--warmup`` untimed steps. Lightning's loop
overhead is not included.

    .venv/bin/python benchmarks/train.py                       # all stages, CPU
    .venv/bin/python benchmarks/train.py --device cuda --precision 16-mixed
    .venv/bin/python benchmarks/train.py --stages emomlp coarse --steps 3

Default batches (official): emotion 64, coarse 32, detail 4 identities x K=4 (the
detail-code exchange doubles what is decoded), emomlp 64.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

STAGES = ("emotion", "coarse", "detail", "emomlp")


def _emoca(root: Path, device: torch.device):
    from emoca.assets.synthetic import write_official_assets
    from emoca.assets.synthetic_checkpoints import write_emoca_model
    from emoca.model.emoca_model import Emoca

    write_official_assets(root, seed=0)
    write_emoca_model(root, "EMOCA", seed=1, deca_seed=0)
    model = Emoca.from_pretrained(root / "EMOCA" / "models" / "EMOCA", assets=root)
    with torch.no_grad():  # a camera and light that frame the face (random weights do not)
        head = model.E_flame.layers[2]
        head.weight[206:236] = 0.0
        head.bias[206:209] = torch.tensor([8.0, 0.0, 0.0])
        light = torch.zeros(9, 3)
        light[0], light[1], light[3] = 2.0, 0.3, 0.6
        head.bias[209:236] = light.reshape(-1)
    return model.to(device)


def _crops(n: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lmk = 112 + 40 * (torch.rand(n, 68, 2, generator=g) - 0.5)
    return {"image": torch.rand(n, 3, 224, 224, generator=g).to(device),
            "landmarks": lmk.to(device),
            "expression": torch.randint(0, 8, (n,), generator=g).to(device),
            "va": (torch.rand(n, 2, generator=g) * 2 - 1).to(device)}


def build(stage: str, device: torch.device, root: Path, scale: float):
    """(module, batch, step function) of one stage."""
    from emoca.nets import EmoMLP, EmotionNet
    from emoca.train.config import default_config
    from emoca.train.emotion import EmotionModule

    cfg = default_config(stage)
    bs = max(1, int(round(cfg["data"]["batch_size"] * scale)))
    if stage == "emotion":
        module = EmotionModule(EmotionNet(), "image", cfg["loss"], lr=1e-4).to(device)
        return module, _crops(bs, device), bs, lambda b: module._step(b, True)["loss"]
    if stage == "emomlp":
        module = EmotionModule(EmoMLP(), "codes", cfg["loss"], lr=1e-4).to(device)
        batch = _crops(bs, device)
        batch["codes"] = torch.randn(bs, 153, device=device)
        return module, batch, bs, lambda b: module._step(b, True)["loss"]
    model = _emoca(root, device)
    if stage == "coarse":
        from emoca.train.coarse import CoarseStage

        module = CoarseStage(model, EmotionNet().to(device), cfg["loss"], lr=5e-5)
        return module, _crops(bs, device), bs, lambda b: module.compute_losses(b)["loss"]
    from emoca.train.detail import DetailStage

    k = int(cfg["data"]["images_per_identity"])
    module = DetailStage(model, cfg["loss"], lr=5e-5, images_per_identity=k)
    return module, _crops(bs * k, device), bs * k, \
        lambda b: module.compute_losses(b, training=True)["loss"]


def time_stage(stage: str, device: torch.device, steps: int, warmup: int, precision: str,
               root: Path, scale: float) -> tuple[int, float]:
    module, batch, bs, loss_fn = build(stage, device, root, scale)
    module.train()
    opt = module.configure_optimizers()
    mixed = precision == "16-mixed" and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if mixed else None

    def step() -> None:
        ctx = torch.autocast("cuda", dtype=torch.float16) if mixed else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return bs, steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="32-true", choices=["32-true", "16-mixed"])
    p.add_argument("--batch-scale", type=float, default=1.0,
                   help="multiply the default batches (e.g. 0.25 for a quick look)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            bs, sps = time_stage(stage, device, args.steps, args.warmup, args.precision,
                                 Path(tmp) / stage, args.batch_scale)
            rows.append((stage, bs, sps))
            print(f"{stage}: batch {bs}, {sps:.4f} steps/s", file=sys.stderr, flush=True)
    print(f"\nTraining speed on {dev_name} (torch {torch.__version__}, {args.precision}, "
          f"{args.steps} timed steps after {args.warmup} warm-up)\n")
    print("| stage | batch (images or codes) | steps/s | s/step | items/s |")
    print("|---|---:|---:|---:|---:|")
    for stage, bs, sps in rows:
        print(f"| {stage} | {bs} | {sps:.4f} | {1 / sps:.2f} | {bs * sps:.1f} |")
    cmd = " ".join(["python benchmarks/train.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\nReproduce: `{cmd.strip()}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
