"""How torch's OpenMP threads wait for work: set once, before torch is imported.

Between two parallel regions an OpenMP thread either spins (burns its core,
ready at once) or sleeps (the OS wakes it, slower). The pipeline runs many
short regions - a MoveNet crop, a correspondence propagation - so waking is a
real cost, but a spinning thread steals the core from anyone else. Measured on
this 2-core machine, vtest.avi end to end, 2 torch threads
(``benchmarks/bench_openmp.py``: bench_speed, 40 frames):

==================  ============  ======================================
GNU OpenMP waits    alone         beside a busy process on one core
==================  ============  ======================================
PASSIVE (sleep)     249 ms/frame  334 ms/frame
spin 2000, sleep    204 ms/frame  375 ms/frame
spin 20000, sleep   183 ms/frame  1113 ms/frame
default (300000)    182 ms/frame  851 ms/frame
==================  ============  ======================================

A short spin keeps most of the gain when the process has the cores and
loses little when it shares them, where the default spin loses 2.5x; so it is
what ``corrtrack`` sets unless the user has chosen (``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` in the environment win). Worker processes
(``--workers``) split the cores between them and inherit the same setting.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping

SPIN_COUNT = "2000"


def set_openmp_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set a short OpenMP spin in ``environ`` unless the user chose a wait policy; returns what is in effect."""
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {k: environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ}


def describe(environ: MutableMapping[str, str] = os.environ) -> str:
    """The wait setting in effect, for benchmark reports: e.g. 'GOMP_SPINCOUNT=2000'."""
    parts = [f"{k}={environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ]
    return ", ".join(parts) or "OpenMP default wait"
