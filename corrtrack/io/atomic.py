"""Atomic file writes: write to a temporary name beside the target, then rename.

An interrupted run therefore leaves either the old file or the complete new one,
never a half-written file.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    For writers that need a file name rather than a file object (e.g. OpenCV's
    VideoWriter). ``suffix`` defaults to the target's suffix so that writers that
    pick a format from the extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix + ".part")
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the permissions open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing, atomically (``mode`` "w" or "wb")."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    with atomic_path(path, suffix=".part") as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


class JsonStream:
    """A JSON array whose items come from an iterable, written one by one by ``write_json``:
    a tracking result of an hour of video never has to be a list in memory."""

    def __init__(self, items: Iterable[Any]):
        self.items = items


def _dump(obj: Any, f: IO) -> None:
    if isinstance(obj, JsonStream):
        f.write("[")
        for i, item in enumerate(obj.items):
            f.write(("," if i else "") + json.dumps(item))
        f.write("]")
    elif isinstance(obj, dict) and any(isinstance(v, JsonStream) for v in obj.values()):
        f.write("{")
        for i, (k, v) in enumerate(obj.items()):
            f.write(("," if i else "") + json.dumps(str(k)) + ":")
            _dump(v, f)
        f.write("}")
    else:
        f.write(json.dumps(obj))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Write ``obj`` as JSON atomically. ``JsonStream`` values (top level, or values of a
    top-level dict) are streamed item by item; ``indent`` applies to plain objects only."""
    with atomic_open(path, "w") as f:
        if indent is not None:
            json.dump(obj, f, indent=indent)
        else:
            # one json.dumps per item: much faster than json.dump's many small writes
            _dump(obj, f)
