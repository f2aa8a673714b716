"""Fuzz target: label and instance PNGs, as the CLI, the API and the server read them.

Input: one PNG. Driven: ``read_label_ids`` (ids, and colours of the coco palette), ``read_instance_map``, the
label pipeline behind them (``prepare_inputs``: NEAREST resize, dontcare, id checks, instance edges) for the
coco preset, and the server's readers (``serve.inputs.read_labels`` / ``read_instance``: the PNG-only header
check and the pixel budget first). Structure-aware: PNG chunks are mutated and re-framed with valid CRCs
(``png_chunks``). Maps are read with a pixel limit of ``MAX_PIXELS``, so what is allocated is bounded by it.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, Target, attempt, coco_spec, instrumented, run_main
from png_chunks import mutate as mutate_png

with instrumented(("spade_rt", "PIL.PngImagePlugin")):
    import PIL.PngImagePlugin  # noqa: F401  (Pillow imports its plugins lazily: here, to instrument it)

    from spade_rt.errors import SpadeRtError
    from spade_rt.labels import prepare_inputs, read_instance_map, read_label_ids
    from spade_rt.serve.inputs import RequestError, read_instance, read_labels

ALLOWED = (SpadeRtError, RequestError)  # RequestError: the server's refusal (an HTTP status and one line)
MAX_PIXELS = 1 << 19  # 512K pixels: every shipped sample map (640 x 480) fits
SPEC = coco_spec(use_vae=False, z_dim=256)


def upload(data: bytes) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = "fuzzed.png"
    return f


def run(data: bytes) -> None:
    ids = attempt(ALLOWED, read_label_ids, upload(data), None, MAX_PIXELS)
    attempt(ALLOWED, read_label_ids, upload(data), "coco", MAX_PIXELS)
    inst = attempt(ALLOWED, read_instance_map, upload(data), MAX_PIXELS)
    if ids is not None:
        attempt(ALLOWED, prepare_inputs, ids, SPEC.labels, instance=inst)
    for resize in (False, True):
        attempt(ALLOWED, read_labels, data, SPEC, MAX_PIXELS, resize)
        attempt(ALLOWED, read_instance, data, SPEC, MAX_PIXELS, resize)


TARGET = Target(
    name="label_png",
    run=run,
    allowed=ALLOWED,
    # decoded maps are bounded by the pixel limit, not by the input (a PNG compresses 1000:1): up to int32 ids
    # plus the palette decoder's int64 colour codes and the pipeline's copies, a few tens of bytes per pixel
    max_alloc=lambda n: 16 * MiB + 64 * MAX_PIXELS + 64 * n,
    max_len=32 << 10,
    mutate=mutate_png,
)

if __name__ == "__main__":
    run_main(TARGET)
