"""One labelled face: the record type every dataset reader returns, and expression names."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EXPRESSION_NAMES",
    "NO_EXPRESSION",
    "FaceRecord",
    "parse_expression",
]

# AffectNet's 8 emotion classes, in AffectNet's index order (0..7). AffectNet's 8, 9, 10
# (None, Uncertain, No-Face) are not emotions and are dropped by the readers.
EXPRESSION_NAMES: tuple[str, ...] = (
    "Neutral",
    "Happy",
    "Sad",
    "Surprise",
    "Fear",
    "Disgust",
    "Anger",
    "Contempt",
)
NO_EXPRESSION = -1  # label value of a record without an expression annotation

_ALIASES = {
    "neutral": 0,
    "happy": 1,
    "happiness": 1,
    "sad": 2,
    "sadness": 2,
    "surprise": 3,
    "surprised": 3,
    "fear": 4,
    "fearful": 4,
    "disgust": 5,
    "disgusted": 5,
    "anger": 6,
    "angry": 6,
    "contempt": 7,
}


def parse_expression(value: str | int | float | None) -> int:
    """Expression label from an index (``3``, ``"3"``) or a name (``"Surprise"``, any case,
    common adjective forms like ``"angry"`` accepted); empty / ``None`` / NaN -> ``-1``.

    Raises:
        ValueError: unknown name or index outside 0..7.
    """
    if value is None:
        return NO_EXPRESSION
    if isinstance(value, float):
        if math.isnan(value):
            return NO_EXPRESSION
        if not value.is_integer():
            raise ValueError(f"expression index must be an integer, got {value}")
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return NO_EXPRESSION
        try:
            value = int(text)
        except ValueError:
            key = text.lower()
            if key not in _ALIASES:
                raise ValueError(
                    f"unknown expression {text!r}; expected one of {EXPRESSION_NAMES}"
                ) from None
            return _ALIASES[key]
    if not 0 <= int(value) < len(EXPRESSION_NAMES):
        raise ValueError(f"expression index {value} outside 0..{len(EXPRESSION_NAMES) - 1}")
    return int(value)


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """A labelled face image.

    Attributes:
        path: image path, relative to the dataset's image root (as written in the
            annotation file) or absolute.
        key: unique id within the dataset (used for cache file names).
        expression: class index 0..7 (:data:`EXPRESSION_NAMES`) or ``-1`` if unlabelled.
        valence: in [-1, 1], ``nan`` if unlabelled.
        arousal: in [-1, 1], ``nan`` if unlabelled.
        box: face box ``(x, y, width, height)`` in image pixels, or ``None``.
        landmarks: (68, 2) float32 pixel coordinates (x, y) of the iBUG 68 points, or
            ``None``.
        group: identity / video the image belongs to ("" if unknown), for splits and
            identity-grouped batches.
    """

    path: str
    key: str
    expression: int = NO_EXPRESSION
    valence: float = float("nan")
    arousal: float = float("nan")
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    group: str = ""

    @property
    def has_expression(self) -> bool:
        return self.expression >= 0

    @property
    def has_va(self) -> bool:
        return not (math.isnan(self.valence) or math.isnan(self.arousal))

    @property
    def expression_name(self) -> str | None:
        return EXPRESSION_NAMES[self.expression] if self.has_expression else None
