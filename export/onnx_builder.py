"""A small ONNX graph builder: unique names, typed initializers, one place for opset-dependent details."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT64_MAX = np.iinfo(np.int64).max
NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.uint8): TensorProto.UINT8,
}


class GraphBuilder:
    """Collects nodes and initializers; ``float_dtype`` is the compute precision of float constants."""

    def __init__(self, opset: int, float_dtype: np.dtype = np.float32) -> None:
        self.opset = opset
        self.float_dtype = np.dtype(float_dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = itertools.count()
        self._int_consts: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        return f"{hint}_{next(self._counter)}"

    @property
    def onnx_float(self) -> int:
        return NP_TO_ONNX[self.float_dtype]

    # ---- constants -------------------------------------------------------------------------------------
    def weight(self, array: np.ndarray, hint: str) -> str:
        """A float initializer in the graph's compute precision."""
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array).astype(self.float_dtype), name))
        return name

    def const(self, array, hint: str, dtype=None) -> str:
        """An initializer of exactly ``dtype`` (int constants are shared when equal)."""
        arr = np.asarray(array, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.dtype.kind in "iu" else None
        if key is not None and key in self._int_consts:
            return self._int_consts[key]
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._int_consts[key] = name
        return name

    def ints(self, values, hint: str = "i64") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    # ---- nodes -----------------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, **attrs):
        outputs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.name(op_type), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def cast(self, x: str, to: int, hint: str = "cast") -> str:
        return self.op("Cast", [x], hint, to=to)

    def slice(self, x: str, starts, ends, axes, steps=None, hint: str = "slice") -> str:
        inputs = [x, self.ints(starts), self.ints(ends), self.ints(axes)]
        if steps is not None:
            inputs.append(self.ints(steps))
        return self.op("Slice", inputs, hint)

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray | None, hint: str, group: int = 1) -> str:
        k = weight.shape[-1]
        inputs = [x, self.weight(weight, f"{hint}.weight")]
        if bias is not None:
            inputs.append(self.weight(bias, f"{hint}.bias"))
        return self.op("Conv", inputs, hint, kernel_shape=[k, k], pads=[k // 2] * 4, group=group)

    def upsample2x(self, x: str) -> str:
        """Nearest x2 with PyTorch's index rule src = floor(dst / 2)."""
        scales = self.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales2x")
        return self.op(
            "Resize",
            [x, "", scales],
            "up",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )

    def build(self, inputs, outputs, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "spade_generator", inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="spade-rt",
            doc_string=doc,
        )
        model.ir_version = min(model.ir_version, 9)  # readable by ONNX Runtime >= 1.16 and TensorRT 10
        for key, value in metadata.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        return model
