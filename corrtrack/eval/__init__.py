"""Evaluation: the PoseTrack metrics (per-joint AP and CLEAR-MOT), equal to poseval.

No torch here: ``corrtrack eval`` starts fast and runs anywhere.
"""
from corrtrack.eval.posetrack import (
    COUNT_NAMES,
    GROUPS,
    JOINTS,
    APResult,
    MOTResult,
    PoseTrackEvaluation,
    evaluate,
)

__all__ = ["APResult", "COUNT_NAMES", "GROUPS", "JOINTS", "MOTResult", "PoseTrackEvaluation", "evaluate"]
