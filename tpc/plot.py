"""`tpc plot run.npz|run.h5` and `Trajectory.plot()`: the relative energy error against t
(log scale) and the phase portraits (each coordinate against its momentum).

matplotlib is the optional `plot` extra. Figures are built as `matplotlib.figure.Figure`
objects, never through pyplot, so nothing here sets a global backend: a file is rendered by
the Agg canvas (PNG) or the PDF one, headless, and in Jupyter the returned Figure shows inline.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tpc.diagnostics import TpcError
from tpc.output import write_file

FORMATS = (".png", ".pdf")
MAX_PORTRAITS = 6  # a state of thousands of coordinates gets its first few
MAX_MEMBERS = 16  # an ensemble's energy panel: this many members, then the spread


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TpcError("plots need matplotlib: pip install 'tpc[plot]'") from None
    return Figure


def check_plot_path(path: str) -> None:
    if Path(path).suffix.lower() not in FORMATS:
        raise TpcError(f"cannot plot to '{path}': the file must end in .png or .pdf")


def plot_trajectory(traj, path: str | None = None, *, member: int | None = None,
                    title: str = ""):
    """The Figure of a Trajectory (an ensemble: every member's energy error, the phase
    portraits of `member`, default 0); written to `path` (.png or .pdf) when given."""
    Figure = _matplotlib()
    if path is not None:
        check_plot_path(path)
    batched = traj.batch is not None
    if not batched and member is not None:
        raise TpcError("member= is for ensembles (a Trajectory of batch=B)")
    if batched and member is not None and not 0 <= member < traj.batch:
        raise TpcError(f"member {member} is not one of the {traj.batch} members")
    t = np.asarray(traj.t)
    err = np.atleast_2d(traj.relative_energy_error())
    shown = member or 0
    q = np.asarray(traj.q[shown] if batched else traj.q, dtype=np.float64).reshape(len(t), -1)
    p = np.asarray(traj.p[shown] if batched else traj.p, dtype=np.float64).reshape(len(t), -1)
    count = min(q.shape[1], MAX_PORTRAITS)
    cols = min(count, 3)
    rows = 1 + -(-count // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, :])
    _energy_panel(ax, t, err)
    names = traj.names
    for k in range(count):
        a = fig.add_subplot(grid[1 + k // cols, k % cols])
        a.plot(q[:, k], p[:, k], lw=0.5, alpha=0.8, color="C0")
        a.plot(q[:1, k], p[:1, k], "o", color="C3", ms=4, label="start")
        index = f"[{k}]" if q.shape[1] > 1 else ""
        a.set_xlabel(f"{names[0]}{index}")
        a.set_ylabel(f"{names[1]}{index}")
        if k == 0:
            a.legend(loc="best", fontsize="small")
    if batched:
        fig.suptitle(f"{title + ': ' if title else ''}{traj.batch} members (phase portraits "
                     f"of member {shown})")
    elif title:
        fig.suptitle(title)
    if path is not None:
        save(fig, path)
    return fig


def _energy_panel(ax, t: np.ndarray, err: np.ndarray) -> None:
    """|H - H0| / |H0| on a log scale; an exact zero (row 0, a conserved H) is left out, as a
    log axis cannot show it."""
    ax.set_xlabel("t")
    ax.set_ylabel("|H - H0| / |H0|")
    drawn = False
    for b, e in enumerate(err[:MAX_MEMBERS]):
        keep = e > 0
        if keep.any():
            ax.plot(t[keep], e[keep], lw=0.8, color=f"C{b % 10}", alpha=0.9 if len(err) == 1
                    else 0.6)
            drawn = True
    if len(err) > MAX_MEMBERS:
        ax.set_title(f"relative energy error ({MAX_MEMBERS} of {len(err)} members)")
    else:
        ax.set_title("relative energy error")
    if drawn:
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "H conserved exactly at every snapshot", transform=ax.transAxes,
                ha="center", va="center")


def save(fig, path: str) -> None:
    """Render to memory, then write atomically (the output is never half a picture)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lower()[1:], dpi=110)
    write_file(path, lambda f: f.write(buf.getvalue()))


def load_trajectory(path: str):
    """A Trajectory from a `tpc run` output (.npz or .h5), for plotting."""
    from tpc.api import Trajectory
    from tpc.simulate import output_state_keys

    suffix = Path(path).suffix.lower()
    if suffix == ".part":  # a streamed run killed before its file was renamed into place
        suffix = Path(path).with_suffix("").suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from tpc.h5stream import read

        data = read(path)
    elif suffix == ".npz":
        from tpc.simulate import MAX_INIT_BYTES, _read_npz
        from tpc.syntax import read_bytes

        raw = read_bytes(Path(path), f"'{path}'", MAX_INIT_BYTES)
        try:
            data = _read_npz(raw, path, None)
        except TpcError as e:
            raise TpcError(e.message.replace(f"cannot read init file '{path}'",
                                             f"cannot plot '{path}'")) from None
    else:
        raise TpcError(f"cannot plot '{path}': expected a tpc run output (.npz or .h5)")
    q_key, p_key = output_state_keys(data)
    missing = [k for k in ("t", "H", q_key, p_key) if k not in data]
    if missing:
        raise TpcError(f"cannot plot '{path}': it lacks {', '.join(map(repr, missing))} "
                       "(not an output of 'tpc run'?)")
    t, h = np.asarray(data["t"]), np.asarray(data["H"])
    batch = int(data["batch"]) if "batch" in data else None
    return Trajectory(t, np.asarray(data[q_key]), np.asarray(data[p_key]), h,
                      int(data.get("steps_done", 0)), batch=batch,
                      names=(q_key, p_key)), str(data.get("system", ""))


def plot_file(path: str, out: str | None) -> str:
    """`tpc plot`: the figure of the run in `path`, written to `out` (default: beside it, as
    .png); returns where it went."""
    out = out or str(Path(path).with_suffix(".png"))
    check_plot_path(out)
    from tpc.output import check_writable

    check_writable(out)
    traj, system = load_trajectory(path)
    plot_trajectory(traj, out, title=system)
    return out
