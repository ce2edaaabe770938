"""corrtrack: multi-person pose estimation and tracking in videos with
self-supervised keypoint correspondences (Umer et al., ECCV 2020)."""
from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17, POSETRACK18, POSEVAL15, KeypointLayout, convert_keypoints
from corrtrack.structures import FrameInfo, Poses, PoseSequence

__version__ = "0.1.0"

__all__ = [
    "COCO17", "POSETRACK18", "POSEVAL15", "CorrtrackError", "FrameInfo", "KeypointLayout",
    "PoseSequence", "Poses", "convert_keypoints", "__version__",
]
