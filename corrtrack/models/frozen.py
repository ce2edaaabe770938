"""A faster CPU path for inference: the same module, traced and frozen by TorchScript
(or run by ONNX Runtime, below).

Eager PyTorch runs each convolution, activation and addition as its own oneDNN call
and picks its slow reference kernel for some small 1×1 convolutions. A frozen trace
with ``torch.jit.optimize_for_inference`` fuses conv + activation and prepacks the
weights for oneDNN: MoveNet runs 1.1-1.3× and the correspondence features ~2× faster
than eager on CPU (measured on this 2-core machine; ``benchmarks/bench_pose.py``),
within 1e-3 of eager on the raw outputs.
``optimize_for_inference`` (oneDNN layouts) pays off for MoveNet and the correspondence
features but costs NanoDet ~40% (its PAN's resizes and additions convert layouts back and
forth), so NanoDet is frozen without it (``optimize=False``; about eager speed).

Used only where it is safe: CPU tensors, no autograd (inference), and one trace per
input shape (a trace bakes in shape-dependent padding, and Python ints such as
``len(x)`` become constants). A module known to be batch-generic (checked by a test:
MoveNet, NanoDet) may share one trace across batch sizes: ``batch_generic=True``. Anything else - GPU, training,
a module that cannot be traced - runs the eager module, so this never changes *what*
is computed, only how fast.

``runtime="onnx"`` runs the same module through ONNX Runtime instead of TorchScript: the
module is exported (TorchScript-based ONNX exporter) per input shape and checked against
eager on the export inputs (else TorchScript, with a warning). For the correspondence
network it is faster than the frozen trace on this 2-core CPU: one thread, features
32 -> 25 ms per vtest.avi frame and 6.7-7.3 -> 5.8 ms per person refined; the
correspondence stage of ``corrtrack track`` on all of vtest.avi (2 threads) 59.9 -> 47.4 s
(``benchmarks/bench_corr.py --cpu-runtime``, docs/models/corrnet.md). MoveNet and NanoDet
run on it too (since 2026-11-29): MoveNet lightning 7.7 against 13.9 ms for one crop, 21.6
against 25.7 for three, the same from six crops on; NanoDet at 416 × 416 27 against 33 ms;
on vtest.avi end to end (150 frames, three interleaved runs) detect 44 -> 39 ms and pose
96 -> 88 ms a frame (``out/dev29`` scripts of that session: posetime.py, dettime.py,
ab_runtime.py). Without ``onnxruntime`` installed it falls back to TorchScript. ORT's own
threads (as many as torch's) do not spin between calls: the pipeline alternates ORT with
torch's OpenMP work on the same cores.
"""
from __future__ import annotations

import io
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import nn


class FrozenCPU:
    """Call ``module(*xs)`` through a frozen TorchScript trace per input shape on CPU.

    ``module`` must take one or more tensors and return a tensor or a tuple of tensors. Keeps
    the ``max_shapes`` most recently used traces (a video has one frame shape, a pose
    model one crop shape; with ``batch_generic`` the batch size is not part of the
    shape). A trace holds the weights it was made with: make the
    wrapper after loading them (or call ``clear()``).
    """

    def __init__(self, module: nn.Module, enabled: bool = True, max_shapes: int = 4, owner: nn.Module | None = None,
                 batch_generic: bool = False, optimize: bool = True, runtime: str = "torchscript"):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.module = module
        self.runtime = runtime
        self.optimize = optimize
        self.batch_generic = batch_generic
        self.owner = owner or module  # whose train()/eval() state decides (a wrapper has its own flag)
        self.enabled = enabled
        self.max_shapes = max_shapes
        self._traces: OrderedDict[tuple, torch.jit.ScriptModule | None] = OrderedDict()

    def _usable(self, x: torch.Tensor) -> bool:
        return (self.enabled and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not self.owner.training and x.dtype == torch.float32)

    def _trace(self, xs: tuple[torch.Tensor, ...]):
        if self.runtime == "onnx" and onnx_available():
            try:
                return _OnnxCall(self.module, xs, self.batch_generic)
            except Exception as e:  # noqa: BLE001 - fall back to the TorchScript path
                warnings.warn(f"{type(self.module).__name__}: no ONNX Runtime path ({type(e).__name__}: {e}); "
                              "using TorchScript", RuntimeWarning, stacklevel=3)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                # The tracer warns that shape arithmetic becomes constants: intended, one trace per shape.
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(self.module, xs, check_trace=False)
                frozen = torch.jit.freeze(traced.eval())
                return torch.jit.optimize_for_inference(frozen) if self.optimize else frozen
        except Exception as e:  # noqa: BLE001 - any tracing failure means: stay eager
            warnings.warn(f"{type(self.module).__name__}: no frozen CPU path ({type(e).__name__}: {e}); "
                          "running eager", RuntimeWarning, stacklevel=3)
            return None

    def clear(self) -> None:
        self._traces.clear()

    def __call__(self, *xs: torch.Tensor):
        if not self._usable(xs[0]):
            return self.module(*xs)
        key = tuple((tuple(x.shape[1:]) if self.batch_generic else tuple(x.shape),
                     x.is_contiguous(memory_format=torch.channels_last)) for x in xs)
        if key not in self._traces:
            # inference_mode tensors cannot be traced: trace outside it, on plain copies
            with torch.inference_mode(False):
                self._traces[key] = self._trace(tuple(x.clone() for x in xs))
            while len(self._traces) > self.max_shapes:
                self._traces.popitem(last=False)
        self._traces.move_to_end(key)
        fn = self._traces[key]
        if fn is None:
            return self.module(*xs)
        with torch.no_grad():
            return fn(*xs)


