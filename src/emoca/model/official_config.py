"""The official model folders' configuration: ``cfg.yaml`` read safely, the authors'
absolute paths mapped into the user's assets folder, and the checkpoint EMOCA picks."""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from emoca.model.weights import CheckpointError

__all__ = ["ASSET_ANCHORS", "best_checkpoint", "read_config", "resolve_author_path",
           "resolve_config_paths"]

log = logging.getLogger(__name__)

# First folder of each official download inside the assets folder.
ASSET_ANCHORS: tuple[str, ...] = ("FLAME", "DECA", "EMOCA", "EmotionRecognition",
                                  "FaceRecognition")
_PATH_KEYS = ("pretrained_modelpath", "displacement_mask")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official ``cfg.yaml`` (OmegaConf-saved YAML) into plain dicts/lists."""
    from emoca.io.yaml_file import read_yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top level")
    return cfg


def resolve_author_path(path: str, root: str | os.PathLike) -> Path | None:
    """Map a path on the authors' machines into the local assets folder.

    The official configs hold absolute paths such as
    ``/ps/scratch/rdanecek/data/FLAME/geometry/generic_model.pkl``. The part from an asset
    folder name (:data:`ASSET_ANCHORS`) on is kept and put under ``root``. When an anchor
    name occurs more than once (``.../EMOCA/models/EMOCA/...``) the first candidate that
    exists wins, else the one from the right-most anchor.

    Returns:
        The local path, or ``None`` when no anchor occurs in ``path``.
    """
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    candidates = [Path(root).joinpath(*parts[i:]) for i, p in enumerate(parts)
                  if p in ASSET_ANCHORS]
    if not candidates:
        return None
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[-1]


def _is_path_key(key: str) -> bool:
    return key.endswith("_path") or key in _PATH_KEYS


def resolve_config_paths(cfg: Mapping[str, Any], root: str | os.PathLike,
                         model_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A copy of an official config with author paths moved into ``root``.

    Every ``model`` entry named ``*_path`` (or ``pretrained_modelpath``,
    ``displacement_mask``) holding an absolute path is resolved with
    :func:`resolve_author_path` (unresolvable ones are kept). With ``model_dir``, the
    ``inout`` folders point into it as EMOCA's ``load_model`` does
    (``<model_dir>/<stage>/checkpoints``). Works on staged (``coarse``/``detail``) and
    single-stage configs, and on EmoDECA's nested ``model.deca_cfg``.
    """
    out = copy.deepcopy(dict(cfg))

    def fix_stage(stage: dict[str, Any], stage_name: str | None) -> None:
        model = stage.get("model")
        if isinstance(model, dict):
            for key, value in list(model.items()):
                if _is_path_key(key) and isinstance(value, str) and value.startswith("/"):
                    local = resolve_author_path(value, root)
                    if local is not None:
                        model[key] = str(local)
            nested = model.get("deca_cfg")
            if isinstance(nested, dict):
                fix_stage(nested, None)
        inout = stage.get("inout")
        if model_dir is not None and isinstance(inout, dict) and stage_name is not None:
            base = Path(model_dir) / stage_name if stage_name else Path(model_dir)
            inout["full_run_dir"] = str(base)
            inout["checkpoint_dir"] = str(base / "checkpoints")
            inout["output_dir"] = str(Path(model_dir).parent)

    stages = [s for s in ("coarse", "detail") if isinstance(out.get(s), dict)]
    if stages:
        for s in stages:
            fix_stage(out[s], s)
    else:
        fix_stage(out, "")
    return out


def best_checkpoint(directory: str | os.PathLike) -> Path:
    """The checkpoint EMOCA's ``locate_checkpoint(mode="best")`` picks.

    All ``*.ckpt`` below ``directory`` (recursively, sorted by path) except ``last``; the
    number after the last ``=`` of the file stem is the validation loss; the lowest wins
    (on a tie the later one in sorted order, as the official ``<=``).

    Raises:
        FileNotFoundError: no checkpoint, or none with a readable loss (files listed).
    """
    directory = Path(directory)
    found = sorted(directory.rglob("*.ckpt"))
    best: tuple[float, Path] | None = None
    for path in found:
        if path.stem == "last" or path.stem.startswith("last-"):
            continue
        tail = path.stem[path.stem.rfind("=") + 1:] if "=" in path.stem else ""
        try:
            loss = float(tail)
        except ValueError:
            log.debug("skipping %s: no loss value after '='", path)
            continue
        if math.isnan(loss):
            continue
        if best is None or loss <= best[0]:
            best = (loss, path)
    if best is None:
        listing = ", ".join(str(p.relative_to(directory)) for p in found) or "none"
        raise FileNotFoundError(
            f"{directory}: no checkpoint named '...=<validation loss>.ckpt' "
            f"(found: {listing}); last.ckpt is never used")
    log.info("best checkpoint in %s: %s (loss %.8f)", directory, best[1].name, best[0])
    return best[1]
