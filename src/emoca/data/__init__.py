"""Datasets for training and evaluating emotion recognition and EMOCA: annotation readers
(AffectNet, AFEW-VA, a folder + CSV of labels), class-balanced sampling weights, and a
cache of preprocessed face crops with its torch Dataset."""

from emoca.data.afew_va import read_afew_va, read_afew_va_video
from emoca.data.affectnet import parse_landmarks, read_affectnet_csv
from emoca.data.crop_cache import FaceCropDataset, read_crop_index, write_crop_cache
from emoca.data.label_csv import read_label_csv
from emoca.data.records import EXPRESSION_NAMES, NO_EXPRESSION, FaceRecord, parse_expression
from emoca.data.sampling import class_balanced_weights, class_counts

__all__ = [
    "EXPRESSION_NAMES",
    "NO_EXPRESSION",
    "FaceCropDataset",
    "FaceRecord",
    "class_balanced_weights",
    "class_counts",
    "parse_expression",
    "parse_landmarks",
    "read_affectnet_csv",
    "read_afew_va",
    "read_afew_va_video",
    "read_crop_index",
    "read_label_csv",
    "write_crop_cache",
]
