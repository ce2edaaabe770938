"""The self-describing model file shared by our trainable networks (CorrespondenceNet, PoseNet).

One ``torch.save`` dict: ``format`` (which network), ``version``, ``config`` (the network's
dataclass as a dict), ``state_dict`` (fp16 by default: half the size, and inference casts
back to fp32) and free-form ``meta`` (training command, data, metrics). Written atomically.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from corrtrack.errors import CorrtrackError


def save_model(net: nn.Module, path: str | Path, fmt: str, meta: dict | None = None, half: bool = True) -> None:
    """Write ``net`` (which has a dataclass ``config``) to ``path`` as a ``fmt`` model file."""
    from corrtrack.io.atomic import atomic_path

    state = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in net.state_dict().items()}
    obj = {"format": fmt, "version": 1, "config": dataclasses.asdict(net.config), "state_dict": state,
           "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_model_file(path: str | Path, fmt: str, what: str, hint: str = "") -> dict:
    """The dict of a ``fmt`` model file; a one-line CorrtrackError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CorrtrackError(f"{path}: {what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file
        raise CorrtrackError(f"{path}: not a readable model file ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise CorrtrackError(f"{path}: not a corrtrack {what}{hint}")
    return obj


def restore(net: nn.Module, obj: dict, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the file's (fp16) weights into ``net`` as fp32; eval mode, channels-last, on ``map_location``."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CorrtrackError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]})") from None
    net.meta = obj.get("meta", {})
    return net.eval().to(map_location, memory_format=torch.channels_last)
