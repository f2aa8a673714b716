"""What an exported graph costs: multiply-accumulates of its Conv / Gemm / MatMul nodes, op counts."""

from __future__ import annotations

from collections import Counter

import onnx
from onnx import shape_inference


def _static_copy(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose symbolic input dims are fixed (batch -> ``batch``), so shape inference gives numbers."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    spec_hw = None
    for prop in m.metadata_props:
        if prop.key == "spade_rt.spec":
            import json

            s = json.loads(prop.value)
            spec_hw = (s["height"], s["width"])
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if d.dim_param:
                value = batch if i == 0 else (spec_hw[i - 1] if spec_hw and i <= 2 else 1)
                d.Clear()
                d.dim_value = value
    return m


def graph_macs(model: onnx.ModelProto, batch: int = 1) -> dict[str, int]:
    """MACs per op type for one call at ``batch`` (symbolic H, W: the spec's size).

    MatMuls over data-dependent row counts (the dedup graph's per-distinct-patch products) are not counted;
    their number is returned under "data_dependent_matmuls". A graph exported with a fixed batch B (``--batch
    B``) is counted at B and scaled to ``batch``, so ``batch=1`` is per image whatever the graph's batch.
    """
    static = _static_copy(model, batch)
    graph_batch = static.graph.input[0].type.tensor_type.shape.dim[0].dim_value or batch
    macs = _macs_at_graph_batch(static, graph_batch)
    return {k: v if k == "data_dependent_matmuls" else v // graph_batch * batch for k, v in macs.items()}


def _macs_at_graph_batch(static: onnx.ModelProto, batch: int) -> dict[str, int]:
    inferred = shape_inference.infer_shapes(static, data_prop=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {t.name: list(t.dims) for t in inferred.graph.initializer}
    macs: Counter = Counter()
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]
            out = shapes.get(node.output[0])
            if out and out[0] is None:  # a batch dim that shape inference lost behind a data-dependent reshape
                out = [batch, *out[1:]]
            if not out or None in out:
                raise ValueError(f"no static shape for {node.output[0]}")
            n_out = 1
            for d in out:
                n_out *= d
            fan_in = w[1] * w[2] * w[3]
            macs["Conv"] += n_out * fan_in
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0]) or inits.get(node.input[0])
            b = inits.get(node.input[1]) or shapes.get(node.input[1])
            if a is None or b is None or None in a[1:] or None in b:
                raise ValueError(f"no static shape for {node.name}")
            if a[0] is None:  # rows = distinct patches: known only when it runs
                macs["data_dependent_matmuls"] += 1
                continue
            k = a[-1]
            n = b[0] if node.op_type == "Gemm" and any(at.name == "transB" and at.i for at in node.attribute) else b[-1]
            rows = 1
            for d in a[:-1]:
                rows *= d
            macs[node.op_type] += rows * k * n
    return dict(macs)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node))
