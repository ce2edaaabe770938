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
