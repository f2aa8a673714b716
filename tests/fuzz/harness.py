"""What every fuzz target shares: the property one input must keep, and the atheris/libFuzzer entry point.

A target (``tests/fuzz/fuzz_<name>.py``) is a ``Target``: the parser(s) it drives on one input, the errors that
count as a clean refusal (the project's own, ``spade_rt.errors``), an allocation bound for an input of n bytes
and, where the format has structure, a structure-aware mutator. ``check_one`` is the property:

- the parser returns, or raises one of ``allowed`` with a one-line, non-empty message; any other exception is
  a bug and propagates (atheris reports it with its traceback and saves the input);
- it spends at most ``HANG_CPU_S`` seconds of CPU time on the input (CPU, not wall, time: the CI machine is
  shared; libFuzzer's ``-timeout`` is the wall-clock backstop for a real endless loop);
- its peak of traced memory (``tracemalloc``: Python objects and numpy arrays) stays within ``max_alloc(n)``.

``python tests/fuzz/fuzz_X.py [libFuzzer args] CORPUS_DIR...`` fuzzes; tests/test_fuzz.py replays the seed
corpus and every regression file through ``check_one`` and runs each target for a short budget.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"
HANG_CPU_S = 1.0  # "a hang": more than this much CPU time for one small input
MiB = 1 << 20


class PropertyError(AssertionError):
    """An input broke the property: a hang, an unjustified allocation, or a refusal that is not one line."""


@dataclass
class Target:
    name: str
    run: Callable[[bytes], object]  # the parser(s) under test, on one input
    allowed: tuple[type[BaseException], ...]  # clean refusals: the project's own errors
    max_alloc: Callable[[int], int]  # bytes of traced memory an input of n bytes may cost at its peak
    max_len: int  # libFuzzer -max_len: inputs are small
    mutate: Callable[[bytes, random.Random], bytes] | None = None  # structure-aware: one mutation of a valid input


def attempt(allowed: tuple[type[BaseException], ...], fn: Callable, *args, **kwargs):
    """``fn(*args)``, or None when it refuses cleanly (one of ``allowed``, one line); for targets that drive
    several readers on one input. Any other exception propagates: that is a bug."""
    try:
        return fn(*args, **kwargs)
    except allowed as exc:
        one_line(exc)
        return None


def one_line(exc: BaseException) -> None:
    message = str(exc)
    if not message.strip() or "\n" in message:
        raise PropertyError(f"{type(exc).__name__} is not one line: {message[:300]!r}") from None


def check_one(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data`` and raise when the property breaks (see the module's docstring)."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    t0 = time.process_time()
    try:
        target.run(data)
    except target.allowed as exc:
        one_line(exc)
    cpu = time.process_time() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    if cpu > HANG_CPU_S:
        raise PropertyError(f"{cpu:.2f} s of CPU for one {len(data)}-byte input (bound {HANG_CPU_S} s)")
    bound = target.max_alloc(len(data))
    if peak > bound:
        raise PropertyError(f"{peak} bytes allocated for a {len(data)}-byte input (bound {bound})")


@contextlib.contextmanager
def scratch_file(suffix: str) -> Iterator[Path]:
    """One file name in a private folder (in memory where /dev/shm exists), reused for every input."""
    where = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spade-rt-fuzz-", dir=where) as tmp:
        yield Path(tmp) / f"input{suffix}"


def instrumented(target_modules: tuple[str, ...]):
    """atheris' import instrumentation when fuzzing (``__main__``), nothing when a test imports the target."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", "").startswith(str(HERE)) and "pytest" not in sys.modules:
        import atheris

        return atheris.instrument_imports(include=list(target_modules))
    return contextlib.nullcontext()


