"""A faster CPU path for inference: the same module, traced and frozen by TorchScript.

Eager PyTorch runs each convolution, activation and addition as its own oneDNN call
and picks its slow reference kernel for some small 1×1 convolutions. A frozen trace
with ``torch.jit.optimize_for_inference`` fuses conv + activation and prepacks the
weights for oneDNN: MoveNet runs 1.1-1.3× and the correspondence features ~2× faster on CPU (measured on this
2-core machine; ``benchmarks/bench_pose.py``), within 1e-3 of eager on the raw outputs.
``optimize_for_inference`` (oneDNN layouts) pays off for MoveNet and the correspondence
features but costs NanoDet ~40% (its PAN's resizes and additions convert layouts back and
forth), so NanoDet is frozen without it (``optimize=False``; about eager speed).

Used only where it is safe: CPU tensors, no autograd (inference), and one trace per
input shape (a trace bakes in shape-dependent padding, and Python ints such as
``len(x)`` become constants). A module known to be batch-generic (checked by a test:
MoveNet, NanoDet) may share one trace across batch sizes: ``batch_generic=True``. Anything else - GPU, training,
a module that cannot be traced - runs the eager module, so this never changes *what*
is computed, only how fast.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

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
                 batch_generic: bool = False, optimize: bool = True):
        self.module = module
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
