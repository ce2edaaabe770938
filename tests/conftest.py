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
