"""Emit the rewritten SPADE generator as an ONNX graph (see folding.py for the algebra).

Graph inputs (N = batch, H x W = output size):
  labels  (N, H, W) uint8 (int32 when there are more than 256 ids): model ids, i.e. stored 255 already mapped
          to the dontcare id ``label_nc`` (the runtime does this, as the original dataset does)
  edges   (N, H, W) uint8 0/1, models with an instance edge channel only
  z       (N, z_dim) float32, VAE models only
Output:
  image   (N, 3, H, W) float32 in [-1, 1], or with ``output='uint8'`` (N, H, W, 3) uint8 RGB

Nothing one-hot is ever built: each resolution gathers rows of a lookup table at k*k shifted copies of the
index map ``id + V*edge`` and sums them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from spade_rt import __version__
from spade_rt.errors import ConfigError, ExportError
from spade_rt.export.folding import FoldedBlock, FoldedGenerator, FoldedSPADE
from spade_rt.export.onnx_builder import INT64_MAX, GraphBuilder
from spade_rt.labels import LabelSpec
from spade_rt.model.config import GeneratorConfig
from spade_rt.runtime.spec import EDGES, IMAGE, LABELS, SPEC_KEY, ModelSpec, Z
from spade_rt.validation import API, DEDUP_MIN_PIXELS, ModelShape, check_graph_options

# Unique in first-occurrence order: OpenVINO's sorted Unique grows with the number of distinct codes (measured
# 790 ms vs 13 ms on 66k codes with 3000 distinct; ONNX Runtime 24 vs 15 ms). Any numbering of the patches is
# exact: the ids only index the per-patch tables.
UNIQUE_SORTED = 0
FP16_MAX = 65504.0


@dataclass(frozen=True)
class GraphOptions:
    precision: str = "fp32"  # fp32 | fp16
    output: str = "float"  # float | uint8
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max (min == max: a fixed batch dim)
    size: tuple[int, int] | None = None  # fixed (H, W); None with dynamic=False: the model's own size
    dynamic: bool = False  # symbolic H, W (non-VAE models only)
    opset: int = 17
    graph: str = "static"  # static: shape-static, for TensorRT/GPUs | dedup: per-distinct-patch modulation (CPU)
    # How the index maps are padded for the lookups. int32: one Pad on the int32 map (TensorRT fuses it, the
    # gathers, slices and adds into one kernel; CPUs have an int32 Pad). float: Cast to float32 (exact for
    # every index), Pad, Cast back: ONNX Runtime's CUDA provider has no int32 Pad kernel, and one node on the
    # CPU costs two copies per resolution and rules out its CUDA graphs.
    index_pad: str = "int32"
    # The one-hot convs. gather: k*k row lookups summed (no one-hot anywhere; what TensorRT fuses best and the
    # least work on CPUs). onehot: the one-hot map built on the device (Equal + Cast, NCHW) and one dense conv
    # per resolution: more MACs, but one tensor-core conv instead of k*k gathers and adds as separate kernels.
    # Which is faster on a given provider is for `spade-rt bench` to measure, not to assume.
    lookup: str = "gather"
    # dedup graph: the smallest feature map (h * w pixels) whose modulation is computed per distinct patch;
    # smaller maps keep the dense gamma/beta conv (below some size the patch bookkeeping costs more than it saves)
    dedup_min_pixels: int = DEDUP_MIN_PIXELS

    def validate(self, folded: FoldedGenerator) -> tuple[int, int]:
        """The graph's (H, W), after every option is checked against the model (``check``)."""
        return self.check(folded.config)

    def check(self, cfg: GeneratorConfig) -> tuple[int, int]:
        """Every option against a model's config (which its header alone gives): the same function `spade-rt
        export` calls before importing torch (spade_rt.validation.check_graph_options), so the same mistake
        gets the same message, here in keyword-argument words. Returns the graph's (H, W)."""
        shape = ModelShape(cfg.output_hw, 2**cfg.num_up, cfg.num_upsampling_layers, cfg.use_vae)
        try:
            return check_graph_options(**asdict(self), model=shape, voice=API)
        except ConfigError as exc:
            raise ExportError(str(exc)) from None


