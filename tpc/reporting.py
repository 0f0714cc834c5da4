"""What a run tells while it runs: reporters (every k snapshots) and the progress bar.

A reporter sees each snapshot exactly once, in order: every call hands over the rows computed
since the previous one (row 0 in the first call), so streaming them to a file or a plot needs no
bookkeeping. The native loop runs uninterrupted between reports: a run is cut into native calls
at report boundaries only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tpc.diagnostics import TpcError


@dataclass
class Snapshots:
    """Rows `first` .. `first + len(t) - 1` of a run (q, p batch-first for an ensemble:
    [B, rows, ...]); `step` is the step count of the last row."""

    first: int
    t: np.ndarray
    q: np.ndarray
    p: np.ndarray
    H: np.ndarray
    step: int


class Reports:
    """Hands the rows to `fn` every `every` snapshots (and the rest at the end)."""

    def __init__(self, fn: Callable[[Snapshots], object] | None, every: int):
        if fn is not None and not callable(fn):
            raise TpcError(f"reporter must be a function of the new snapshots, got "
                           f"{type(fn).__name__}")
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
            raise TpcError(f"report_every must be a whole number >= 1, got {every!r}")
        self.fn, self.every, self.sent = fn, int(every), 0

    def limit(self, rows_done: int) -> int | None:
        """How many more rows may be computed before the next report is due."""
        if self.fn is None:
            return None
        return max(1, self.sent + self.every - rows_done)

    def due(self, rows_done: int) -> bool:
        return self.fn is not None and rows_done - self.sent >= self.every

    def send(self, rows_done: int, step: int, t, q, p, h, batched: bool, base: int = 0) -> None:
        """Report rows sent..rows_done-1 (q, p, h with rows on axis 1 when batched; their
        index 0 holds row `base` of the run, as in a streamed run's window)."""
        if self.fn is None or rows_done <= self.sent:
            return
        rows = slice(self.sent - base, rows_done - base)
        pick = (lambda a: a[:, rows]) if batched else (lambda a: a[rows])
        snap = Snapshots(self.sent, t[rows].copy(), pick(q).copy(), pick(p).copy(),
                         pick(h).copy(), step)
        self.sent = rows_done
        self.fn(snap)


class Progress:
    """A tqdm bar on stderr in steps: rate-limited (it redraws at most twice a second), and it
    works in a terminal, in Jupyter (tqdm.auto picks the widget there) and when piped."""

    def __init__(self, total: int, start: int = 0, members: int | None = None,
                 delay: float = 1.0):
        from tqdm.auto import tqdm

        self.start = start
        desc = f"{members} members" if members else None
        # delay: a run shorter than a second shows no bar (and leaves no line in a log)
        self.bar = tqdm(total=max(total, 1), unit="step", unit_scale=True, mininterval=0.5,
                        delay=delay, file=sys.stderr, desc=desc, leave=False,
                        dynamic_ncols=True)

    def update(self, done: int) -> None:
        self.bar.update(done - self.start - self.bar.n)

    def close(self) -> None:
        self.bar.close()
