"""corrtrack: multi-person pose estimation and tracking in videos with
self-supervised keypoint correspondences (Umer et al., ECCV 2020)."""
from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17, POSETRACK18, POSEVAL15, KeypointLayout, convert_keypoints
from corrtrack.structures import FrameInfo, Poses, PoseSequence

__version__ = "0.1.0"

__all__ = [
    "COCO17", "POSETRACK18", "POSEVAL15", "CorrtrackError", "FrameInfo", "KeypointLayout",
    "PoseSequence", "PoseTracker", "Poses", "RunConfig", "TrackerConfig", "convert_keypoints", "__version__",
]

_LAZY = {"PoseTracker": "corrtrack.pipeline.run", "RunConfig": "corrtrack.pipeline.run",
         "TrackerConfig": "corrtrack.pipeline.tracker"}


def __getattr__(name: str):
    # The tracker's modules load on first use: `import corrtrack` stays light (the CLI's fast start).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'corrtrack' has no attribute {name!r}")
