"""Face models by name: one table that every loader (``emoca fit``, the API) uses.

A face model is anything following :class:`emoca.face_model.base.FaceModel`; the table
maps a name to how it is loaded from the user's files. ``"ict"`` is the open ICT-FaceKit
model (MIT, shipped with the package); ``"flame"`` reads the user's licensed FLAME files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FACE_MODELS", "FaceModelEntry", "load_face_model"]


@dataclass(frozen=True)
class FaceModelEntry:
    """How to load one face model: ``load(assets, path) -> FaceModel`` and what it needs."""

    name: str
    description: str
    load: Callable[[Any, Path | None], Any]
    licensed: bool


def _load_ict(assets: Any, path: Path | None) -> Any:
    from emoca.face_model.ict import ICTFaceModel

    return ICTFaceModel.default(path, assets, region="whole_head")


def _load_flame(assets: Any, path: Path | None) -> Any:
    from emoca.assets.locate import Assets
    from emoca.face_model.flame import FLAME

    a = assets if isinstance(assets, Assets) else Assets(assets)
    return FLAME.from_file(a.path("flame_model"), a.path("landmark_embedding"),
                           template_obj=a.path("head_template"))


FACE_MODELS: dict[str, FaceModelEntry] = {
    "ict": FaceModelEntry("ict", "ICT-FaceKit (MIT, 53 ARKit-named blendshapes)", _load_ict,
                          licensed=False),
    "flame": FaceModelEntry("flame", "FLAME 2020 (licensed; your assets folder)", _load_flame,
                            licensed=True),
}


def load_face_model(name: str, *, assets: Any = None,
                    ict_dir: str | os.PathLike | None = None) -> Any:
    """Load the face model called ``name`` (a key of :data:`FACE_MODELS`)."""
    from emoca.errors import UsageError

    entry = FACE_MODELS.get(name)
    if entry is None:
        raise UsageError(f"unknown face model {name!r}: choose from {', '.join(FACE_MODELS)}")
    return entry.load(assets, Path(ict_dir) if ict_dir is not None else None)
