"""The snapshot grid of a stepped run, shared by single runs (tpc.api) and ensembles
(tpc.ensemble): which native calls cover `steps` steps saved every `save_every`, the time of
each row, and what a `run` status code says when a call stops early."""

from __future__ import annotations

import numpy as np


def plan(steps: int, save_every: int) -> tuple[int, list[tuple[int, int]]]:
    """(rows including row 0, [(stride, count)]): `count` snapshots `stride` steps apart,
    then one last row for the remainder of the steps."""
    full, rem = divmod(steps, save_every)
    return 1 + full + (1 if rem else 0), [(save_every, full)] + ([(rem, 1)] if rem else [])


def fill_times(t: np.ndarray, row: int, step: int, stride: int, count: int, dt: float) -> None:
    """t of rows row .. row + count - 1, the snapshots after `step`, `stride` steps apart."""
    for r in range(count):
        t[row + r] = (step + (r + 1) * stride) * dt


def stopped_at(code: int) -> tuple[int, str]:
    """The step a `run` status code (not -1) names, and why it stopped there."""
    if code >= 0:
        return code, "the state became non-finite"
    return -2 - code, "the implicit midpoint iteration did not converge"
