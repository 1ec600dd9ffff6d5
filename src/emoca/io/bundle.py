"""Result containers: frozen dataclasses of tensors with device moves, numpy views, saving."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["TensorBundle"]

T = TypeVar("T", bound="TensorBundle")


class TensorBundle:
    """Mixin for frozen dataclasses of tensors: device moves, numpy views, saving.

    Fields that are ``None`` stay ``None``; non-tensor fields are carried over unchanged.
    """

    def _map(self: T, fn: Any) -> T:
        changes = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            changes[f.name] = fn(v) if isinstance(v, torch.Tensor) else v
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """Like ``Tensor.to`` on every tensor field."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self: T) -> T:
        return self._map(lambda t: t.detach())

    def numpy(self) -> dict[str, Any]:
        """Fields as numpy arrays (CPU, detached); ``None`` fields are left out."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out[f.name] = v.detach().cpu().numpy()
            elif v is not None:
                out[f.name] = v
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the array fields to an ``.npz`` file, atomically; returns the path written.

        As with ``np.savez``, ``.npz`` is appended when ``path`` lacks it.
        """
        from emoca.io.atomic import atomic_write

        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        arrays = {k: np.asarray(v) for k, v in self.numpy().items()
                  if isinstance(v, (np.ndarray, int, float, bool))}
        with atomic_write(target, "wb") as f:
            np.savez(f, **arrays)
        return target
