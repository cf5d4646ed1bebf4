"""Progress of cache builds and downloads where the user looks for it. The native layer draws a
bar on a terminal's stderr and writes a line every few seconds to a log file (SLURM's); where
the process's stderr is not what the user sees (Jupyter), it reports here instead, and this
shows a tqdm bar when tqdm is importable, else the same lines, on ``sys.stderr``."""

from __future__ import annotations

import sys
import time
from typing import Any

from . import _native

LINE_EVERY_S = 5.0


def stderr_is_seen() -> bool:
    """Whether what the native layer writes to file descriptor 2 reaches the user."""
    if "ipykernel" in sys.modules:
        return False
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


class Reporter:
    """Shows the native layer's progress events on ``sys.stderr``."""

    def __init__(self, use_tqdm: bool = True) -> None:
        self._tqdm: Any = None
        if use_tqdm:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                pass
        self._jobs: dict[int, dict[str, Any]] = {}

    def __call__(self, kind: str, job: int, text: str, done: int, total: int) -> None:
        if kind == "line":
            print(text, file=sys.stderr)
        elif kind == "start":
            state: dict[str, Any] = {"what": text, "total": total, "done": 0}
            if self._tqdm is not None:
                state["bar"] = self._tqdm(
                    total=total, desc=f"slipstream: {text}", unit="B", unit_scale=True
                )
            else:
                state["started"] = state["shown"] = time.monotonic()
                self._line(state)
            self._jobs[job] = state
        elif kind == "advance" and job in self._jobs:
            state = self._jobs[job]
            if "bar" in state:
                state["bar"].update(done - state["done"])
                state["done"] = done
                return
            state["done"] = done
            if time.monotonic() - state["shown"] >= LINE_EVERY_S:
                state["shown"] = time.monotonic()
                self._line(state)
        elif kind == "finish" and job in self._jobs:
            state = self._jobs.pop(job)
            if "bar" in state:
                state["bar"].close()
            else:
                self._line(state)

    @staticmethod
    def _line(state: dict[str, Any]) -> None:
        total, done = state["total"], state["done"]
        percent = 100 * done / total if total else 100
        seconds = time.monotonic() - state["started"]
        print(
            f"slipstream: {state['what']}: {percent:.0f}% ({done / 1e6:.1f} of "
            f"{total / 1e6:.1f} MB, {seconds:.0f} s)",
            file=sys.stderr,
        )


_installed = False


def install() -> None:
    """Route the native layer's progress here when its stderr is not what the user sees."""
    global _installed
    if not _installed and not stderr_is_seen():
        _native.set_progress_reporter(Reporter())
        _installed = True
