"""Where spade-rt keeps what it builds for itself: the demo graph, recipe graphs and engines.

Never the working directory: an installed `spade-rt demo` must not drop ``engines/built/`` wherever the
user happens to stand. Order of precedence:

1. an explicit directory (the ``--cache-dir`` flag of the commands that build);
2. the ``SPADE_RT_CACHE`` environment variable;
3. ``$XDG_CACHE_HOME/spade-rt``, else ``~/.cache/spade-rt`` (the per-user cache of the XDG convention,
   which pip, torch and Hugging Face follow too).

Built files live in ``<cache>/built/``; anything there can be deleted at any time and is rebuilt on use.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SPADE_RT_CACHE"


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache root (not created here: writers create what they write, atomically)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spade-rt"


def built_dir(override: str | Path | None = None) -> Path:
    """Where built graphs and engines go: ``<cache>/built``."""
    return cache_dir(override) / "built"
