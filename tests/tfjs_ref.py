"""Reference outputs of the original TF.js graph models, for parity tests.

Runs ``tools/tfjs_ref/run.js`` (pure-JS ``@tensorflow/tfjs`` CPU backend in
node) on one input tensor and returns its outputs. Both sides of a parity test
must feed the *same* tensor: image decoders and resizers differ between
runtimes, so compare raw network outputs on a saved input.

tfjs is slow (nanodet ~8.5 s, movenet lightning ~1.2 s, thunder ~4.9 s per
inference on 2 CPU cores), so results are cached under ``.cache/tfjs_ref/`` by
a hash of model + input. The node dependencies are installed once with
``npm install --ignore-scripts`` into ``tools/tfjs_ref/node_modules``.

In a test::

    from tfjs_ref import run_tfjs_or_skip   # tests/ is on sys.path via conftest
    ref = run_tfjs_or_skip(json_path, x)    # dict: output name -> np.ndarray
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "tfjs_ref"
CACHE = ROOT / ".cache" / "tfjs_ref"
TFJS_VERSION = "4.22.0"


@contextlib.contextmanager
def _lock(name: str):
    """Serialise installs/runs between concurrent test processes."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _installed() -> bool:
    pkg = TOOL / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    try:
        return json.loads(pkg.read_text())["version"] == TFJS_VERSION
    except (OSError, ValueError, KeyError):
        return False


def unavailable_reason() -> str | None:
    """Why the reference cannot run here (None when it can); installs the deps if needed."""
    if shutil.which("node") is None:
        return "node is not installed: the TF.js reference run needs Node.js"
    if _installed():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed: needed once to install @tensorflow/tfjs for the reference run"
    with _lock("install"):
        if _installed():
            return None
        try:
            proc = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"],
                                  cwd=TOOL, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return "npm install @tensorflow/tfjs timed out (is the npm registry reachable?)"
        if proc.returncode != 0 or not _installed():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return f"npm install @tensorflow/tfjs@{TFJS_VERSION} failed (is the npm registry reachable?): {last}"
    return None


def _model_digest(model_json: Path) -> str:
    h = hashlib.sha256(model_json.read_bytes())
    spec = json.loads(model_json.read_text())
    for group in spec.get("weightsManifest", []):
        for p in group["paths"]:
            h.update((model_json.parent / p).read_bytes())
    return h.hexdigest()


def _read_outputs(folder: Path) -> dict[str, np.ndarray]:
    meta = json.loads((folder / "outputs.json").read_text())
    return {o["name"]: np.fromfile(folder / o["file"], dtype="<f4").reshape(o["shape"])
            for o in meta["outputs"]}


def run_tfjs(model_json: str | os.PathLike, input_array: np.ndarray,
             nodes: list[str] | None = None, timeout: float = 600) -> dict[str, np.ndarray] | None:
    """Outputs of the TF.js graph ``model_json`` for ``input_array`` (batch included).

    Integer arrays are fed as int32, everything else as float32. ``nodes``:
    graph node names to fetch instead of the signature outputs. Returns
    ``{name: float32 array}``, or None when node/npm are absent (see
    ``unavailable_reason``). Raises RuntimeError when the run itself fails.
    """
    model_json = Path(model_json)
    if unavailable_reason() is not None:
        return None
    x = np.asarray(input_array)
    dtype = "int32" if np.issubdtype(x.dtype, np.integer) else "float32"
    x = np.ascontiguousarray(x, dtype="<i4" if dtype == "int32" else "<f4")
    key = hashlib.sha256()
    key.update(_model_digest(model_json).encode())
    key.update(f"{dtype}{x.shape}{nodes}".encode())
    key.update(x.tobytes())
    folder = CACHE / key.hexdigest()[:32]
    if (folder / "outputs.json").is_file():
        return _read_outputs(folder)
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".run-") as tmp:
        inp = Path(tmp) / "input.raw"
        x.tofile(inp)
        out = Path(tmp) / "out"
        cmd = ["node", str(TOOL / "run.js"), str(model_json), str(inp), ",".join(map(str, x.shape)),
               dtype, str(out)]
        if nodes:
            cmd.append(",".join(nodes))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"tfjs reference run failed for {model_json}: {proc.stderr.strip()[-2000:]}")
        with contextlib.suppress(OSError):  # another process may have cached it meanwhile
            os.replace(out, folder)
    return _read_outputs(folder)


def run_tfjs_or_skip(model_json: str | os.PathLike, input_array: np.ndarray,
                     nodes: list[str] | None = None) -> dict[str, np.ndarray]:
    """``run_tfjs`` inside a pytest test: skips the test with the reason when node is absent."""
    import pytest

    out = run_tfjs(model_json, input_array, nodes)
    if out is None:
        pytest.skip(unavailable_reason() or "TF.js reference unavailable")
    return out
