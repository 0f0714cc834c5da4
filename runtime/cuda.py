"""Running compiled tpc programs on an NVIDIA GPU through PyCUDA.

Imported lazily: nothing on the CPU path imports this module, and this module imports PyCUDA
only inside functions, so `import tpc.runtime.cuda` works without PyCUDA or a GPU.

The GPU side needs only numpy and PyCUDA: `compile_artifact` (on a machine with llvmlite)
writes FILE.ptx plus FILE.json (a small manifest: env layout, params, state shape), and
`CudaSimulation.from_artifact` loads them with `pycuda.driver.module_from_buffer`.

Ensemble layout (the `ensemble_run` kernel of the sym-gpu-kernels pass): B independent members,
q/p as [B, n], snapshots as [B, nsnap, n], H as [B, nsnap], one f64 status per member, params
either shared or [B, n_params]. Inputs and sizes are shared by all members.

One large system: `CudaSimulation.pair_forces` evaluates dH/dq once with the `pair_forces`
kernel (present for systems whose dH/dq is a pair sum in gather form, e.g. N-body; grid =
ceil(N / block), block = 128 or 256 threads, at most the kernel's MAX_TILE = 256). Time loops
run only inside kernels built from the one TimeLoop lowering (ensemble_run, block_run); there
is no host-driven stepper.

Precision: the manifest's `precision` ("f64", or "f32" for a simulation compiled with
precision="f32"; old manifests without it are f64) sets the dtype of every device buffer and of
dt (`CudaSimulation.dtype`); the status buffer and the energies (out_H) are float64 in both.
Results come back in that dtype.

Carried state: the manifest's `carry` (the ABI's carry roles, e.g. kahan_q and kahan_p of a
kahan=True simulation) names per-member state-sized buffers that the kernels take after the
status. They start at zero (or at the `carry` given, [B, *shape] each), stay on the device
across the launches of a run, and come back in the result's `carry`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tpc.diagnostics import TpcError

THREADS = 64
PAIR_BLOCK = 128  # pair_forces block size (128 or 256; at most MAX_TILE = 256)
MAX_TILE = 256


def require_cuda():
    """pycuda.driver, initialised; a clear TpcError naming what is missing otherwise."""
    try:
        import pycuda.driver as drv
    except ImportError as e:
        raise TpcError(
            "--device cuda needs PyCUDA, which is not installed: install the cuda extra "
            f"(pip install 'tpc[cuda]') ({e})"
        ) from None
    except OSError as e:  # libcuda.so.1 missing: PyCUDA is there, the driver is not
        raise TpcError(f"--device cuda: the NVIDIA driver library is missing ({e})") from None
    try:
        drv.init()
        count = drv.Device.count()
    except Exception as e:  # pycuda raises its own driver errors
        raise TpcError(f"--device cuda: no usable NVIDIA driver/GPU ({e})") from None
    if count == 0:
        raise TpcError("--device cuda: no NVIDIA GPU found")
    return drv


def cuda_available() -> bool:
    try:
        require_cuda()
    except TpcError:
        return False
    return True


# -------------------------------------------------------------------- artifacts

KERNELS = ("ensemble_run", "pair_forces", "block_run")


@dataclass
class Manifest:
    """What the GPU runner needs to know about the compiled code (no compiler required)."""

    kernels: list[str]
    params: dict[str, float]
    inputs: list[str]
    sizes: list[str]
    shape: list[int | str]
    arch: str
    precision: str = "f64"  # "f32": float32 buffers and dt
    carry: list[str] = field(default_factory=list)  # carried run state (the ABI's carry roles)

    @property
    def dtype(self) -> type:
        return np.float32 if self.precision == "f32" else np.float64

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


# ----------------------------------------------------------------------- runner


@dataclass
class EnsembleResult:
    t: np.ndarray  # [rows]
    q: np.ndarray  # [rows, B, *shape]
    p: np.ndarray
    H: np.ndarray  # [rows, B]
    status: np.ndarray  # [B]: -1 ok, k >= 0 non-finite at step k, <= -2 no convergence
    kernel_time: float = 0.0
    carry: dict = field(default_factory=dict)  # name -> [B, *shape] at the end of the run


class CudaSimulation:
    """PTX loaded into a CUDA context; runs ensembles with the `ensemble_run` kernel."""

    def __init__(self, ptx: str, manifest: Manifest):
        self.drv = require_cuda()
        import pycuda.autoinit  # noqa: F401  (a context on device 0)

        self.manifest = manifest
        self.module = self.drv.module_from_buffer(ptx.encode())
        self.kernels = {k: self.module.get_function(k) for k in manifest.kernels}
        if "ensemble_run" not in self.kernels:
            raise TpcError("the PTX has no ensemble_run kernel")

    @property
    def dtype(self) -> type:
        """numpy dtype of every device buffer but status (float64), and of dt."""
        return self.manifest.dtype

    @property
    def size(self) -> int:
        """Bytes per element of the device buffers."""
        return np.dtype(self.dtype).itemsize

    @classmethod
    def from_artifact(cls, path: str | os.PathLike[str]) -> CudaSimulation:
        base = Path(path).with_suffix("")
        return cls(base.with_suffix(".ptx").read_text(),
                   Manifest.from_json(base.with_suffix(".json").read_text()))

    def _sizes(self, n: int, inputs: dict[str, np.ndarray]) -> dict[str, int]:
        """Bind the size symbols from the state size and the inputs' shapes."""
        sizes: dict[str, int] = {}
        fixed = int(np.prod([d for d in self.manifest.shape if isinstance(d, int)] or [1]))
        syms = [d for d in self.manifest.shape if isinstance(d, str)]
        if len(syms) == 1:
            sizes[syms[0]] = n // fixed
        elif syms:
            raise TpcError("the GPU runner binds at most one size symbol in the state shape")
        for s in self.manifest.sizes:
            if s not in sizes:
                raise TpcError(f"cannot bind size '{s}' on the GPU runner")
        return sizes

    def _carry_in(self, carry, batch: int, n: int) -> list[np.ndarray]:
        """[B, n] host arrays of the carried state, zero where not given."""
        carry = dict(carry or {})
        for k in carry:
            if k not in self.manifest.carry:
                raise TpcError(f"carry '{k}' is not run state of this code (carried: "
                               f"{', '.join(self.manifest.carry) or 'none'})")
        out = []
        for name in self.manifest.carry:
            buf = np.zeros((batch, n), self.dtype)
            if name in carry:
                buf[:] = np.asarray(carry[name], dtype=self.dtype).reshape(batch, n)
            out.append(buf)
        return out

    def _carry_out(self, d_carry: list, batch: int, n: int) -> dict[str, np.ndarray]:
        shape = self._concrete_shape(n)
        return {name: self.drv.from_device(d, (batch, n), self.dtype).reshape(batch, *shape)
                for name, d in zip(self.manifest.carry, d_carry)}

    def run_ensemble(self, q0, p0, *, dt: float, steps: int, save_every: int = 1,
                     params=None, threads: int = THREADS, carry=None,
                     **inputs) -> EnsembleResult:
        """Run B = len(q0) members; q0/p0 are [B, *shape]. `params`: a dict of floats
        (shared) or of length-B arrays (one value per member)."""
        drv = self.drv
        dt_ = self.dtype
        q, p = self._members(q0, p0, min_ndim=1)
        batch, n = q.shape
        names = list(self.manifest.params)
        per_member = any(np.ndim(v) > 0 for v in (params or {}).values())
        for k in params or {}:
            if k not in names:
                raise TpcError(f"unknown param '{k}' (known: {', '.join(names) or 'none'})")
        if per_member:
            pb = np.empty((batch, max(1, len(names))), dt_)
            for j, name in enumerate(names):
                pb[:, j] = np.broadcast_to((params or {}).get(name, self.manifest.params[name]),
                                           (batch,))
            pstride = pb.shape[1]
        else:
            vals = [float((params or {}).get(k, self.manifest.params[k])) for k in names]
            pb, pstride = np.array(vals or [0.0], dt_), 0
        ins = [np.ascontiguousarray(inputs[k], dtype=dt_).ravel()
               for k in self.manifest.inputs]
        sizes = self._sizes(n, inputs)

        full, rem = divmod(steps, save_every)
        plan = [(save_every, full)] + ([(rem, 1)] if rem else [])
        rows = 1 + full + (1 if rem else 0)
        out_q = np.empty((rows, batch, n), dt_)
        out_p = np.empty((rows, batch, n), dt_)
        out_h = np.full((rows, batch), np.nan)
        out_q[0], out_p[0] = q, p
        t = np.zeros(rows)

        d_q, d_p = drv.to_device(q), drv.to_device(p)
        d_carry = [drv.to_device(c) for c in self._carry_in(carry, batch, n)]
        d_par = drv.to_device(np.ascontiguousarray(pb).ravel())
        d_ins = [drv.to_device(a) for a in ins]
        d_g = drv.mem_alloc(max(8, self.size * batch * n))
        d_work = drv.mem_alloc(max(8, self.size * 3 * batch * n))
        d_status = drv.to_device(np.full(batch, -1.0))
        env = [d_q, d_p, d_par, *d_ins, *[np.int64(sizes[s]) for s in self.manifest.sizes]]
        kernel = self.kernels["ensemble_run"]
        grid = ((batch + threads - 1) // threads, 1)
        start, end = drv.Event(), drv.Event()
        elapsed = 0.0
        row, step = 1, 0
        for stride, count in plan:
            if count == 0:
                continue
            snap_q = np.empty((batch, count, n), dt_)
            snap_p = np.empty((batch, count, n), dt_)
            snap_h = np.empty((batch, count))
            d_oq, d_op = drv.mem_alloc(snap_q.nbytes), drv.mem_alloc(snap_p.nbytes)
            d_oh = drv.mem_alloc(snap_h.nbytes)
            start.record()
            kernel(*env, dt_(dt), np.int64(count), np.int64(stride), np.int64(step),
                   d_oq, d_op, d_oh, d_g, d_work, d_status, *d_carry, np.int64(batch),
                   np.int64(pstride), np.int64(n), block=(threads, 1, 1), grid=grid)
            end.record()
            end.synchronize()
            elapsed += start.time_till(end) / 1e3
            drv.memcpy_dtoh(snap_q, d_oq)
            drv.memcpy_dtoh(snap_p, d_op)
            drv.memcpy_dtoh(snap_h, d_oh)
            out_q[row:row + count] = snap_q.transpose(1, 0, 2)
            out_p[row:row + count] = snap_p.transpose(1, 0, 2)
            out_h[row:row + count] = snap_h.T
            t[row:row + count] = (step + stride * np.arange(1, count + 1)) * dt
            row += count
            step += stride * count
        status = drv.from_device(d_status, (batch,), np.float64).astype(np.int64)
        shape = self._concrete_shape(n)
        return EnsembleResult(t, out_q.reshape(rows, batch, *shape),
                              out_p.reshape(rows, batch, *shape), out_h, status, elapsed,
                              self._carry_out(d_carry, batch, n))

    def run_blocks(self, q0, p0, *, dt: float, steps: int, save_every: int = 1,
                   params=None, carry=None, **inputs) -> EnsembleResult:
        """B = len(q0) small systems, one per thread block (the block_run kernel); q0/p0 are
        [B, *shape]; `params` as for run_ensemble. H is NaN (see the module docstring)."""
        self._need("block_run")
        drv = self.drv
        dt_ = self.dtype
        q, p = self._members(q0, p0, min_ndim=2)
        batch, n = q.shape
        shape = self._concrete_shape(n)
        nrows = shape[0] if shape else 1
        if not 0 < nrows <= MAX_TILE:
            raise TpcError(f"block_run needs 1..{MAX_TILE} rows per member, got {nrows}")
        threads = (nrows + 31) // 32 * 32
        pb, pstride = self._member_params(params, batch)
        sizes = self._sizes(n, inputs)
        d_q, d_p = drv.to_device(q), drv.to_device(p)
        d_par = drv.to_device(np.ascontiguousarray(pb).ravel())
        d_ins = [drv.to_device(np.ascontiguousarray(inputs[k], dtype=dt_).ravel())
                 for k in self.manifest.inputs]
        d_status = drv.to_device(np.full(batch, -1.0))
        d_carry = [drv.to_device(c) for c in self._carry_in(carry, batch, n)]
        env = [d_q, d_p, d_par, *d_ins, *[np.int64(sizes[s]) for s in self.manifest.sizes]]
        full, rem = divmod(steps, save_every)
        plan = [(save_every, full)] + ([(rem, 1)] if rem else [])
        rows = 1 + full + (1 if rem else 0)
        out_q = np.empty((rows, batch, n), dt_)
        out_p = np.empty((rows, batch, n), dt_)
        out_q[0], out_p[0] = q, p
        t = np.zeros(rows)
        start, end = drv.Event(), drv.Event()
        elapsed, row, step = 0.0, 1, 0
        for stride, count in plan:
            if count == 0:
                continue
            snap = np.full((batch, count, n), np.nan, dt_)
            d_oq, d_op = drv.to_device(snap), drv.to_device(snap)
            start.record()
            self.kernels["block_run"](*env, dt_(dt), np.int64(count), np.int64(stride),
                                      np.int64(step), d_oq, d_op, d_status, *d_carry,
                                      np.int64(pstride), block=(threads, 1, 1),
                                      grid=(batch, 1))
            end.record()
            end.synchronize()
            elapsed += start.time_till(end) / 1e3
            out_q[row:row + count] = drv.from_device(d_oq, snap.shape, dt_).transpose(1, 0, 2)
            out_p[row:row + count] = drv.from_device(d_op, snap.shape, dt_).transpose(1, 0, 2)
            t[row:row + count] = (step + stride * np.arange(1, count + 1)) * dt
            row += count
            step += stride * count
        status = drv.from_device(d_status, (batch,), np.float64).astype(np.int64)
        return EnsembleResult(t, out_q.reshape(rows, batch, *shape),
                              out_p.reshape(rows, batch, *shape),
                              np.full((rows, batch), np.nan), status, elapsed,
                              self._carry_out(d_carry, batch, n))

    def _members(self, q0, p0, min_ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """q0, p0 as [B, state size] arrays of the run's precision (fresh copies)."""
        q = np.ascontiguousarray(q0, dtype=self.dtype)
        p = np.ascontiguousarray(p0, dtype=self.dtype)
        if q.shape != p.shape or q.ndim < min_ndim:
            raise TpcError("q0 and p0 must have the same shape [B, *state]")
        batch = q.shape[0]
        return q.reshape(batch, -1).copy(), p.reshape(batch, -1).copy()

    def _member_params(self, params, batch: int) -> tuple[np.ndarray, int]:
        """(params buffer, per-member stride: 0 when shared) as the kernels take them."""
        names = list(self.manifest.params)
        for k in params or {}:
            if k not in names:
                raise TpcError(f"unknown param '{k}' (known: {', '.join(names) or 'none'})")
        if any(np.ndim(v) > 0 for v in (params or {}).values()):
            pb = np.empty((batch, max(1, len(names))), self.dtype)
            for j, name in enumerate(names):
                pb[:, j] = np.broadcast_to((params or {}).get(name, self.manifest.params[name]),
                                           (batch,))
            return pb, pb.shape[1]
        vals = [float((params or {}).get(k, self.manifest.params[k])) for k in names]
        return np.array(vals or [0.0], self.dtype), 0

    # ------------------------------------------------------- one large system

    def _env(self, d_q, d_p, params, inputs: dict, n: int) -> tuple[list, list]:
        """(kernel env args, device buffers to keep alive) for one system of state size n."""
        drv = self.drv
        names = list(self.manifest.params)
        for k in params or {}:
            if k not in names:
                raise TpcError(f"unknown param '{k}' (known: {', '.join(names) or 'none'})")
        vals = [float((params or {}).get(k, self.manifest.params[k])) for k in names]
        d_par = drv.to_device(np.array(vals or [0.0], self.dtype))
        d_ins = [drv.to_device(np.ascontiguousarray(inputs[k], dtype=self.dtype).ravel())
                 for k in self.manifest.inputs]
        sizes = self._sizes(n, inputs)
        env = [d_q, d_p, d_par, *d_ins, *[np.int64(sizes[s]) for s in self.manifest.sizes]]
        return env, [d_par, *d_ins]

    def _need(self, *names: str) -> None:
        missing = [k for k in names if k not in self.kernels]
        if missing:
            raise TpcError(f"the PTX has no {', '.join(missing)} kernel (dH/dq is not a pair "
                           "sum in gather form, or the PTX predates it)")

    def _launch_rows(self, name: str, env: list, d_out, rows: int, block: int) -> None:
        if not 0 < block <= MAX_TILE:
            raise TpcError(f"block must be 1..{MAX_TILE} threads, got {block}")
        if rows == 0:
            return
        grid = ((rows + block - 1) // block, 1)
        self.kernels[name](*env, d_out, block=(block, 1, 1), grid=grid)

    def pair_forces(self, q, p=None, *, params=None, block: int = PAIR_BLOCK,
                    return_time: bool = False, **inputs):
        """dH/dq at (q, p) from the pair_forces kernel (shape of q); with return_time, also
        the kernel's time in seconds (CUDA events)."""
        self._need("pair_forces")
        drv = self.drv
        q = np.ascontiguousarray(q, dtype=self.dtype)
        p = np.zeros_like(q) if p is None else np.ascontiguousarray(p, dtype=self.dtype)
        n = q.size
        shape = self._concrete_shape(n)
        d_q, d_p = drv.to_device(q.ravel()), drv.to_device(p.ravel())
        env, _keep = self._env(d_q, d_p, params, inputs, n)
        d_g = drv.mem_alloc(max(8, self.size * n))
        start, end = drv.Event(), drv.Event()
        start.record()
        self._launch_rows("pair_forces", env, d_g, shape[0] if shape else 1, block)
        end.record()
        end.synchronize()
        g = drv.from_device(d_g, (n,), self.dtype).reshape(q.shape)
        return (g, start.time_till(end) / 1e3) if return_time else g

    def _concrete_shape(self, n: int) -> tuple[int, ...]:
        fixed = [d for d in self.manifest.shape if isinstance(d, int)]
        known = int(np.prod(fixed)) if fixed else 1
        return tuple(d if isinstance(d, int) else n // known for d in self.manifest.shape)
