"""Fuzz target: an original SPADE checkpoint (``latest_net_G.pth``), as `spade-rt convert` reads it.

Input: a whole .pth file (torch.save's zip archive, or the legacy pickle stream). Driven: ``load_torch_state_dict``
(``torch.load(weights_only=True)`` with the project's one-line errors), ``read_generator_facts`` and
``infer_generator_config`` for the coco and landscape presets, ``infer_encoder_norm`` (the same file read as an
encoder). Beyond the common property, loading must never
run code: an audit hook fails the input on any process, exec, socket, ctypes or full-unpickler class lookup
event while it is read. Structure-aware: zip archives are rebuilt with valid CRCs around one changed record
(the pickle, a storage, the version record, a name), legacy streams get their pickle bytes changed.
"""

from __future__ import annotations

import io
import random
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MiB, PropertyError, Target, attempt, instrumented, mutate_bytes, run_main, scratch_file

with instrumented(("spade_rt",)):
    from spade_rt.errors import SpadeRtError
    from spade_rt.model.original_checkpoint import (
        infer_encoder_norm,
        infer_generator_config,
        load_torch_state_dict,
        read_generator_facts,
    )

ALLOWED = (SpadeRtError,)
_scratch = scratch_file(".pth")
PATH = _scratch.__enter__()
# events that mean code from the file ran, or could have: nothing of the kind happens while a checkpoint is read
FORBIDDEN_EVENTS = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                    "pty.spawn", "socket.connect", "socket.bind", "ctypes.dlopen", "pickle.find_class", "exec",
                    "os.remove", "os.rename", "shutil.rmtree", "webbrowser.open"}  # fmt: skip
_armed: list[str] = []
_seen: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if not _armed or event not in FORBIDDEN_EVENTS:
        return
    if event == "exec" and str(getattr(args[0], "co_filename", "")).endswith(".py"):
        return  # a module of torch imported lazily on first use, not code from the file
    _seen.append(f"{event}{args!r:.200}")


sys.addaudithook(_audit)


def run(data: bytes) -> None:
    PATH.write_bytes(data)
    _seen.clear()
    _armed.append("on")
    try:
        state = attempt(ALLOWED, load_torch_state_dict, PATH)
    finally:
        _armed.clear()
    if _seen:
        raise PropertyError(f"reading a checkpoint raised audit events: {', '.join(_seen[:3])}")
    if state is None:
        return
    if attempt(ALLOWED, read_generator_facts, state, "fuzzed.pth") is not None:
        for preset in ("coco", "landscape"):
            config = attempt(ALLOWED, infer_generator_config, state, preset, "fuzzed.pth")
            if config is not None:
                attempt(ALLOWED, infer_encoder_norm, state, "fuzzed.pth", config)


def mutate(data: bytes, rng: random.Random) -> bytes:
    if not data.startswith(b"PK\x03\x04"):
        return mutate_bytes(data, rng)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        records = [(info.filename, z.read(info)) for info in z.infolist()]
    i = rng.randrange(len(records))
    name, body = records[i]
    r = rng.random()
    if r < 0.7:
        body = mutate_bytes(body, rng)
    elif r < 0.8:
        del records[i]
        name = ""
    elif r < 0.9:
        name = name.replace("data", rng.choice(("dat", "data/../x", "DATA")), 1)
    else:
        body = body * rng.randint(0, 3)
    if name:
        records[i] = (name, body)
    out = io.BytesIO()
    compression = zipfile.ZIP_STORED if rng.random() < 0.9 else zipfile.ZIP_DEFLATED  # torch writes stored records
    with zipfile.ZipFile(out, "w", compression) as z:
        for n, b in records:
            z.writestr(n, b)
    return out.getvalue()


TARGET = Target(
    name="original_checkpoint",
    run=run,
    allowed=ALLOWED,
    # torch's storages are C++ allocations (libFuzzer's -rss_limit_mb bounds them); Python's side: the unpickled
    # containers and the state dict
    max_alloc=lambda n: 16 * MiB + 64 * n,
    max_len=16 << 10,
    mutate=mutate,
)

if __name__ == "__main__":
    run_main(TARGET)
