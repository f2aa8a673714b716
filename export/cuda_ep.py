"""Which nodes of a graph ONNX Runtime's CUDA execution provider has kernels for, read statically.

ONNX Runtime places a node whose (op, input types) the CUDA provider has no kernel for on the CPU, adds a
Memcpy to and from the host around it, and then refuses CUDA-graph capture for the whole session. The
first GPU run of this project (issue 10: an H100, onnxruntime-gpu 1.31.1) found exactly that: the int32
``Pad`` of the index maps, once per resolution, 12 Memcpy nodes. CPU-only machines cannot ask the CUDA
provider itself, so the table below is what its kernel registry declares, transcribed from ONNX Runtime's
generated ``docs/OperatorKernels.md`` ("Operators implemented by CUDAExecutionProvider", commit
001d12d2623fd411ce0f83d05abb5e82304a3389 of microsoft/onnxruntime), for the ops spade-rt emits and the opset
range it exports (17..20). ``cuda_ep_gaps`` lists every node outside it; an empty list means every node has
a CUDA kernel (and no shape computation is left for the CPU).
"""

from __future__ import annotations

import onnx

_F = frozenset({"float", "float16", "double"})
_FB = _F | {"bfloat16"}
_INTS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_ALL = _FB | _INTS | {"bool"}
_NUM = _FB | _INTS
_IND = frozenset({"int32", "int64"})

# op -> {input index: dtypes with a CUDA kernel}; inputs not listed are attributes-like (initializers the
# kernel reads on the host: Slice starts/ends, Pad pads, Resize scales, Reshape shape, Split sizes)
CUDA_EP_KERNELS: dict[str, dict[int, frozenset[str]]] = {
    "Add": {0: _NUM, 1: _NUM},
    "Sub": {0: _NUM, 1: _NUM},
    "Mul": {0: _NUM, 1: _NUM},
    "Div": {0: _NUM, 1: _NUM},
    "Cast": {0: _ALL},
    "Clip": {0: _F | {"int8", "int64", "uint8", "uint64"}},
    "Concat": {0: _ALL},
    "Conv": {0: _F, 1: _F},
    "Equal": {0: _F | {"bool", "int32", "int64", "uint32", "uint64"}},
    "Floor": {0: _F},
    "Gather": {0: _ALL, 1: _IND},
    "Gemm": {0: _FB},
    "InstanceNormalization": {0: _F},
    "LeakyRelu": {0: _F},
    "MatMul": {0: _FB},
    "Not": {0: frozenset({"bool"})},
    "Pad": {0: _F | {"bool"}},  # no integer Pad: the int32 index-map pad lands on the CPU
    "Relu": {0: _FB},
    "Reshape": {0: _ALL},
    "Resize": {0: _F | {"int32", "uint8"}},
    "Slice": {0: _ALL},
    "Split": {0: _ALL},
    "Tanh": {0: _FB},
    "Transpose": {0: _ALL},
    "Unsqueeze": {0: _ALL},
}
# shape computations the CUDA provider leaves on the CPU by design (their outputs live on the host)
SHAPE_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "NonZero", "Range", "Expand"})


def _elem_types(model: onnx.ModelProto) -> dict[str, str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {}
    for vi in (*g.input, *g.value_info, *g.output):
        types[vi.name] = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
    for init in g.initializer:
        types[init.name] = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name
    return {k: v.replace("float32", "float").replace("float64", "double") for k, v in types.items()}


def cuda_ep_gaps(model: onnx.ModelProto) -> list[str]:
    """'Op on dtype' for every node type/dtype the CUDA provider has no kernel for (each listed once), and
    every shape computation; empty when the whole graph can run on the GPU."""
    types = _elem_types(model)
    gaps = set()
    for node in model.graph.node:
        if node.op_type in SHAPE_OPS:
            gaps.add(f"{node.op_type} (a shape computation: placed on the CPU)")
            continue
        constraints = CUDA_EP_KERNELS.get(node.op_type)
        if constraints is None:
            gaps.add(f"{node.op_type} (no CUDA kernel)")
            continue
        for index, allowed in constraints.items():
            if index < len(node.input) and node.input[index]:
                dtype = types.get(node.input[index], "unknown")
                if dtype not in allowed:
                    gaps.add(f"{node.op_type} on {dtype} (input {index})")
    return sorted(gaps)


def op_dtypes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """op type -> sorted dtypes of its first input, over the whole graph (what `cuda_ep_gaps` judged)."""
    types = _elem_types(model)
    seen: dict[str, set[str]] = {}
    for node in model.graph.node:
        seen.setdefault(node.op_type, set()).add(types.get(node.input[0], "unknown") if node.input else "-")
    return {op: sorted(d) for op, d in sorted(seen.items())}
