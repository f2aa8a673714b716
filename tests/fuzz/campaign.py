"""Run every fuzz target for a fixed time, a few at once, and summarise what libFuzzer reports.

``python tests/fuzz/campaign.py --seconds 600 --jobs 2 --out DIR`` runs each ``fuzz_<target>.py`` as its own process
(``nice``), on a scratch corpus seeded from ``tests/fuzz/corpus/<target>`` (the committed seeds are never
written), with crashes saved under ``DIR/<target>/``. It prints one JSON object per target: executions, the
final ``cov``/``ft`` figures, the corpus size, the crash files found. tests/test_fuzz.py runs it with a short
budget (CI) and, marked slow, for minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = tuple(sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py")))
_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
# Linux carries a process's peak resident size (ru_maxrss, what libFuzzer's -rss_limit_mb reads) across fork and
# exec: a target started straight from a pytest process that has grown to 4 GB "used" 4 GB before its first input
# (a false out-of-memory in the full suite). A child of a fresh interpreter starts its count at its own size.
_FRESH_PEAK = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def run_target(target: str, seconds: int, out: Path, nice: int = 10) -> dict:
    """One target for ``seconds``; its libFuzzer log in ``out/<target>/log.txt``."""
    where = out / target
    corpus = where / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", _FRESH_PEAK, "nice", "-n", str(nice), sys.executable, str(HERE / f"fuzz_{target}.py"),
           f"-max_total_time={seconds}", "-print_final_stats=1", f"-artifact_prefix={where}/",
           str(corpus), str(HERE / "corpus" / target)]  # fmt: skip
    t0 = time.monotonic()
    with open(where / "log.txt", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=seconds + 300)
        except subprocess.TimeoutExpired:  # a hung target: its whole group, the fresh interpreter's child included
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = (where / "log.txt").read_text(errors="replace")
    stats = _STATS.findall(text)
    done = _DONE.findall(text)
    crashes = sorted(p.name for p in where.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    return {
        "target": target,
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - t0, 1),
        "executions": int(done[-1][0]) if done else (int(stats[-1][0]) if stats else 0),
        "cov": int(stats[-1][1]) if stats else None,
        "ft": int(stats[-1][2]) if stats else None,
        "corpus_units": int(stats[-1][3]) if stats else None,
        "crashes": crashes,
        "log": str(where / "log.txt"),
    }


def campaign(targets: tuple[str, ...], seconds: int, jobs: int, out: Path) -> list[dict]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda t: run_target(t, seconds, out), targets))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="per target")
    parser.add_argument("--jobs", type=int, default=2, help="targets at once")
    parser.add_argument("--out", type=Path, required=True, help="scratch corpora, logs and crashes")
    parser.add_argument("targets", nargs="*", default=TARGETS, help=f"default: all ({', '.join(TARGETS)})")
    args = parser.parse_args()
    results = campaign(tuple(args.targets), args.seconds, args.jobs, args.out)
    for r in results:
        print(json.dumps(r))
    return 0 if all(r["returncode"] == 0 and not r["crashes"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
