"""Batch sizes rounded up to powers of two on a GPU.

The pose model gets one batch per frame whose size is the number of people, and the
refinement module one per group of tracks, so a tracked video feeds them many batch
sizes. On a GPU the first call with a new input shape is slow (cuDNN picks and builds
its kernels per shape), so without buckets a video keeps paying that cost whenever the
number of people changes. Padding to the next power of two bounds the distinct shapes
to a handful; the padded rows are zeros and are dropped. On a CPU nothing is padded:
there the extra rows would cost their full compute.
"""
from __future__ import annotations

import torch


def bucket(n: int) -> int:
    """The smallest power of two >= n (0 stays 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def pad_batch(x: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """``x`` with zero rows appended along dim 0 up to ``size`` (default: ``bucket(len(x))``), CUDA only."""
    if x.device.type != "cuda" or len(x) == 0:
        return x
    size = bucket(len(x)) if size is None else size
    if size <= len(x):
        return x
    return torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])
