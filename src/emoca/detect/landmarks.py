"""MediaPipe face mesh (478 points) to iBUG / Multi-PIE 68 landmarks.

Each of the 68 points is the mean of one or two MediaPipe points, as in the
correspondence table of PeizhiYan/Mediapipe_2_Dlib_Landmarks (``mp2dlib.py``), which
refines the single-index table widely copied from MediaPipe issue threads
(``162, 234, 93, 58, 172, ...``): contour ends at the ear line (127/356, not the temples
162/389), lower-lip points spread evenly between the corners (321 ... 91), and averaged
pairs for nose bridge and jaw corners. Checked on real photos (`tests/test_detect.py`).

iBUG 68 order (0-based), "left" meaning the image's left (the subject's right):
0-16 jaw contour left ear -> chin (8) -> right ear; 17-21 left brow outer -> inner;
22-26 right brow inner -> outer; 27-30 nose bridge top -> tip; 31-35 nostril base left ->
right; 36-41 left eye from the outer corner, clockwise (36 outer, 39 inner);
42-47 right eye from the inner corner (42 inner, 45 outer); 48-59 outer lip from the left
corner (48) over the top to the right corner (54) and back below; 60-67 inner lip from the
left corner (60, 64 right corner).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

# One row per iBUG point: the MediaPipe indices whose mean gives it.
_PAIRS: tuple[tuple[int, ...], ...] = (
    # jaw 0-16
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows 17-21, 22-26
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30, base 31-35
    (168, 6), (197, 195), (5,), (4,),
    (75,), (97,), (2,), (326,), (305,),
    # eyes 36-41, 42-47
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lip 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),
    (321,), (314,), (17,), (84,), (91,),
    # inner lip 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)

#: (68, 2) int64: iBUG point i is the mean of MediaPipe points
#: ``MEDIAPIPE_TO_IBUG68[i, 0]`` and ``MEDIAPIPE_TO_IBUG68[i, 1]`` (equal for single points).
MEDIAPIPE_TO_IBUG68: np.ndarray = np.array(
    [p if len(p) == 2 else (p[0], p[0]) for p in _PAIRS], dtype=np.int64
)
MEDIAPIPE_TO_IBUG68.setflags(write=False)

#: iBUG-68 index ranges by part (Python slices over the 68 points).
IBUG68_PARTS: dict[str, slice] = {
    "jaw": slice(0, 17),
    "left_brow": slice(17, 22),
    "right_brow": slice(22, 27),
    "nose_bridge": slice(27, 31),
    "nose_base": slice(31, 36),
    "left_eye": slice(36, 42),
    "right_eye": slice(42, 48),
    "outer_lip": slice(48, 60),
    "inner_lip": slice(60, 68),
}

_A = TypeVar("_A", np.ndarray, torch.Tensor)


def mediapipe_to_ibug68(points: _A) -> _A:
    """Map MediaPipe mesh points to the 68 iBUG landmarks.

    Args:
        points: (..., 468 or 478, D) numpy array or tensor (any D, e.g. 2 or 3); the iris
            points 468..477 are not used.

    Returns:
        (..., 68, D) of the same type (numpy float64, or the tensor's dtype and device).
    """
    if points.shape[-2] not in (468, 478):
        raise ValueError(f"expected 468 or 478 MediaPipe points, got shape {tuple(points.shape)}")
    if isinstance(points, torch.Tensor):
        idx = torch.tensor(MEDIAPIPE_TO_IBUG68, device=points.device)
        return 0.5 * (points[..., idx[:, 0], :] + points[..., idx[:, 1], :])
    points = np.asarray(points, dtype=np.float64)
    return 0.5 * (points[..., MEDIAPIPE_TO_IBUG68[:, 0], :]
                  + points[..., MEDIAPIPE_TO_IBUG68[:, 1], :])
