#!/usr/bin/env bash
# GPU acceptance run (issue 10): the gpu-marked tests, then `spade-rt bench --device cuda` for coco and ade20k
# with every contestant, then the acceptance criteria (bench/acceptance.py) as PASS/FAIL lines.
#
#   bash bench/gpu_acceptance.sh [OUTDIR]
#
# OUTDIR: default $OUT when set (the lent device machine's result folder), else
# bench/results/<machine>-<date>/. Written there: <preset>-ngf64-256x256.{json,md,png} and acceptance.log
# (environment, test log, bench logs, summary): 7 files, within what a device call brings back.
#
# Installs nothing and reaches no network (the lent machines reach no registry). It expects:
# - python3 with torch (CUDA), onnx, numpy, pillow, tqdm (the lent machines' image has them);
# - onnxruntime-gpu for the CUDA-provider contestants: unpacked into $SPADE_RT_SITE (default /tmp/site), as
#   the workplace tool split-for-device.sh describes in its header; without it those contestants are recorded as
#   skipped (the image's onnxruntime is the CPU build);
# - TensorRT only if installed (TensorRT-RTX does not run on Hopper: on an H100 the tensorrt contestant is
#   recorded as skipped with that reason).
# spade-rt itself is not installed: a symlink tree in /tmp gives the checkout its installed layout.
#
# Budget: meant to finish in under 6 minutes on an H100 (full-size ngf 64, 256x256; torch.compile is the
# slow part: each compile contestant compiles per batch size and once more in its memory-measuring child).
# Never timed yet: no session with a GPU has run it. SPADE_RT_ACCEPT_BATCHES (default "1,8"),
# SPADE_RT_ACCEPT_REPEATS (default 30) and SPADE_RT_ACCEPT_PRESETS (default "coco ade20k") trim it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
START=$(date +%s)
BATCHES=${SPADE_RT_ACCEPT_BATCHES:-1,8}
REPEATS=${SPADE_RT_ACCEPT_REPEATS:-30}
PRESETS=${SPADE_RT_ACCEPT_PRESETS:-coco ade20k}
export PYTHONUNBUFFERED=1

# carried wheels (onnxruntime-gpu and its CUDA libraries)
SITE=${SPADE_RT_SITE:-/tmp/site}
if [ -d "$SITE" ]; then
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
SP=$($PY -c "import site; print(site.getsitepackages()[0])")
NVLIBS=$(ls -d "$SITE"/nvidia/*/lib "$SP"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="${NVLIBS}${LD_LIBRARY_PATH:-}"

# spade-rt from this checkout, in its installed layout (pyproject's package-dir), without installing
SHADOW=$(mktemp -d /tmp/spade-rt-shadow.XXXXXX)
mkdir "$SHADOW/spade_rt"
for f in "$ROOT"/spade_rt/*; do ln -s "$f" "$SHADOW/spade_rt/"; done
for part in model training export bench engines; do ln -s "$ROOT/$part" "$SHADOW/spade_rt/$part"; done
export PYTHONPATH="$SHADOW:${PYTHONPATH:-}"
export SPADE_RT_CACHE="$SHADOW/cache"  # built graphs and engines: never the user's cache

OUTDIR=${1:-${OUT:-}}
if [ -z "$OUTDIR" ]; then
  SLUG=$($PY -c "from spade_rt.bench.run import machine_info, machine_slug; print(machine_slug(machine_info('cuda')))")
  OUTDIR="bench/results/$SLUG-$(date +%F)"
fi
mkdir -p "$OUTDIR"
LOG="$OUTDIR/acceptance.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo "$(( $(date +%s) - START )) s"; }

say "== spade-rt GPU acceptance, $(date -Is), checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
$PY - <<'EOF' 2>&1 | tee -a "$LOG"
import platform, torch
import spade_rt
print("spade_rt from", spade_rt.__file__)
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
print("GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
      "| compute capability", ".".join(map(str, torch.cuda.get_device_capability(0))) if torch.cuda.is_available() else "-")
try:
    import onnxruntime as ort
    print("onnxruntime", ort.__version__, ort.get_available_providers())
except ImportError as exc:
    print("onnxruntime: not importable:", exc)
for name in ("tensorrt", "tensorrt_rtx", "cuda.bindings"):
    try:
        module = __import__(name, fromlist=["_"])
        print(name, getattr(module, "__version__", "?"))
    except ImportError:
        print(name, "not installed")
EOF

say "== gpu-marked tests ($(elapsed))"
GPU_TESTS=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
# shellcheck disable=SC2086  # one word per file
timeout 300 $PY -m pytest -m gpu -q -rs -p no:cacheprovider $GPU_TESTS 2>&1 | tee -a "$LOG"
TESTS_RC=${PIPESTATUS[0]}

CONTESTANTS=$($PY -c "from spade_rt.runtime.registry import all_contestants; print(','.join(all_contestants()))")
JSONS=()
for preset in $PRESETS; do
  say "== bench $preset: $CONTESTANTS, batches $BATCHES, $REPEATS repeats ($(elapsed))"
  json="$OUTDIR/$preset-ngf64-256x256.json"
  timeout 900 $PY -m spade_rt.cli bench --device cuda --preset "$preset" --backends "$CONTESTANTS" \
    --batch "$BATCHES" --repeats "$REPEATS" --json "$json" 2>&1 | tee -a "$LOG"
  [ -f "$json" ] && JSONS+=("$json")
done

say "== summary ($(elapsed))"
SUMMARY_RC=1
if [ ${#JSONS[@]} -gt 0 ]; then
  $PY -m spade_rt.bench.acceptance "${JSONS[@]}" 2>&1 | tee -a "$LOG"
  SUMMARY_RC=${PIPESTATUS[0]}
else
  say "FAIL  no bench record was written"
fi
say "gpu tests: exit $TESTS_RC; acceptance criteria: $([ "$SUMMARY_RC" = 0 ] && echo PASS || echo FAIL); total $(elapsed)"
say "results in $OUTDIR"
rm -rf "$SHADOW"
[ "$TESTS_RC" = 0 ] && [ "$SUMMARY_RC" = 0 ]