def model_spec(folded: FoldedGenerator, options: GraphOptions, hw: tuple[int, int], extra: dict) -> dict:
    """The JSON the runtime reads back (spade_rt.runtime.spec.ModelSpec fields) + provenance."""
    cfg = folded.config
    spec = ModelSpec(
        preset=cfg.preset,
        labels=LabelSpec(cfg.label_nc, cfg.contain_dontcare_label, cfg.use_instance, hw[0], hw[1]),
        use_vae=cfg.use_vae,
        z_dim=cfg.z_dim,
        output=options.output,
        min_batch=options.batch[0],
        max_batch=options.batch[2],
        precision=options.precision,
        dynamic_size=options.dynamic,
        opt_batch=options.batch[1],
        size_multiple=2**cfg.num_up,
    )
    return {**spec.to_dict(), "generator": cfg.to_dict(), "exporter": f"spade-rt {__version__}", **extra}


class _Emitter:
    def __init__(self, folded: FoldedGenerator, options: GraphOptions) -> None:
        self.f = folded
        self.o = options
        dtype = np.float16 if options.precision == "fp16" else np.float32
        self.g = GraphBuilder(options.opset, dtype)
        self.shared: dict[int, str] = {}  # stride -> (N, K, h, w) ReLU'd mlp_shared outputs (static mode)
        self.dedup_ab: dict[int, tuple[str, str]] = {}  # id(spade) -> (a, b) dense maps (dedup mode)
        self.fc_out: str | None = None

    # ---- lookups -------------------------------------------------------------------------------------
    def index_map(self, labels: str, edges: str | None) -> str:
        g = self.g
        idx = g.cast(labels, TensorProto.INT32, "ids")
        if edges is not None:  # id + V * edge: one index addresses the label row and its edge variant
            e = g.cast(edges, TensorProto.INT32, "edge")
            v = g.const(np.array(self.f.config.num_label_ids + 1, dtype=np.int32), "V")
            idx = g.op("Add", [idx, g.op("Mul", [e, v])], "index")
        return idx  # (N, H, W) int32

    def lookups(self, idx: str, hw: tuple[int, int]) -> None:
        g = self.g
        for stride, table in sorted(self.f.lookups.items()):
            r = idx if stride == 1 else g.slice(idx, [0, 0], [INT64_MAX, INT64_MAX], [1, 2], [stride, stride], "ds")
            if self.dedups(stride, table, hw):
                self.dedup_modulation(r, stride, (hw[0] // stride, hw[1] // stride))
                continue
            if self.o.lookup == "onehot":
                self.onehot_conv(r, stride, table)
                continue
            k = table.kernel_size
            pad = k // 2
            pads = g.ints([0, pad, pad, 0, pad, pad])
            if self.o.index_pad == "float":  # float32 holds every index exactly (< 2^24 rows)
                value = g.const(np.array(self.f.sentinel, np.float32), "sentinel_f")
                padded = g.op("Pad", [g.cast(r, TensorProto.FLOAT, "index_f"), pads, value], "padded_f")
                padded = g.cast(padded, TensorProto.INT32, "padded")
            else:
                padded = g.op("Pad", [r, pads, g.const(np.array(self.f.sentinel, np.int32), "sentinel")], "padded")
            taps = []
            for t in range(k * k):
                dy, dx = divmod(t, k)
                ends = [dy - (k - 1) or INT64_MAX, dx - (k - 1) or INT64_MAX]  # negative ends: any H, W
                shifted = g.slice(padded, [dy, dx], ends, [1, 2], hint="tap")
                taps.append(
                    g.op("Gather", [g.weight(table.rows[t], f"lookup{stride}.tap{t}"), shifted], "rows", axis=0)
                )
            # a chain of Adds, not one Sum: ONNX Runtime reuses the buffer in place (measured 1.5-1.8x faster)
            summed = taps[0]
            for tap in taps[1:]:
                summed = g.op("Add", [summed, tap], "taps")
            summed = g.op("Add", [summed, g.weight(table.bias, f"lookup{stride}.bias")], "mlp")
            K = table.rows.shape[-1]
            if table.relu_from:  # the conv fc shares this lookup but has no ReLU
                fc, shared = g.op("Split", [summed, g.ints([table.relu_from, K - table.relu_from])], "fc", 2, axis=3)
                self.fc_out = g.op("Transpose", [fc], "fc_nchw", perm=[0, 3, 1, 2])
                summed = shared
            self.shared[stride] = g.op("Transpose", [g.op("Relu", [summed], "actv")], "actv_nchw", perm=[0, 3, 1, 2])

    def onehot_conv(self, r: str, stride: int, table) -> None:
        """The lookup of one resolution as the dense conv it replaced: one-hot (N, R, h, w) of the index map
        (Equal against 0..R-1, then Cast: both have CUDA kernels), then a k x k conv whose zero padding is
        the sentinel row's zero. Exactly the same sum as the gathers, in NCHW, no Transpose."""
        g = self.g
        k, R, K = table.kernel_size, table.rows.shape[1], table.rows.shape[2]
        ids = g.const(np.arange(R, dtype=np.int32).reshape(1, R, 1, 1), "row_ids")
        onehot = g.cast(g.op("Equal", [g.op("Unsqueeze", [r, g.ints([1])], "index_n1hw"), ids], "is_row"), g.onnx_float)
        weight = table.rows.reshape(k, k, R, K).transpose(3, 2, 0, 1)  # (T, R, K) -> (K, R, k, k)
        summed = g.conv(onehot, weight, table.bias, f"lookup{stride}.onehot")
        if table.relu_from:  # the conv fc shares this lookup but has no ReLU
            self.fc_out, summed = g.op(
                "Split", [summed, g.ints([table.relu_from, K - table.relu_from])], "fc", 2, axis=1
            )
        self.shared[stride] = g.op("Relu", [summed], "actv_nchw")

    # ---- dedup mode: modulation once per distinct label patch ------------------------------------------------
    def dedups(self, stride: int, table, hw: tuple[int, int]) -> bool:
        """Dedup a resolution when asked, where it pays (large maps), and where the algebra applies (3x3, no fc)."""
        h, w = hw[0] // stride, hw[1] // stride
        large = h * w >= self.o.dedup_min_pixels
        return self.o.graph == "dedup" and table.kernel_size == 3 and not table.relu_from and large

    def _unique_ids(self, codes: str, shape: list[int]) -> tuple[str, str, str]:
        """Unique over all codes -> (ids of ``shape``: dense 0..U-1, count U as a (1,) int64, first occurrences)."""
        g = self.g
        flat = g.op("Reshape", [codes, g.ints([-1])], "codes")
        values, first, inverse, _ = g.op("Unique", [flat], "uniq", 4, sorted=UNIQUE_SORTED)
        count = g.op("Shape", [values], "count")  # (1,) int64
        return g.op("Reshape", [inverse, g.ints(shape)], "patch_ids"), count, first

    def _triples(self, grid: str, base: str, axis: int, length: int) -> str:
        """grid[..i..]*base^2 + grid[..i+1..]*base + grid[..i+2..] along ``axis`` (1: rows, 2: columns)."""
        g = self.g
        parts = [g.slice(grid, [i], [i + length], [axis], hint="shift") for i in range(3)]
        base2 = g.op("Mul", [base, base], "base2")
        return g.op(
            "Add", [g.op("Add", [g.op("Mul", [parts[0], base2]), g.op("Mul", [parts[1], base])]), parts[2]], "triple"
        )

    def dedup_modulation(self, r: str, stride: int, hw: tuple[int, int]) -> None:
        """For every SPADE at this resolution: a, b (N, C, h, w) computed once per distinct 5x5 label patch.

        The SPADE modulation at a pixel depends only on the 5x5 patch of indices around it (3x3 for the
        one-hot conv, 3x3 again for gamma/beta), and on which of its neighbours lie outside the image (their
        activation is zero padding). Patches are numbered exactly (no hashing): horizontal triples of indices
        -> Unique -> vertical triples of those ids -> Unique gives 3x3 patch ids over an (h+2) x (w+2) grid
        whose outer ring is the padding; the same two steps on 3x3 ids give 5x5 patch ids. Per distinct 3x3
        patch: the lookup sum and ReLU; per distinct 5x5 patch: one MatMul with the gamma/beta weights.
        Then one gather spreads the results back over the map. fp32 only.
        """
        g, table, f = self.g, self.f.lookups[stride], self.f
        h, w = hw  # reshapes below use -1 for the batch
        R = g.const(np.array(f.index_rows, np.int64), "R")
        idx = g.cast(r, TensorProto.INT64, "idx64")
        pad = g.op(
            "Pad", [idx, g.ints([0, 2, 2, 0, 2, 2]), g.const(np.array(f.sentinel, np.int64), "sentinel64")], "padded2"
        )  # (N, h+4, w+4)
        # 3x3 patch ids over the (h+2) x (w+2) grid of activation positions (ring = zero padding)
        h_ids, u1, _ = self._unique_ids(self._triples(pad, R, 2, w + 2), [-1, h + 4, w + 2])
        p3, u3, first3 = self._unique_ids(self._triples(h_ids, u1, 1, h + 2), [-1, h + 2, w + 2])
        # the lookup sum for each distinct 3x3 patch: its 9 indices from the first place it occurs
        acc = None
        for t in range(9):
            dy, dx = divmod(t, 3)
            window = g.slice(pad, [dy, dx], [dy + h + 2, dx + w + 2], [1, 2], hint="tap")
            tap = g.op("Reshape", [window, g.ints([-1])], "tapflat")
            ids_t = g.op("Gather", [tap, first3], "patch_tap", axis=0)  # (u3,)
            if t == 4:
                centre = ids_t
            rows = g.op("Gather", [g.weight(table.rows[t], f"lookup{stride}.tap{t}"), ids_t], "rows", axis=0)
            acc = rows if acc is None else g.op("Add", [acc, rows], "taps")
        actv = g.op("Relu", [g.op("Add", [acc, g.weight(table.bias, f"lookup{stride}.bias")])], "actv_u")  # (u3, K)
        inside = g.op("Not", [g.op("Equal", [centre, g.const(np.array(f.sentinel, np.int64), "s64")])])
        inside = g.op("Unsqueeze", [g.cast(inside, TensorProto.FLOAT, "inside"), g.ints([1])])
        actv = g.op("Mul", [actv, inside], "actv_masked")  # positions outside the image: zero padding
        # 5x5 patch ids: triples of 3x3 ids, then triples of those
        h5, u4, _ = self._unique_ids(self._triples(p3, u3, 2, w), [-1, h + 2, w])
        p5, _, first5 = self._unique_ids(self._triples(h5, u4, 1, h), [-1, h, w])
        around = []  # for each distinct 5x5 patch, the 3x3 ids of the 9 activation positions around its centre
        for t in range(9):
            dy, dx = divmod(t, 3)
            win = g.op("Reshape", [g.slice(p3, [dy, dx], [dy + h, dx + w], [1, 2], hint="win"), g.ints([-1])])
            around.append(g.op("Unsqueeze", [g.op("Gather", [win, first5], "around", axis=0), g.ints([1])]))
        around = g.op("Concat", around, "around9", axis=1)  # (u5, 9)
        spades = [
            s
            for blk in self.f.blocks
            if blk.stride == stride
            for s in (blk.norm_0, blk.norm_s, blk.norm_1)
            if s is not None
        ]
        outputs, sizes = [], []
        for spade in spades:
            off = spade.shared_offset - table.relu_from
            hidden = g.slice(actv, [off], [off + 128], [1], hint="actv_j")  # (u3, 128)
            patch = g.op("Reshape", [g.op("Gather", [hidden, around], "patch", axis=0), g.ints([-1, 9 * 128])])
            # (2C, 128, 3, 3) -> (9*128, 2C), tap-major to match the gathered (u5, 9, 128)
            wmat = spade.gb_weight.transpose(2, 3, 1, 0).reshape(9 * 128, -1)
            gb = g.op("Add", [g.op("MatMul", [patch, g.weight(wmat, "gb_mat")]), g.weight(spade.gb_bias, "gb_bias")])
            outputs.append(gb)  # (u5, 2C)
            sizes += [spade.channels, spade.channels]
        table_u = g.op("Concat", outputs, "gb_u", axis=1) if len(outputs) > 1 else outputs[0]  # (u5, sum 2C)
        dense = g.op("Transpose", [g.op("Gather", [table_u, p5], "gb_dense", axis=0)], "gb_nchw", perm=[0, 3, 1, 2])
        parts = g.op("Split", [dense, g.ints(sizes)], "ab", len(sizes), axis=1)
        parts = [parts] if isinstance(parts, str) else parts
        for i, spade in enumerate(spades):
            self.dedup_ab[id(spade)] = (parts[2 * i], parts[2 * i + 1])

    # ---- blocks --------------------------------------------------------------------------------------
    def modulate(self, x: str, spade: FoldedSPADE, a: str, b: str) -> str:
        """(x - m) * a + b; with instance norm: IN(x) * a + b (statistics in fp32)."""
        g = self.g
        if spade.instance_norm:
            xn = x if self.o.precision == "fp32" else g.cast(x, TensorProto.FLOAT)
            ones = g.const(np.ones(spade.channels, np.float32), "in_scale")
            zeros = g.const(np.zeros(spade.channels, np.float32), "in_bias")
            xn = g.op("InstanceNormalization", [xn, ones, zeros], "in", epsilon=1e-5)
            x = xn if self.o.precision == "fp32" else g.cast(xn, g.onnx_float)
        elif spade.mean is not None:
            x = g.op("Sub", [x, g.weight(spade.mean.reshape(1, -1, 1, 1), "bn_mean")], "centred")
        return g.op("Add", [g.op("Mul", [x, a], "scaled"), b], "modulated")

    def static_ab(self, blk: FoldedBlock) -> dict[int, tuple[str, str]]:
        """a, b of each SPADE of a block: the fused gamma/beta conv over its slice of the lookup output."""
        g = self.g
        actv, table = self.shared[blk.stride], self.f.lookups[blk.stride]
        spades = [s for s in (blk.norm_0, blk.norm_s, blk.norm_1) if s is not None]
        # which channels of actv each SPADE reads (norm_0 and norm_s are adjacent: folding puts them so)
        split_sizes, owners, cursor = [], [], 0
        for spade in spades:
            offset = spade.shared_offset - table.relu_from
            if offset != cursor:
                split_sizes.append(offset - cursor)
                owners.append(None)
            split_sizes.append(128)
            owners.append(spade)
            cursor = offset + 128
        total = table.rows.shape[-1] - table.relu_from
        if cursor < total:
            split_sizes.append(total - cursor)
            owners.append(None)
        parts = g.op("Split", [actv, g.ints(split_sizes)], "actv_part", len(split_sizes), axis=1)
        parts = [parts] if isinstance(parts, str) else parts
        ab = {}
        for spade, part in zip(owners, parts):
            if spade is not None:
                gb = g.conv(part, spade.gb_weight, spade.gb_bias, f"{blk.name}.gb")
                ab[id(spade)] = tuple(g.op("Split", [gb, g.ints([spade.channels, spade.channels])], "ab", 2, axis=1))
        return ab

    def block(self, x: str, blk: FoldedBlock) -> str:
        g = self.g
        s0, s1, ss = blk.norm_0, blk.norm_1, blk.norm_s
        ab = self.dedup_ab if blk.stride not in self.shared else self.static_ab(blk)
        h = g.op("LeakyRelu", [self.modulate(x, s0, *ab[id(s0)])], "lrelu", alpha=0.2)
        h = g.conv(h, *blk.conv_0, hint=f"{blk.name}.conv_0")
        h = g.op("LeakyRelu", [self.modulate(h, s1, *ab[id(s1)])], "lrelu", alpha=0.2)
        h = g.conv(h, *blk.conv_1, hint=f"{blk.name}.conv_1")
        if ss is not None:
            skip = g.conv(self.modulate(x, ss, *ab[id(ss)]), blk.conv_s, None, f"{blk.name}.conv_s")
        else:
            skip = x
        return g.op("Add", [skip, h], f"{blk.name}.out")

    # ---- whole graph ---------------------------------------------------------------------------------
    def emit(self, hw: tuple[int, int], spec: dict) -> onnx.ModelProto:
        g, f, o, cfg = self.g, self.f, self.o, self.f.config
        batch = o.batch[0] if o.batch[0] == o.batch[2] else "N"
        h, w = ("H", "W") if o.dynamic else hw
        id_type = TensorProto.UINT8 if cfg.num_label_ids <= 256 else TensorProto.INT32
        inputs = [helper.make_tensor_value_info(LABELS, id_type, [batch, h, w])]
        edges = None
        if cfg.use_instance:
            inputs.append(helper.make_tensor_value_info(EDGES, TensorProto.UINT8, [batch, h, w]))
            edges = EDGES
        self.lookups(self.index_map(LABELS, edges), hw)

        if cfg.use_vae:
            inputs.append(helper.make_tensor_value_info(Z, TensorProto.FLOAT, [batch, cfg.z_dim]))
            z = Z if o.precision == "fp32" else g.cast(Z, g.onnx_float, "z16")
            wfc, bfc = f.fc_linear
            x = g.op("Gemm", [z, g.weight(wfc, "fc.weight"), g.weight(bfc, "fc.bias")], "fc", transB=1)
            sh, sw = cfg.latent_hw
            x = g.op("Reshape", [x, g.ints([-1, f.fc_channels, sh, sw])], "latent")
        else:
            x = self.fc_out
        stride = f.blocks[0].stride
        for blk in f.blocks:
            if blk.stride != stride:  # the generator's nearest x2 upsampling between blocks
                x = g.upsample2x(x)
                stride = blk.stride
            x = self.block(x, blk)
        x = g.conv(g.op("LeakyRelu", [x], "lrelu", alpha=0.2), *f.conv_img, hint="conv_img")
        x = g.op("Tanh", [x], "tanh")
        if o.precision == "fp16":
            x = g.cast(x, TensorProto.FLOAT, "image32")
        if o.output == "uint8":  # the original tensor2im: (x + 1) / 2 * 255, clip, truncate
            x = g.op("Mul", [g.op("Add", [x, g.const(np.float32(1), "one")]), g.const(np.float32(0.5), "half")])
            x = g.op("Mul", [x, g.const(np.float32(255), "c255")])
            x = g.op("Clip", [x, g.const(np.float32(0), "lo"), g.const(np.float32(255), "hi")])
            x = g.op("Transpose", [g.op("Floor", [x])], "nhwc", perm=[0, 2, 3, 1])
            # the cast to uint8 is the graph's last node: TensorRT takes uint8 only at the graph's edge
            x = g.cast(x, TensorProto.UINT8, "rgb")
            out = helper.make_tensor_value_info(IMAGE, TensorProto.UINT8, [batch, h, w, 3])
        else:
            out = helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, [batch, 3, h, w])
        g.nodes[-1].output[0] = IMAGE  # the last node writes the graph output directly
        doc = (
            f"SPADE generator ({cfg.preset}, ngf {cfg.ngf}) rewritten for inference by spade-rt: label ids in, "
            "one-hot convs as lookups, spectral and batch norm folded."
        )
        return g.build(inputs, [out], doc, {SPEC_KEY: json.dumps(spec)})


def build_graph(folded: FoldedGenerator, options: GraphOptions, extra_spec: dict | None = None) -> onnx.ModelProto:
    hw = options.validate(folded)
    if options.precision == "fp16":
        check_fp16_range(folded)
    spec = model_spec(folded, options, hw, {"graph_options": asdict(options), **(extra_spec or {})})
    return _Emitter(folded, options).emit(hw, spec)


def check_fp16_range(folded: FoldedGenerator) -> None:
    """Folded weights must fit fp16; a batch-norm variance near zero can push inv_std * W past 65504."""
    arrays = {f"lookup{s}": t.rows for s, t in folded.lookups.items()}
    for blk in folded.blocks:
        for key in ("norm_0", "norm_1", "norm_s"):
            spade = getattr(blk, key)
            if spade is not None:
                arrays[f"{blk.name}.{key}"] = spade.gb_weight
    for name, arr in arrays.items():
        peak = float(np.abs(arr).max())
        if peak > FP16_MAX:
            raise ExportError(
                f"{name}: folded weights reach {peak:.3g}, beyond fp16's {FP16_MAX:.0f} (a batch-norm variance near "
                "zero); export this model with --precision fp32"
            )
