"""Read a TF.js graph model (``<name>.json`` + ``<name>.bin``) into numpy.

Only reading: the graph's nodes (op, inputs, attributes) and its weights with
quantisation undone. The modules that rebuild each graph in PyTorch live
beside this file (``nanodet.py``, ``movenet.py``) and take their weights from
``TfjsGraph.weights`` by node name. No TensorFlow is involved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrtrack.errors import CorrtrackError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16,
           "uint8": np.uint8, "uint16": np.uint16, "int64": np.int64}


@dataclass
class TfjsNode:
    name: str
    op: str
    inputs: list[str]
    attr: dict


@dataclass
class TfjsGraph:
    nodes: dict[str, TfjsNode]  # by name, in file order
    weights: dict[str, np.ndarray]  # Const node name -> dequantised array
    signature: dict

    def const(self, name: str) -> np.ndarray:
        """The value of a Const node (weights, shapes, scalars)."""
        name = name.split(":")[0].lstrip("^")
        return self.weights[name]

    def consumers(self, name: str) -> list[TfjsNode]:
        return [n for n in self.nodes.values() if any(i.split(":")[0] == name for i in n.inputs)]


def _dequantise(raw: bytes, spec: dict) -> np.ndarray:
    shape = spec["shape"]
    q = spec.get("quantization")
    if q is None:
        return np.frombuffer(raw, dtype=_DTYPES[spec["dtype"]]).reshape(shape).copy()
    qdtype = q["dtype"]
    if qdtype == "float16":
        # fp16 weights and constants: keep exactly the decoded values (e.g.
        # 0.0078430176, not 1/127.5) — parity with TF.js depends on it.
        arr = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
    elif qdtype in ("uint8", "uint16"):
        vals = np.frombuffer(raw, dtype=_DTYPES[qdtype]).astype(np.float32)
        arr = vals * np.float32(q["scale"]) + np.float32(q["min"])
    else:
        raise CorrtrackError(f"unsupported TF.js quantisation {qdtype!r} for weight {spec['name']}")
    return arr.astype(_DTYPES[spec["dtype"]]).reshape(shape)


def _nbytes(spec: dict) -> int:
    n = int(np.prod(spec["shape"])) if spec["shape"] else 1
    q = spec.get("quantization")
    if spec["dtype"] == "string":
        raise CorrtrackError(f"string weights are not supported ({spec['name']})")
    itemsize = np.dtype(_DTYPES[q["dtype"] if q else spec["dtype"]]).itemsize
    return n * itemsize


def load_tfjs_graph(json_path: str | Path) -> TfjsGraph:
    """Parse a TF.js graph model and its weight shards (beside the JSON)."""
    json_path = Path(json_path)
    try:
        model = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise CorrtrackError(f"{json_path}: TF.js model file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorrtrackError(f"{json_path}: not a TF.js model JSON ({e})") from None
    if model.get("format") != "graph-model" or "modelTopology" not in model:
        raise CorrtrackError(f"{json_path}: not a TF.js graph model")
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((json_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            size = _nbytes(spec)
            if offset + size > len(data):
                raise CorrtrackError(f"{json_path}: weight file is truncated at {spec['name']}")
            weights[spec["name"]] = _dequantise(data[offset:offset + size], spec)
            offset += size
    nodes = {}
    for n in model["modelTopology"]["node"]:
        nodes[n["name"]] = TfjsNode(n["name"], n["op"], list(n.get("input", [])), n.get("attr", {}))
    return TfjsGraph(nodes, weights, model.get("signature", {}))
