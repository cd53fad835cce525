"""The stack command's own output: lines on stdout as `bin/stack` works (library code logs instead)."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def display(path: Path) -> str:
    """A path relative to the current folder when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"
