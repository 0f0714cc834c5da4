"""What the periodic passes (ham-ewald, ham-periodic) share: where an op sits, the notes they
leave on `ham.system` for `--remarks`, and the cell grid of a cut-off pair sum."""

from __future__ import annotations

from tpc.dialects import ham
from xdsl.dialects.builtin import ArrayAttr, FileLineColLoc, StringAttr
from xdsl.ir import Operation


def system_of(op: Operation) -> ham.SystemOp | None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, ham.SystemOp):
        parent = parent.parent_op()
    return parent


def where(op: Operation) -> str:
    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}:{loc.column.data}"
    return "the pair sum"


def add_notes(system: ham.SystemOp, notes: list[str]) -> None:
    if not notes:
        return
    old = system.attributes.get("notes")
    kept = [] if old is None else list(old.data)
    system.attributes["notes"] = ArrayAttr(kept + [StringAttr(n) for n in notes])


MAX_CELLS = 1 << 21  # 2M cells: 32 MiB of scratch; wider cells only cost more pair tests


def _count(grid: list[int]) -> int:
    total = 1
    for g in grid:
        total *= g
    return total


def cell_grid(box: tuple[float, ...], rc: float) -> tuple[int, ...] | None:
    """Cells at least rc wide; a neighbour search needs 3 per axis (27 distinct neighbours).
    A tiny rc in a large box would ask for more cells than particles could fill: the grid is
    coarsened (cells wider than rc are still correct) to at most MAX_CELLS."""
    # a margin over rc, so that a position rounded across a cell face cannot hide a partner
    grid = [min(int(length // (rc * (1 + 1e-6))), MAX_CELLS) for length in box]
    while _count(grid) > MAX_CELLS:
        grid = [max(3, g // 2) for g in grid]
    return tuple(grid) if min(grid) >= 3 else None
