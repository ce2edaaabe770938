"""Shared fixtures: where the real data lives, and skipping when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORRTRACK_SHARED", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} not found (set CORRTRACK_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def poseval_ref() -> Path:
    """The official evaluator, set up in .cache/poseval_ref (see tests/poseval_ref.py)."""
    from poseval_ref import ReferenceUnavailable, ensure_reference

    try:
        return ensure_reference()
    except ReferenceUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP oversubscription on a busy shared CPU (10x slower).
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
