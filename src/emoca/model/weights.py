"""State-dict plumbing: route checkpoint keys to modules, validate them, our own file format.

Official checkpoints hold more than the networks a model needs (training-only networks,
renderer and FLAME buffers). Here every key must be either routed to one of our modules
by an explicit prefix table (:class:`KeyMap`) or skipped by an explicit list; anything
else is an error naming the keys. Routed state dicts are then checked against the
module they are meant for (missing keys, unexpected keys, shapes) before any tensor is
copied, so a wrong or tampered checkpoint fails with a message that says what is wrong
instead of loading half a network (never a silent ``strict=False``).

Our own format (:func:`save_pretrained` / :func:`load_pretrained`): one ``model.safetensors``
file whose keys are ``<module>.<key>`` and a small ``config.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoca.errors import InputError

__all__ = [
    "CheckpointError",
    "CheckpointKeyError",
    "CheckpointShapeError",
    "KeyMap",
    "OPTIONAL_SUFFIXES",
    "SAFETENSORS_NAME",
    "CONFIG_NAME",
    "split_state_dict",
    "expected_entries",
    "check_state_dict",
    "materialize",
    "save_pretrained",
    "load_pretrained",
]

SAFETENSORS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
# BatchNorm's step counter is absent from checkpoints written by torch < 0.4.1 and unused in
# eval mode: a checkpoint may lack it.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)
_MAX_LISTED = 12


class CheckpointError(InputError):
    """A checkpoint does not fit the model it is loaded into."""


class CheckpointKeyError(CheckpointError):
    """Keys the model does not expect, or keys it needs that the checkpoint lacks."""


class CheckpointShapeError(CheckpointError):
    """A tensor's shape differs from the parameter it is meant for."""


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:_MAX_LISTED])
    more = f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return shown + more


@dataclass(frozen=True)
class KeyMap:
    """Which checkpoint keys go to which of our modules, and which are skipped on purpose.

    Attributes:
        prefixes: official key prefix -> (our module name, replacement prefix). A key
            ``deca.E_flame.layers.0.weight`` with ``{"deca.E_flame.": ("E_flame", "")}``
            becomes ``layers.0.weight`` of module ``E_flame``. The longest matching prefix
            wins.
        ignored_prefixes: key prefixes skipped on purpose (training-only networks,
            buffers our modules rebuild from the asset files).
        ignored_keys: whole keys skipped on purpose.
    """

    prefixes: Mapping[str, tuple[str, str]]
    ignored_prefixes: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_order", tuple(sorted(self.prefixes, key=len, reverse=True)))

    def is_ignored(self, key: str) -> bool:
        return key in self.ignored_keys or any(key.startswith(p) for p in self.ignored_prefixes)

    def route(self, key: str) -> tuple[str, str] | None:
        """``(module, key within module)`` for a mapped key, ``None`` for an unmapped one."""
        for prefix in self._order:
            if key.startswith(prefix):
                module, replacement = self.prefixes[prefix]
                return module, replacement + key[len(prefix):]
        return None

    def with_outer_prefix(self, outer: str) -> KeyMap:
        """The same map for a checkpoint that nests everything under ``outer``."""
        return KeyMap(
            prefixes={outer + p: target for p, target in self.prefixes.items()},
            ignored_prefixes=tuple(outer + p for p in self.ignored_prefixes),
            ignored_keys=tuple(outer + k for k in self.ignored_keys),
        )


def split_state_dict(
    state: Mapping[str, Any], keymap: KeyMap, source: str
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Route every key of a checkpoint's state dict to a module, or skip it explicitly.

    Args:
        state: the checkpoint's flat state dict.
        keymap: the routing table.
        source: file name for messages.
    Returns:
        (``{module: state_dict}``, skipped keys).
    Raises:
        CheckpointKeyError: keys neither routed nor listed as skippable (all of them named).
    """
    modules: dict[str, dict[str, torch.Tensor]] = {}
    skipped: list[str] = []
    unexplained: list[str] = []
    for key, value in state.items():
        if keymap.is_ignored(key):
            skipped.append(key)
            continue
        target = keymap.route(key)
        if target is None:
            unexplained.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(value).__name__}, not a tensor")
        module, sub = target
        modules.setdefault(module, {})[sub] = value
    if unexplained:
        raise CheckpointKeyError(
            f"{source}: {len(unexplained)} key(s) the model does not use and that are not on "
            f"the list of known training-only/buffer keys: {_listing(unexplained)}. "
            "The file is not one of the supported official checkpoints (or was renamed)."
        )
    return modules, skipped


def expected_entries(module: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{key: (shape, dtype)}`` of a module's state dict (works on the ``meta`` device)."""
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    module_name: str,
    source: str,
    key_prefix: str = "",
) -> None:
    """Compare a state dict with what a module needs; raise naming every problem.

    Args:
        state: the module's state dict from the checkpoint.
        expected: :func:`expected_entries` of the module.
        module_name: for messages.
        source: checkpoint file for messages.
        key_prefix: the official prefix of these keys, so messages name keys as they
            appear in the file.
    Raises:
        CheckpointKeyError: missing needed keys / keys the module does not have.
        CheckpointShapeError: shape mismatches (key, checkpoint shape, model shape).
    """
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s) {module_name} needs: "
                        f"{_listing(key_prefix + k for k in missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) {module_name} does not have: "
                        f"{_listing(key_prefix + k for k in unexpected)}")
    if problems:
        raise CheckpointKeyError(f"{source}: " + "; ".join(problems))
    bad = [
        f"{key_prefix + k!r}: checkpoint {tuple(v.shape)} vs model {expected[k][0]}"
        for k, v in state.items() if tuple(v.shape) != expected[k][0]
    ]
    if bad:
        raise CheckpointShapeError(
            f"{source}: shape mismatch in {module_name} for {len(bad)} tensor(s): "
            + "; ".join(bad[:_MAX_LISTED])
        )


