"""`tpc run -o run.h5`, `sim.run(..., output="run.h5")`: the snapshots streamed to HDF5 (h5py).

Datasets `t`, the state under its names in the source (`x`, `px`), `H`, the monitored
quantities (proved conserved quantities and observables, by name) and the inputs as
`input_<name>`; chunked along the snapshots, so they grow as the run goes. Compression
(`compress=True`, `tpc run --compress`: gzip with the byte shuffle) is off by default: a
trajectory's doubles shrink to about 0.83 of their size, and writing them compressed costs
about 18 times the uncompressed write (measured on a Kepler orbit), which a run streaming a
snapshot every few hundred steps notices. What produced the run (source, params, dt,
integrator, precision, tpc version, ...) is in the root attributes, as in the .npz.

A streamed run keeps only a window of snapshots in memory (`window_rows`: about WINDOW_BYTES of
state, tpc.api's `_run_stepped` cuts its native calls to fit), so a run whose trajectory is
larger than memory works. Each time the window is written (when it is full, and at most every
FLUSH_SECONDS otherwise) the datasets are grown, the rows written, the root attribute `rows` set
last and the file flushed: a run killed at any moment, even by SIGKILL, leaves a file whose
first `rows` snapshots are complete (`complete` stays False until the run ends).

The file is written as `<path>.part` next to the target and renamed over it when the run ends,
however it ends (finished, interrupted, stopped at a non-finite state or an invariant drift), so
`path` is only ever the previous file or a finished one. Only a run killed outright leaves
the `.part` file, holding every row written before the kill. The returned Trajectory reads its
arrays from the renamed file (`Stored`), so the result of a long run does not fill memory either.
"""

from __future__ import annotations

import os
import time

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from tpc.diagnostics import TpcError

CHUNK_BYTES = 1 << 18  # per dataset chunk: big enough to compress well, small to flush often
# A write and flush costs milliseconds: rows computed sooner wait in the window for the next one.
FLUSH_SECONDS = 0.5
# The snapshots a streamed run holds in memory, in bytes of q (p takes as much again): big
# enough that a write is worth its flush, small next to any machine's memory.
WINDOW_BYTES = 8 << 20
PART_SUFFIX = ".part"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise TpcError("writing HDF5 (-o FILE.h5) needs h5py: pip install 'tpc[hdf5]'") from None
    return h5py


