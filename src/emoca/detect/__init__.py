"""Face detection, landmarks and DECA crop geometry.

Backends (`create_detector(name)`, CLI ``--detector name``): ``mediapipe`` (default;
boxes + 478-point mesh), ``mediapipe+dlib`` (the same plus dlib's 68 points in each
face's box), ``dlib`` and ``fan`` (68 iBUG points; optional packages), and
``file`` (boxes or landmarks read from JSON/CSV). Optional packages are imported only
when a backend is built.
"""

from emoca.detect.base import (
    LANDMARK_COUNTS,
    Detection,
    FaceDetector,
    as_rgb_uint8,
    box_from_points,
    create_detector,
    list_detectors,
    register_detector,
)
from emoca.detect.crop import (
    CropTransform,
    FaceCrop,
    bbox2point,
    crop_transform_for_detection,
    crop_transform_from_box,
    crop_transform_from_landmarks,
    crops_from_image,
    image_to_tensor,
    warp_crop,
)
from emoca.detect.dlib_backend import DlibDetector
from emoca.detect.fan_backend import FanDetector
from emoca.detect.file_backend import FileDetector
from emoca.detect.landmarks import IBUG68_PARTS, MEDIAPIPE_TO_IBUG68, mediapipe_to_ibug68
from emoca.detect.mediapipe_backend import MediaPipeDetector
from emoca.detect.mediapipe_dlib import MediaPipeDlibDetector

#: Backend the CLI uses when ``--detector`` is not given.
DEFAULT_DETECTOR = "mediapipe"

__all__ = [
    "DEFAULT_DETECTOR",
    "IBUG68_PARTS",
    "LANDMARK_COUNTS",
    "MEDIAPIPE_TO_IBUG68",
    "CropTransform",
    "Detection",
    "DlibDetector",
    "FaceCrop",
    "FaceDetector",
    "FanDetector",
    "FileDetector",
    "MediaPipeDetector",
    "MediaPipeDlibDetector",
    "as_rgb_uint8",
    "bbox2point",
    "box_from_points",
    "create_detector",
    "crop_transform_for_detection",
    "crop_transform_from_box",
    "crop_transform_from_landmarks",
    "crops_from_image",
    "image_to_tensor",
    "list_detectors",
    "mediapipe_to_ibug68",
    "register_detector",
    "warp_crop",
]