RUNTIMES = ("torchscript", "onnx")

# ONNX Runtime's memory arena keeps the activations of the largest batch it has run, and on a CPU an
# item costs the same from about 6 a batch on: chunks of 8 bound the arena at no cost in speed.
# MoveNet lightning, 30 crops: 265 against 272 ms, peak RSS 499 against 928 MB (TorchScript 530 MB);
# the correspondence refinement, 32 people at 512 px: 221-277 ms either way, 573-615 against 863-897 MB
# (out/dev29/arena2.py, out/dev30/refarena.py).
CPU_MAX_BATCH = 8


def batch_limit(device: torch.device, limit: int) -> int:
    """Items per forward pass on ``device``: ``limit`` on a GPU, at most ``CPU_MAX_BATCH`` elsewhere
    (the pose estimator's crops, the refinement's people)."""
    return limit if device.type == "cuda" else min(limit, CPU_MAX_BATCH)


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package (which torch's exporter needs) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def effective_runtime(runtime: str) -> str:
    """The runtime ``FrozenCPU(runtime=...)`` will use: "onnx" falls back to "torchscript" without ORT."""
    return "torchscript" if runtime == "onnx" and not onnx_available() else runtime


class _OnnxCall:
    """``module(*xs)`` exported to ONNX for the shapes of ``xs`` and run by an ONNX Runtime session.

    Raises when the export fails or its outputs on ``xs`` differ from eager by more than the
    tolerance the frozen traces are held to (so the caller falls back)."""

    ATOL, RTOL = 1e-3, 1e-3

    def __init__(self, module: nn.Module, xs: tuple[torch.Tensor, ...], batch_generic: bool):
        import onnxruntime as ort

        names = [f"x{i}" for i in range(len(xs))]
        with torch.no_grad():
            eager = module(*xs)
        self.single = isinstance(eager, torch.Tensor)
        eager = (eager,) if self.single else tuple(eager)
        buf = io.BytesIO()
        # The exporter restores the training flag it found, recursively: a wrapper left in its
        # default training mode would put the wrapped network (our owner) into training mode.
        module.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and shape-constant notes
            torch.onnx.export(module, xs, buf, dynamo=False, opset_version=17, input_names=names,
                              dynamic_axes={n: {0: f"batch{i}"} for i, n in enumerate(names)} if batch_generic else None)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        # the exporter drops an input the outputs do not depend on: feed the ones the graph kept
        kept = {i.name for i in self.session.get_inputs()}
        self.names = [(i, n) for i, n in enumerate(names) if n in kept]
        outs = self(*xs)
        for a, b in zip((outs,) if self.single else outs, eager):
            if a.shape != b.shape:
                raise ValueError(f"ONNX Runtime output shape {tuple(a.shape)}, eager {tuple(b.shape)}")
            if not torch.allclose(a, b.float(), atol=self.ATOL, rtol=self.RTOL):
                raise ValueError(f"ONNX Runtime output differs from eager (max {float((a - b).abs().max()):.2e})")

    def __call__(self, *xs: torch.Tensor):
        feeds = {n: np.ascontiguousarray(xs[i].detach().numpy()) for i, n in self.names}
        outs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return outs[0] if self.single else tuple(outs)
