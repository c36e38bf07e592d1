"""Progress that reads well wherever it lands: a bar on a terminal, a line per tenth of the work in a log file or a
captured run (where a bar would be a line per update)."""

from __future__ import annotations

import sys


def on_terminal() -> bool:
    """Whether progress bars help: only on a terminal. In a log file or a captured run a bar is a line per step;
    commands say one line per stage (or per tenth of the work) instead."""
    return sys.stderr.isatty()


class LogLines:
    """tqdm's `update` / `close`, written as `desc: done/total unit` lines at every tenth of `total` (every
    `every` items when the total is unknown) and once at the end."""

    def __init__(self, total: int | None, desc: str, unit: str, every: int = 1000, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.step = max(1, total // 10) if total else every
        self.done = self._printed = 0
        self._next = self.step
        self._stream = stream or sys.stderr

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next:
            self._line()
            while self._next <= self.done:
                self._next += self.step

    def close(self) -> None:
        if self.done != self._printed:
            self._line()

    def _line(self) -> None:
        of = f"/{self.total}" if self.total else ""
        self._printed = self.done
        print(f"{self.desc}: {self.done}{of} {self.unit}s", file=self._stream, flush=True)


def progress(total: int | None, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar on a terminal, `LogLines` elsewhere, None when not `enabled`."""
    if not enabled:
        return None
    if on_terminal():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit)
    return LogLines(total, desc, unit)
