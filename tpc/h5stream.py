"""`tpc run -o run.h5`: the snapshots streamed to HDF5 as the run goes (h5py).

Datasets `t`, the state under its names in the source (`x`, `px`), `H`, and the inputs as
`input_<name>`; chunked along the snapshots, so they grow as the run goes. Compression
(`compress=True`, `tpc run --compress`: gzip with the byte shuffle) is off by default: a
trajectory's doubles shrink to about 0.83 of their size, and writing them compressed costs
about 18 times the uncompressed write (measured on a Kepler orbit), which a run streaming a
snapshot every few hundred steps notices. What produced the
run (source, params, dt, integrator, precision, tpc version, ...) is in the root attributes,
as in the .npz. After each batch of rows the datasets are grown, written, the root attribute
`rows` set and the file flushed: a run killed at any moment, even by SIGKILL, leaves a file
whose first `rows` snapshots are complete (`complete` stays False until the run ends).

Unlike the .npz, the file is written in place, not atomically: streaming is its point.
"""

from __future__ import annotations

import time

import numpy as np

from tpc.diagnostics import TpcError
from tpc.reporting import Snapshots

CHUNK_BYTES = 1 << 18  # per dataset chunk: big enough to compress well, small to flush often
# A write and flush costs milliseconds: rows reported sooner wait in memory for the next one.
FLUSH_SECONDS = 0.5


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


class H5Stream:
    """One run's HDF5 file, filled by `write` (a reporter) and closed by `finish`."""

    def __init__(self, path: str, names: tuple[str, str], shape: tuple[int, ...], dtype,
                 meta: dict, inputs: dict[str, np.ndarray], compress: bool = False):
        h5py = _h5py()
        try:
            self.file = h5py.File(path, "w")
        except OSError as e:
            raise TpcError(f"cannot write '{path}': {e}") from None
        self.path, self.names, self.rows = path, names, 0
        self.pending: list[Snapshots] = []
        self.last_flush = time.monotonic()
        for key, value in meta.items():
            self.file.attrs[key] = attribute(value)
        per_row = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        chunk = max(1, min(4096, CHUNK_BYTES // per_row))

        packed = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress \
            else {}

        def grown(name: str, row_shape: tuple[int, ...], kind) -> None:
            self.file.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape),
                                     dtype=kind, chunks=(chunk, *row_shape), **packed)

        grown("t", (), np.float64)
        grown(names[0], shape, dtype)
        grown(names[1], shape, dtype)
        grown("H", (), np.float64)
        for name, value in inputs.items():
            self.file.create_dataset(f"input_{name}", data=value)
        self.file.attrs["rows"] = 0
        self.file.attrs["complete"] = False
        self.file.flush()

    def offer(self, snap: Snapshots) -> None:
        """A reporter (every snapshot once, in order): the rows are written and flushed when
        FLUSH_SECONDS have passed since the last flush, else kept for the next."""
        self.pending.append(snap)
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.write_pending()

    def write_pending(self) -> None:
        if not self.pending:
            return
        first = self.pending[0].first
        end = self.pending[-1].first + len(self.pending[-1].t)
        for name, field in (("t", "t"), (self.names[0], "q"), (self.names[1], "p"),
                            ("H", "H")):
            rows = np.concatenate([getattr(s, field) for s in self.pending])
            data = self.file[name]
            data.resize(end, axis=0)
            data[first:end] = rows
        self.pending = []
        self.rows = end
        self.file.attrs["rows"] = end  # last: the rows that every dataset holds
        self.file.flush()
        self.last_flush = time.monotonic()

    def finish(self, meta: dict, arrays: dict[str, np.ndarray], complete: bool) -> None:
        """The run's end: the rows left, the final metadata and end-of-run arrays (carried
        state), closed."""
        self.write_pending()
        for key, value in meta.items():
            self.file.attrs[key] = attribute(value)
        for key, value in arrays.items():
            self.file.create_dataset(key, data=value)
        self.file.attrs["complete"] = complete
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


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
