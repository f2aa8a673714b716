"""Small file helpers: output checks before work starts, atomic writes (nothing half-written is ever left
behind) and hashing."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spade_rt.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given: mkstemp's files are 0600


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` is left as it was. A process killed outright
    (SIGKILL, power cut) cannot clean up: its temporary file stays, named after its host and process id
    (``.NAME.<host>-<pid>.<random>.tmp``), and the next write of the same ``path`` removes those whose process is
    gone (``sweep_dead_temporaries``). Readers never see a temporary: they open ``path``, which is either the
    old file or the whole new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # no dots or dashes to parse


def _owner() -> str:
    return f"{_host_tag()}-{os.getpid()}"  # per call: a forked child writes under its own id


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # alive under another user, or not a pid: leave it
    try:  # a killed process whose parent has not reaped it yet (a zombie) writes nothing more either
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def sweep_dead_temporaries(target: str | Path, *, folder: bool = False) -> list[Path]:
    """Remove the temporaries that ``atomic_path`` left behind in processes of this host that no longer run
    (killed while writing): those of the file ``target``, or with ``folder=True`` every one inside the folder
    ``target`` (not below it). Returns what was removed. POSIX only (Windows' os.kill would end the process);
    temporaries of other hosts (a shared folder) and of live processes are left alone."""
    if os.name != "posix":
        return []
    target = Path(target)
    where, pattern = (target, ".*.tmp") if folder else (target.parent, f".{glob.escape(target.name)}.*.tmp")
    host, removed = _host_tag(), []
    for tmp in where.glob(pattern):
        owner = tmp.name.split(".")[-3]  # .NAME.<host>-<pid>.<random>.tmp (NAME may hold dots, the rest not)
        tag, _, pid = owner.partition("-")
        if tag == host and pid.isdigit() and _process_gone(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another process swept it first
                tmp.unlink()
                removed.append(tmp)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _writable_folder(folder: Path, target: Path, what: str) -> None:
    """Raise OutputError unless a file can be created in ``folder`` (or in the part of it that exists: the rest
    is created on writing). The test is a real one: a file is created there and removed at once, so read-only
    file systems, permissions and special file systems (/proc, /sys) all answer truthfully."""
    existing = folder.absolute()
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {target}: {existing} is a file, not a folder; expected a path inside a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".spade-rt-probe-", dir=existing)
    except OSError as exc:
        raise OutputError(
            f"{what} {target}: cannot create files in {existing} ({exc.strerror or exc}); expected a writable folder"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | Path, what: str = "output", suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that ``path`` can be written as a file: not a folder, a suffix in ``suffixes``
    (any when empty), inside a folder where files can be created. Raises OutputError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder: expected a file name" + _suffix_hint(suffixes))
    if suffixes and path.suffix.lower() not in suffixes:
        got = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise OutputError(f"{what} {path} has {got}: expected a file name ending in {', '.join(suffixes)}")
    _writable_folder(path.parent, path, what)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before any work, that ``path`` is (or can be made) a folder where files can be created."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"{what} {path} is a file: expected a folder (existing or to be created)")
    _writable_folder(path, path, what)
    return path


def _suffix_hint(suffixes: tuple[str, ...]) -> str:
    return f" ending in {', '.join(suffixes)}" if suffixes else ""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
