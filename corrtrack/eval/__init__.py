"""Evaluation: the PoseTrack metrics (per-joint AP and CLEAR-MOT), equal to poseval,
and identity metrics (IDF1 / IDP / IDR, PoseTrack21's keypoint HOTA).

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
from corrtrack.eval.idmetrics import HOTAResult, IDEvaluation, IDResult, combine_id_metrics, evaluate_id_metrics

__all__ = ["APResult", "COUNT_NAMES", "GROUPS", "HOTAResult", "IDEvaluation", "IDResult", "JOINTS", "MOTResult",
           "PoseTrackEvaluation", "combine_id_metrics", "evaluate", "evaluate_id_metrics"]
