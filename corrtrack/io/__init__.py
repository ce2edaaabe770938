"""Readers and writers: video/frame sources, PoseTrack, COCO and CSV files.

Names are imported on first use (PEP 562), so ``import corrtrack.io`` stays
cheap and does not load OpenCV for code that only reads annotation files.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "atomic": ("atomic_open", "atomic_path", "write_json"),
    "video": ("Frame", "VideoSource", "VideoWriter", "open_source", "read_image"),
    "coco": ("load_coco_annotations", "read_coco_keypoints", "read_coco_results", "write_coco_results"),
    "csv": ("read_csv", "write_csv"),
    "posetrack": ("read_posetrack", "read_posetrack_dir", "write_posetrack"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
