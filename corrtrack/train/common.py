"""What every training loop of corrtrack shares: devices and torchrun DDP, RNG state
capture, checkpoints written atomically and resumed exactly, the per-step
sampler that makes sample i a function of (seed, i), and the CSV metrics log.

Exact resume rests on three things: every sample is drawn from its own
``np.random.default_rng([seed, ..., i])`` (``StepSampler`` hands each rank the
indices of its slice of every global batch and can start mid-epoch), the
checkpoint holds model, optimizer, step and the global RNG states
(``rng_state``), and the metrics log is cut back to the checkpoint's step.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from corrtrack.errors import CorrtrackError
from corrtrack.io.atomic import atomic_open, atomic_path

# How a run is executed, not what it computes: left out of the configuration a
# checkpoint must match to be resumed.
RUNTIME_FIELDS = ("out_dir", "device", "workers", "progress", "checkpoint_every", "log_every")


# -- devices and DDP --------------------------------------------------------------

def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CorrtrackError("device: cuda requested but no GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` job (world 1 without torchrun)."""

    world: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Read torchrun's environment, pick the device, join the process group when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return Dist(world, rank, local_rank, dev)


def average_gradients(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """Plain data parallelism: every rank ends the step with the mean gradient."""
    if world <= 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- RNG and configuration ----------------------------------------------------------

def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_dict(cfg, runtime: Sequence[str] = RUNTIME_FIELDS) -> dict:
    """The dataclass ``cfg`` as plain JSON types, without the fields in ``runtime``."""
    d = dataclasses.asdict(cfg)
    for key in runtime:
        d.pop(key, None)
    return json.loads(json.dumps(d))


# -- checkpoints ----------------------------------------------------------------------

def save_checkpoint(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, device: torch.device, config: dict) -> dict | None:
    """The checkpoint at ``path`` (None if there is none); refused when written with another config."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise CorrtrackError(f"{path}: not a readable checkpoint ({type(e).__name__}); "
                             "use --no-resume to start over") from None
    if not isinstance(state, dict) or state.get("config") != config:
        raise CorrtrackError(f"{path}: was written with another configuration "
                             "(use a new output folder, or --no-resume to start over)")
    return state


# -- data order -----------------------------------------------------------------------

def epoch_permutation_index(seed: int, n: int, i: int) -> int:
    """Record of sample ``i``: epochs are fresh permutations of the ``n`` records."""
    epoch, pos = divmod(i, n)
    return int(np.random.default_rng([seed, 0, epoch]).permutation(n)[pos])


class StepSampler(torch.utils.data.Sampler):
    """Sample indices of this rank for global steps ``start``, ``start + 1``, ... ``end - 1``."""

    def __init__(self, start: int, end: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.end, self.batch, self.rank, self.world = start, end, batch, rank, world

    def __iter__(self):
        for s in range(self.start, self.end):
            base = (s * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.end - self.start) * self.batch


# -- metrics ----------------------------------------------------------------------------

class MetricsLog:
    """``metrics.csv``: one row per logged step; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: Path, fields: Sequence[str]):
        self.path, self.fields = path, tuple(fields)
        self.rows: list[dict] = []

    def load(self, upto: int) -> None:
        if not self.path.is_file():
            self.rows = []
            return
        with open(self.path, newline="") as f:
            self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= upto]

    def append(self, row: dict) -> None:
        self.rows.append(row)

    def write(self) -> None:
        with atomic_open(self.path, "w") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(self.rows)


# -- images -----------------------------------------------------------------------------

def read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CorrtrackError(f"{path}: cannot read image")
    return np.ascontiguousarray(img[..., ::-1])


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness / contrast jitter and an occasional blur, as real frames vary."""
    import cv2

    alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    out = cv2.convertScaleAbs(img, alpha=alpha, beta=beta)
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    return out


def progress_bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