def _has_non_persistent_buffers(module: nn.Module) -> bool:
    return any(m._non_persistent_buffers_set for m in module.modules())


def materialize(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    device: torch.device | str | None = None,
    module_name: str = "module",
    source: str = "<state dict>",
) -> nn.Module:
    """Give a module (built on any device, typically ``meta``) the checkpoint's tensors.

    The state dict is checked first (:func:`check_state_dict`); then the module gets
    storage on ``device`` and every tensor is copied in. Optional entries the checkpoint
    lacks (BatchNorm step counters) are set to zero.

    Returns:
        The same module, on ``device``.
    """
    expected = expected_entries(module)
    check_state_dict(state, expected, module_name, source)
    if _has_non_persistent_buffers(module):
        raise ValueError(f"{module_name} has non-persistent buffers; build it on its device")
    device = torch.device("cpu") if device is None else torch.device(device)
    full = dict(state)
    for key, (shape, dtype) in expected.items():
        if key not in full:
            full[key] = torch.zeros(shape, dtype=dtype)
    module.to_empty(device=device)
    module.load_state_dict(full, strict=True)
    return module


# ---------------------------------------------------------------------------- our format


def save_pretrained(
    directory: str | os.PathLike,
    modules: Mapping[str, nn.Module | Mapping[str, torch.Tensor]],
    config: Mapping[str, Any],
) -> Path:
    """Write ``model.safetensors`` (keys ``<module>.<key>``) and ``config.json``.

    Args:
        directory: created if needed.
        modules: ``{name: module or state dict}``; names must not contain ``.``.
        config: JSON-serialisable settings needed to rebuild the modules.
    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if "." in name or not name:
            raise ValueError(f"module name {name!r} must be non-empty and contain no '.'")
        state = module.state_dict() if isinstance(module, nn.Module) else module
        for key, value in state.items():
            # safetensors refuses views of shared storage: store independent copies
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    save_file(tensors, str(directory / SAFETENSORS_NAME), metadata={"format": "pt"})
    payload = {"format_version": FORMAT_VERSION, "modules": sorted(modules),
               "config": dict(config)}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return directory


def load_pretrained(
    directory: str | os.PathLike, device: torch.device | str | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read what :func:`save_pretrained` wrote.

    Returns:
        (config, ``{module: state_dict}``), tensors exactly as saved.
    Raises:
        FileNotFoundError: the directory lacks one of the two files.
        CheckpointError: the files do not agree (a module listed in the config has no
            tensors, or tensors belong to an unlisted module).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_NAME, SAFETENSORS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: not found (not a saved emoca model)")
    try:
        payload = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: not valid JSON ({e})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(f"{directory / CONFIG_NAME}: unsupported format version "
                              f"{version!r}")
    try:
        tensors = load_file(str(directory / SAFETENSORS_NAME),
                            device=str(torch.device(device) if device is not None else "cpu"))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError
        if type(e).__name__ != "SafetensorError":
            raise
        raise CheckpointError(f"{directory / SAFETENSORS_NAME}: not a readable safetensors "
                              f"file ({e})") from None
    listed = list(payload["modules"])
    modules: dict[str, dict[str, torch.Tensor]] = {name: {} for name in listed}
    stray = []
    for key, value in tensors.items():
        name, _, sub = key.partition(".")
        if name not in modules:
            stray.append(key)
        else:
            modules[name][sub] = value
    empty = [name for name, sd in modules.items() if not sd]
    if stray or empty:
        raise CheckpointError(f"{directory}: tensors of unlisted modules {_listing(stray)}; "
                              f"listed modules without tensors {empty}")
    return dict(payload["config"]), modules