def attribute(value):
    """A metadata value as HDF5 stores it (strings as UTF-8 text, numbers as numbers)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return [str(v) for v in value]
    if isinstance(value, np.str_ | str):
        return str(value)
    return value


def window_rows(n: int, dtype, every: int = 1) -> int:
    """Rows of the in-memory window for a state of n values: WINDOW_BYTES of q, and a multiple
    of `every` (a reporter's report_every), so that a report never needs rows already gone."""
    rows = max(1, WINDOW_BYTES // max(1, n * np.dtype(dtype).itemsize))
    return -(-rows // every) * every


class Stored(NDArrayOperatorsMixin):
    """An array of a finished HDF5 output, read on demand: indexing reads only the rows asked
    for (traj.q[-1], traj.q[1000:2000]); np.asarray, arithmetic and ufuncs read it whole;
    iterating reads it a block of rows at a time."""

    def __init__(self, data):
        self.data = data

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        block = max(1, CHUNK_BYTES // max(1, self.data.dtype.itemsize
                                          * int(np.prod(self.shape[1:]))))
        for start in range(0, len(self), block):
            yield from self.data[start:start + block]

    def __array__(self, dtype=None, copy=None):
        whole = self.data[()]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = tuple(np.asarray(x) if isinstance(x, Stored) else x for x in inputs)
        return getattr(ufunc, method)(*plain, **kwargs)

    def __repr__(self) -> str:
        return f"Stored({self.data.name!r}, shape={self.shape}, dtype={self.dtype})"


class H5Stream:
    """One run's HDF5 file: rows written by `rows` as the run goes, ended by `finish`."""

    def __init__(self, path: str, names: tuple[str, str], shape: tuple[int, ...], dtype,
                 meta: dict, inputs: dict[str, np.ndarray], compress: bool = False):
        h5py = _h5py()
        self.path = os.path.realpath(path)  # through a symlink, as open() would
        self.part = self.path + PART_SUFFIX
        try:
            self.file = h5py.File(self.part, "w")
        except OSError as e:
            raise TpcError(f"cannot write '{path}': {e}") from None
        self.names, self.shape, self.written = names, tuple(shape), 0
        self.last_flush = time.monotonic()
        for key, value in meta.items():
            self.file.attrs[key] = attribute(value)
        per_row = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        self.chunk = max(1, min(4096, CHUNK_BYTES // per_row))
        self.packed = {"compression": "gzip", "compression_opts": 4, "shuffle": True} \
            if compress else {}
        self._grown("t", (), np.float64)
        self._grown(names[0], self.shape, dtype)
        self._grown(names[1], self.shape, dtype)
        self._grown("H", (), np.float64)
        self.monitors: list[str] = []
        for name, value in inputs.items():
            self.file.create_dataset(f"input_{name}", data=value)
        self.file.attrs["rows"] = 0
        self.file.attrs["complete"] = False
        self.file.flush()

    def _grown(self, name: str, row_shape: tuple[int, ...], kind) -> None:
        self.file.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape),
                                 dtype=kind, chunks=(self.chunk, *row_shape), **self.packed)

    def due(self) -> bool:
        """Whether FLUSH_SECONDS have passed since the last write (rows should go out)."""
        return time.monotonic() - self.last_flush >= FLUSH_SECONDS

    def rows(self, first: int, t, q, p, h, monitors: dict[str, np.ndarray]) -> None:
        """Rows first .. first + len(t) - 1, in order. Rows before `written` are skipped: a
        write cut short (Ctrl-C during it) is simply offered again."""
        skip = self.written - first
        if skip >= len(t):
            return
        if skip < 0:
            raise TpcError(f"HDF5 rows must come in order: row {first} after {self.written}")
        try:
            self._write(first, skip, t, q, p, h, monitors)
        except OSError as e:  # a full disk: what the file holds so far is still kept
            raise TpcError(f"cannot write '{self.path}': {e}; it keeps the first "
                           f"{self.written} snapshot(s)") from None

    def _write(self, first, skip, t, q, p, h, monitors) -> None:
        end = first + len(t)
        columns = {"t": t, self.names[0]: q, self.names[1]: p, "H": h}
        # a monitor named like a state or `t` is left out, as in the .npz
        columns |= {k: v for k, v in monitors.items() if k not in columns}
        for name in columns:
            if name not in self.file:
                self._grown(name, (), np.float64)
                self.monitors.append(name)
        for name, values in columns.items():
            data = self.file[name]
            data.resize(end, axis=0)
            data[self.written:end] = np.asarray(values)[skip:].reshape(end - self.written,
                                                                      *data.shape[1:])
        self.written = end
        self.file.attrs["rows"] = end  # last: the rows that every dataset holds
        self.file.flush()
        self.last_flush = time.monotonic()

    def write_all(self, traj) -> None:
        """Every row of an in-memory Trajectory (a folded run gives them all at once)."""
        self.rows(0, traj.t, traj.q, traj.p, traj.H, traj.monitors)

    def stored(self) -> dict[str, Stored]:
        """The streamed datasets (the first `written` rows), by name."""
        keys = ["t", *self.names, "H", *self.monitors]
        return {k: Stored(self.file[k]) for k in keys}

    def finish(self, meta: dict, arrays: dict[str, np.ndarray], complete: bool, traj=None):
        """The run's end: the final metadata and end-of-run arrays (carried state), the rows
        trimmed to those written, closed and renamed over the target. With `traj`, its arrays
        are pointed at the finished file."""
        for name in ["t", *self.names, "H", *self.monitors]:
            self.file[name].resize(self.written, axis=0)
        for key, value in meta.items():
            self.file.attrs[key] = attribute(value)
        for key, value in arrays.items():
            self.file.create_dataset(key, data=value)
        self.file.attrs["complete"] = complete
        self.close()
        if traj is not None:
            attach(traj, self.path)

    def abandon(self) -> None:
        """The run failed outright (not a PartialRun): rows written are kept as for close();
        with none, the target is left as it was."""
        if self.written:
            self.close()
        elif self.file.id.valid:
            self.file.close()
            os.unlink(self.part)

    def close(self) -> None:
        """Closed and renamed over the target: what was written stays readable (`complete`
        is false unless `finish` set it)."""
        if self.file.id.valid:
            try:
                self.file.close()
            finally:  # the rows flushed before a failing close are on disk all the same
                os.replace(self.part, self.path)


def attach(traj, path: str) -> None:
    """Point a streamed run's Trajectory at its finished file (read-only, read on demand)."""
    f = _h5py().File(path, "r")
    q, p = traj.names
    traj.t, traj.q, traj.p, traj.H = (Stored(f[k]) for k in ("t", q, p, "H"))
    traj.monitors = {k: Stored(f[k]) for k in traj.monitors if k in f}
    traj.file = path


def read(path: str) -> dict[str, object]:
    """The datasets (the first `rows` snapshots of the streamed ones) and root attributes of a
    tpc HDF5 output, as one dict like a loaded .npz."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            rows = int(f.attrs.get("rows", 0))
            out: dict[str, object] = {k: _plain(v) for k, v in f.attrs.items()}
            for key, data in f.items():
                value = data[()]
                out[key] = value[:rows] if data.maxshape[:1] == (None,) else value
    except OSError as e:
        raise TpcError(f"cannot read '{path}': not a readable HDF5 file ({e})") from None
    return out


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in value])
    return value
