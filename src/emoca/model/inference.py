"""Throughput settings for the encoders: mixed precision, channels-last, pinned transfers.

What each does, and what it changes in the numbers:

- ``precision="bf16"`` / ``"fp16"``: the encoders (three ResNet-50s and their MLP heads)
  run under :func:`torch.autocast`; convolutions and matrix products in 16 bits, the codes
  are cast back to float32. FLAME, landmarks, the emotion head and the renders stay in
  float32 (they are a small share of the time and their outputs are in metres/pixels).
  bf16 keeps fp32's range with an 8-bit mantissa; fp16 has a 10-bit mantissa but
  overflows above 65504 (not checked on the official weights here). How far the codes move
  is measured in ``tests/test_inference.py``. ``"fp32"`` changes nothing.
- ``channels_last``: the encoders' weights and inputs in NHWC memory order, which cuDNN's
  tensor-core convolutions want; the numbers are the same up to float reordering.
- :func:`to_device`: a CPU batch goes through page-locked (pinned) memory and a
  non-blocking copy when the target is CUDA, so the copy overlaps the previous batch's
  compute; elsewhere it is a plain ``.to``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["PRECISIONS", "autocast", "to_channels_last", "to_device"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """Mixed precision for the code inside (no-op for ``"fp32"``)."""
    dtype = check_precision(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def to_channels_last(modules: list[nn.Module | None]) -> None:
    """Convert the 4-D weights of ``modules`` to NHWC memory order, in place."""
    for m in modules:
        if m is not None:
            m.to(memory_format=torch.channels_last)


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool = False
              ) -> torch.Tensor:
    """``batch`` on ``device``: pinned + non-blocking for CUDA; NHWC when asked."""
    if device.type == "cuda" and batch.device.type == "cpu":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    if channels_last and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
