"""The project's TensorBundle, extended for render results that nest other bundles."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

from emoca.io.bundle import TensorBundle

__all__ = ["RenderBundle"]

T = TypeVar("T", bound="RenderBundle")


class RenderBundle(TensorBundle):
    """:class:`emoca.io.bundle.TensorBundle` that also maps nested bundles (a render's
    ``fragments``) and keeps integer/bool tensors' dtypes when a float dtype is asked."""

    def _map(self: T, fn: Any) -> T:
        changes = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, torch.Tensor):
                changes[field.name] = fn(value)
            elif isinstance(value, RenderBundle):
                changes[field.name] = value._map(fn)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """Like ``Tensor.to`` on every tensor, nested ones included; indices and masks keep
        their dtype (only floating tensors change dtype)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if t.is_floating_point():
                return t.to(*args, **kwargs)
            no_dtype = [a for a in args if not isinstance(a, torch.dtype)]
            return t.to(*no_dtype, **{k: v for k, v in kwargs.items() if k != "dtype"})

        return self._map(move)

    def numpy(self) -> dict[str, Any]:
        """Fields as numpy arrays (CPU, detached); nested bundles as ``outer.inner`` keys."""
        out = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, RenderBundle):
                out.update({f"{field.name}.{k}": v for k, v in value.numpy().items()})
            elif isinstance(value, torch.Tensor):
                out[field.name] = value.detach().cpu().numpy()
            elif value is not None:
                out[field.name] = value
        return out
