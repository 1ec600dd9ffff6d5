"""Forward-pass time of each network in ``emoca.nets`` (randomly initialised, eval mode).

Reproduce::

    .venv/bin/python benchmarks/nets.py                       # CPU (+ CUDA if available)
    .venv/bin/python benchmarks/nets.py --devices cpu --batch-sizes 1 32 --repeats 3

Prints a markdown table: median and minimum wall time of one forward pass under
``torch.inference_mode`` after warm-up, at each batch size, per device. On a shared
machine the minimum is the more repeatable figure.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from emoca.nets import create_network

# name -> (constructor kwargs, input factory (batch, device) -> tensor)
InputFactory = Callable[[int, torch.device], torch.Tensor]


def _image(batch: int, device: torch.device) -> torch.Tensor:
    return torch.rand(batch, 3, 224, 224, device=device)


def _vector(size: int) -> InputFactory:
    return lambda batch, device: torch.randn(batch, size, device=device)


NETWORKS: dict[str, tuple[dict, InputFactory]] = {
    "resnet50": ({}, _image),
    "resnet50_caffe": ({}, _image),
    "deca_coarse_encoder": ({}, _image),
    "deca_detail_encoder": ({}, _image),
    "expression_encoder": ({}, _image),
    "emotion_net": ({}, _image),
    "detail_decoder": ({}, _vector(181)),
    "emo_mlp": ({}, _vector(153)),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    model: nn.Module, x: torch.Tensor, warmup: int, repeats: int
) -> tuple[float, float]:
    """Median and minimum seconds of one forward pass."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _sync(x.device)
            start = time.perf_counter()
            model(x)
            _sync(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--devices", nargs="+", default=default_devices)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    )
    print(
        f"ms per forward pass: median (min) of {args.repeats} after {args.warmup} warm-up; "
        "per-image column from the min\n"
    )
    header = ["network", "params (M)", "device"] + [f"B={b}" for b in args.batch_sizes]
    header += [f"B={args.batch_sizes[-1]} per image"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name in args.networks:
        kwargs, make_input = NETWORKS[name]
        model = create_network(name, **kwargs).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for dev_name in args.devices:
            device = torch.device(dev_name)
            model.to(device)
            cells = []
            last = 0.0
            for batch in args.batch_sizes:
                x = make_input(batch, device)
                median, best = time_forward(model, x, args.warmup, args.repeats)
                cells.append(f"{median * 1e3:.1f} ({best * 1e3:.1f})")
                last = best / batch
            row = [name, f"{params:.2f}", dev_name, *cells, f"{last * 1e3:.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)
        model.to("cpu")


if __name__ == "__main__":
    main()
