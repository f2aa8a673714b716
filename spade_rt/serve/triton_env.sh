#!/usr/bin/env bash
# The Triton side of `spade-rt triton --backend python`, on a machine without the NGC container:
# a virtual environment with Triton Inference Server (the `tritonserver` 2.51 that the nvidia-pytriton wheel
# bundles, with its python backend), the torch-free spade-rt runtime, ONNX Runtime and numpy < 2, plus
# ENV/bin/tritonserver, a launcher that starts that server with the environment's python first on PATH.
#
#   bash spade_rt/serve/triton_env.sh [ENV]        # default ENV: .venv-triton in the checkout
#   ENV/bin/tritonserver --model-repository models/ --http-address 127.0.0.1
#
# Why an environment of its own (docs/triton.md): the python backend's stub is built for one Python minor
# version and links the system's libpython (so the interpreter must be that libpython's, e.g. Debian's
# /usr/bin/python3.11, not a pyenv build of another patch release); it ignores PYTHONPATH and finds its
# interpreter, and so the site-packages model.py imports from, through the `python3` first on PATH; and it
# is built against numpy 1.x (under numpy 2 a uint8 output tensor arrives empty), which nvidia-pytriton pins.
# TRITON_PYTHON=/path/to/python3.X picks another interpreter; SPADE_RT_SOURCE another spade-rt (a wheel, a
# checkout; default this checkout, editable).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ENV="${1:-$ROOT/.venv-triton}"
SOURCE="${SPADE_RT_SOURCE:-$ROOT}"
if [[ -z "${TRITON_PYTHON:-}" ]]; then
    # the stub links the system libpython: prefer the system interpreter of the same version
    for candidate in /usr/bin/python3.11 /usr/bin/python3.12 /usr/bin/python3 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
            TRITON_PYTHON="$candidate"
            break
        fi
    done
fi
: "${TRITON_PYTHON:?no python3 with venv and ensurepip found: set TRITON_PYTHON}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$ENV"
ENV="$(cd "$ENV" && pwd)"  # absolute: the launcher below runs from anywhere
"$TRITON_PYTHON" -m venv "$ENV"
PY="$ENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# numpy < 2: the stubs are built against numpy 1.x; no torch: the runtime is torch-free
"$PY" -m pip install -q "nvidia-pytriton>=0.7" "numpy<2" "onnxruntime>=1.18"
if [[ -d "$SOURCE" ]]; then
    "$PY" -m pip install -q -e "$SOURCE"
else
    "$PY" -m pip install -q "$SOURCE"
fi

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DIST="$SITE/pytriton/tritonserver"
VERSION="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
STUB="$DIST/python_backend_stubs/$VERSION/triton_python_backend_stub"
[[ -x "$STUB" ]] || { echo "nvidia-pytriton has no python backend stub for Python $VERSION ($STUB)" >&2; exit 1; }
# the python backend runs the stub it finds beside libtriton_python.so
cp "$STUB" "$DIST/backends/python/triton_python_backend_stub"
# the interpreter's own lib/ first, so the stub loads its libpython (pitfall (a) of issue 17 under pyenv)
LIBDIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
LIBS="$SITE/nvidia_pytriton.libs"
if [[ -e "$LIBDIR/libpython$VERSION.so.1.0" && "$LIBDIR" != /usr/lib* && "$LIBDIR" != /lib* ]]; then
    LIBS="$LIBDIR:$LIBS"
fi

cat >"$ENV/bin/tritonserver" <<EOF
#!/usr/bin/env bash
# written by spade_rt/serve/triton_env.sh: Triton Inference Server with this environment's python first on PATH
export PATH="$ENV/bin:\$PATH"
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$DIST/bin/tritonserver" --backend-directory "$DIST/backends" --cache-directory "$DIST/caches" "\$@"
EOF
chmod +x "$ENV/bin/tritonserver"
# smoke check: the server binary starts, and model.py's imports resolve in the environment
usage="$("$ENV/bin/tritonserver" --help 2>&1 || true)"  # --help exits with status 1
[[ "$usage" == *--model-repository* ]] || { echo "$ENV/bin/tritonserver does not start" >&2; exit 1; }
"$PY" -c 'import numpy, onnxruntime, spade_rt.serve.triton_python; assert int(numpy.__version__.split(".")[0]) < 2'
echo "Triton environment ready: $ENV (Python $VERSION, $("$PY" -m pip show nvidia-pytriton | grep ^Version))"
