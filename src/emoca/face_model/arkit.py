"""Apple ARKit's 52 blendshape names and their link to ICT-FaceKit's 53 expression modes.

ARKit (``ARFaceAnchor.BlendShapeLocation``) names each shape in lowerCamelCase with
``Left``/``Right`` for the subject's left and right; ICT-FaceKit names the same shapes
with ``_L``/``_R`` suffixes, splits ``browInnerUp`` and ``cheekPuff`` into halves and has
no ``tongueOut``. Animation tools (Blender add-ons, Unreal Live Link, three.js examples)
expect Apple's names, so everything we write uses :data:`ARKIT_NAMES`.

The link is a fixed 0/1 matrix (:func:`arkit_to_ict_matrix`): ICT weights =
ARKit weights @ M. One ARKit shape drives both ICT halves where ICT splits it; going
back, the halves are averaged (:func:`ict_to_arkit`). ``tongueOut`` drives no ICT mode.

:func:`arkit_targets` turns this into the 52 ARKit blendshapes of an ICT model: the morph
targets every GLB we write carries (``emoca animate``'s animation and ``emoca fit``'s mesh).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ARKIT_NAMES",
    "LIVE_LINK_ORDER",
    "arkit_to_ict",
    "arkit_targets",
    "arkit_to_ict_matrix",
    "ict_name_to_arkit",
    "ict_to_arkit",
]

# Apple's documented order (alphabetical by region), 52 names.
ARKIT_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip

# Column order of the Live Link Face app's CSV (after Timecode, BlendShapeCount); the
# app capitalises the first letter (``EyeBlinkLeft``).
LIVE_LINK_ORDER: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip


def ict_name_to_arkit(name: str) -> str | None:
    """ARKit name an ICT-FaceKit expression mode belongs to, or None (ICT-only modes).

    ``mouthSmile_L`` -> ``mouthSmileLeft``; both ``cheekPuff_L`` and ``cheekPuff_R`` ->
    ``cheekPuff``; ``PupilDilate_L`` / ``cheekRaiser_L`` -> None.
    """
    base, side = name, ""
    if name.endswith(("_L", "_R")):
        base, side = name[:-2], {"_L": "Left", "_R": "Right"}[name[-2:]]
    for candidate in (base + side, base):
        if candidate in ARKIT_NAMES:
            return candidate
    return None


def arkit_to_ict_matrix(ict_names: Sequence[str]) -> np.ndarray:
    """(52, len(ict_names)) float32 0/1 matrix: ICT weights = ARKit weights @ M."""
    m = np.zeros((len(ARKIT_NAMES), len(ict_names)), np.float32)
    for j, name in enumerate(ict_names):
        arkit = ict_name_to_arkit(name)
        if arkit is not None:
            m[ARKIT_NAMES.index(arkit), j] = 1.0
    return m


def arkit_to_ict(arkit: np.ndarray, ict_names: Sequence[str]) -> np.ndarray:
    """ARKit weights (..., 52) -> ICT weights (..., len(ict_names)); ICT-only modes get 0."""
    return np.asarray(arkit, np.float32) @ arkit_to_ict_matrix(ict_names)


def ict_to_arkit(ict: np.ndarray, ict_names: Sequence[str]) -> np.ndarray:
    """ICT weights (..., n) -> ARKit weights (..., 52): split halves are averaged.

    ``tongueOut`` (no ICT mode) comes out 0.
    """
    m = arkit_to_ict_matrix(ict_names)
    count = np.maximum(m.sum(1), 1.0)
    return (np.asarray(ict, np.float32) @ m.T) / count


def arkit_targets(model) -> np.ndarray:
    """(52, V, 3) float64 ARKit blendshapes of an ICT-FaceKit model, in its units (cm).

    Target k = sum_j M[k, j] expression_mode_j with M = :func:`arkit_to_ict_matrix`, so
    ``sum_k a_k target_k`` is the model's expression offset at ICT weights ``a @ M``.

    Args:
        model: an :class:`emoca.face_model.ict.ICTFaceModel` (any region): its
            ``expression_modes`` (n, V, 3) and ``expression_names``.
    """
    m = arkit_to_ict_matrix(model.expression_names).astype(np.float64)
    modes = model.expression_modes.detach().cpu().double().numpy()
    return np.einsum("kj,jvc->kvc", m, modes)
