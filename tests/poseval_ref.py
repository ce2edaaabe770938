"""The official PoseTrack evaluator (shared/tools/poseval_ref), set up and run for tests.

The reference is copied to ``.cache/poseval_ref`` (``shared`` may be
read-only) and set up once with its own venv from PyPI; a stamp of the source
files skips the set-up on later runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORRTRACK_SHARED", ROOT.parent / "shared")).resolve()
REF_SRC = SHARED / "tools" / "poseval_ref"
REF = ROOT / ".cache" / "poseval_ref"


class ReferenceUnavailable(Exception):
    pass


def _stamp(src: Path) -> str:
    """What a set-up copy was made from (file names, sizes and mtimes)."""
    items = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if rel.parts[0] in (".venv", "out") or "__pycache__" in rel.parts or not p.is_file():
            continue
        st = p.stat()
        items.append(f"{rel}:{st.st_size}:{int(st.st_mtime)}")
    return "\n".join(items)


def ensure_reference() -> Path:
    """The reference, copied to .cache/poseval_ref (without any venv) and set up once."""
    if not (REF_SRC / "setup.sh").is_file():
        raise ReferenceUnavailable(f"official evaluator not found at {REF_SRC} (set CORRTRACK_SHARED)")
    stamp = _stamp(REF_SRC)
    ok = REF / ".corrtrack-ready"
    if ok.is_file() and ok.read_text() == stamp and (REF / ".venv" / "bin" / "python").is_file():
        return REF
    if REF.exists():
        shutil.rmtree(REF, onerror=lambda f, p, e: (os.chmod(p, 0o700), f(p)))
    shutil.copytree(REF_SRC, REF, ignore=shutil.ignore_patterns(".venv", "out", "__pycache__"))
    for p in [REF, *REF.rglob("*")]:  # the shared copy may be read-only
        p.chmod(p.stat().st_mode | 0o200)
    r = subprocess.run(["bash", str(REF / "setup.sh")], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"poseval_ref setup.sh failed (it needs PyPI):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    ok.write_text(stamp)
    return REF


def run_reference(ref: Path, gt_dir: Path, pred_dir: Path, out: Path, ap_only: bool = False) -> dict:
    """Run the official evaluation (per sequence too) and collect its JSON output."""
    args = ["bash", str(ref / "run.sh"), "-s", "-o", str(out)] + (["-e"] if ap_only else []) + [str(gt_dir), str(pred_dir)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"reference failed on {pred_dir}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    log = (out / "poseval.log").read_text()
    # poseval pools sequences in its glob order; ties in AP depend on it, so we use the same order.
    order = re.findall(r"saving results to .*/([^/]+)_AP_metrics\.json", log)
    order = [n for n in order if n != "total"]
    res = {"order": order, "summary": json.loads((out / "summary.json").read_text()),
           "ap": json.loads((out / "total_AP_metrics.json").read_text()),
           "seq_ap": {n: json.loads((out / f"{n}_AP_metrics.json").read_text()) for n in order}}
    if not ap_only:
        res["mot"] = json.loads((out / "total_MOT_metrics.json").read_text())
        res["seq_mot"] = {n: json.loads((out / f"{n}_MOT_metrics.json").read_text()) for n in order}
    return res