def fuzz(target: Target, argv: list[str] | None = None) -> None:
    """libFuzzer's loop on ``target`` (argv as libFuzzer takes it; -max_len, -timeout, -rss_limit_mb defaulted)."""
    import atheris

    argv = list(sys.argv if argv is None else argv)
    defaults = {"-max_len": str(target.max_len), "-timeout": "20", "-rss_limit_mb": "3072"}
    for flag, value in defaults.items():
        if not any(a.startswith(flag + "=") for a in argv[1:]):
            argv.insert(1, f"{flag}={value}")
    tracemalloc.start()
    warnings.simplefilter("ignore")  # Pillow's "Invalid APNG" and the like, once per input: noise in the log

    def one_input(data: bytes) -> None:
        check_one(target, data)

    if target.mutate is None:
        atheris.Setup(argv, one_input)
    else:
        mutate = target.mutate

        def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
            rng = random.Random(seed)
            if rng.random() < 0.3:  # libFuzzer's own byte-level mutations, for what the structure misses
                return atheris.Mutate(data, max_size)
            try:
                out = mutate(data, rng)
            except Exception:  # the input has no structure left to mutate: fall back to bytes
                return atheris.Mutate(data, max_size)
            return out[:max_size]

        atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# ---- small mutation helpers the structure-aware mutators share ---------------------------------------------
INTERESTING_INTS = (0, 1, 2, 3, 7, 8, 255, 256, 65535, 65536, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 62, 1 << 63,
                    (1 << 64) - 1, 1 << 64, -1, -(1 << 63))  # fmt: skip


def mutate_int(value: int, rng: random.Random) -> int:
    choice = rng.randrange(4)
    if choice == 0:
        return rng.choice(INTERESTING_INTS)
    if choice == 1:
        return value + rng.randint(-8, 8)
    if choice == 2:
        return value * rng.choice((2, 16, 1 << 20)) if value else rng.randint(1, 1 << 20)
    return value ^ (1 << rng.randrange(64))


def mutate_json_value(value: object, rng: random.Random, depth: int = 0) -> object:
    """One random change somewhere inside a JSON value: a number nudged, a type swapped, a key dropped ..."""
    if isinstance(value, dict) and value and depth < 6 and rng.random() < 0.8:
        key = rng.choice(list(value))
        out = dict(value)
        r = rng.random()
        if r < 0.1:
            del out[key]
        elif r < 0.15:
            out[key + rng.choice(("", "x", "é"))] = out.pop(key)
        else:
            out[key] = mutate_json_value(value[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.8:
        out_list = list(value)
        i = rng.randrange(len(out_list))
        r = rng.random()
        if r < 0.15:
            del out_list[i]
        elif r < 0.3:
            out_list.insert(i, out_list[i])
        else:
            out_list[i] = mutate_json_value(out_list[i], rng, depth + 1)
        return out_list
    if isinstance(value, bool):
        return rng.choice((not value, 0, 1, None, "true"))
    if isinstance(value, int):
        return mutate_int(value, rng) if rng.random() < 0.85 else rng.choice((float(value), str(value), None, [value]))
    if isinstance(value, float):
        return rng.choice((value * 2, -value, 0.0, 1e308, float(int(value)), int(value), str(value), 1e-9))
    if isinstance(value, str):
        r = rng.random()
        if r < 0.3 and value:
            i = rng.randrange(len(value))
            return value[:i] + value[i + 1 :]
        if r < 0.5:
            return value + rng.choice(("x", "0", "é", "\x00", "[", "{"))
        if r < 0.6:
            return rng.choice((0, None, [], {}, True))
        return rng.choice(("", "F32", "I64", "uint8", "coco", "fp16", "float", "most", "batch", value * 2))
    return rng.choice((0, "", None, [], {}, 1.5))


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A simple byte-level mutation (for payloads inside a structure): flip, insert, delete, truncate."""
    if not data:
        return bytes([rng.randrange(256)])
    b = bytearray(data)
    r = rng.randrange(4)
    i = rng.randrange(len(b))
    if r == 0:
        b[i] ^= 1 << rng.randrange(8)
    elif r == 1:
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif r == 2:
        del b[i : i + rng.randint(1, 16)]
    else:
        del b[i:]
    return bytes(b)


def coco_spec(use_vae: bool, z_dim: int):
    """A 64x64 coco model's spec (182 classes + don't-care, instance edges), as a graph's metadata gives it."""
    from spade_rt.runtime.spec import spec_from_dict

    return spec_from_dict(
        {"preset": "coco", "label_nc": 182, "contain_dontcare_label": True, "use_instance": True, "height": 64,
         "width": 64, "use_vae": use_vae, "z_dim": z_dim, "output": "float", "precision": "fp32", "min_batch": 1,
         "max_batch": 4, "dynamic_size": False},
        "coco spec",
    )  # fmt: skip


def run_main(target: Target) -> None:
    """A target module's ``__main__``: fuzz it with the command line's libFuzzer arguments."""
    fuzz(target)
