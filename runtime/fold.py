"""Run a folded (linear) simulation: the time loop replaced by powers of the one-step map.

For a quadratic H every integrator maps z = (q, p) to M z + b. With the augmented state
(q, p, 1) this is one (2n+1) x (2n+1) matrix, and s steps are its s-th power.

Algorithm:
  1. The one-step map of the CHOSEN integrator, exactly: the compiled stepped code (`run`,
     nsnap = 1, stride = 1) applied to z = 0 gives b, applied to z = e_k gives column k of M
     plus b. So M is the matrix of the very code a stepped run executes, round-off included.
     `integrator = exact` instead takes A = J Hess(H) (the linear Hamiltonian vector field; the
     Hessian and the constant force from the compiled gradients at the unit vectors and at 0)
     and M = expm(dt A) by scaling and squaring with a degree-13 Pade approximant (Higham 2005).
  2. The power M^s, by one of two methods:
       - "squaring": binary exponentiation, floor(log2 s) + popcount(s) - 1 dense products of
         size N = 2n + 1, each 2 N^3 flops. Any linear H, Jordan blocks included.
       - "eigen" (modal): for a separable H = p'Tp/2 + q'Vq/2 + linear terms with T positive
         definite, T = L L' (Cholesky) and the symmetric eigenproblem L'VL = U diag(w) U'
         give a symplectic change of variables q = L U a, p = L^-T U b in which every
         integrator built from kicks, drifts and midpoint stages (any function of A) splits
         into independent 2x2 maps, one per normal mode. M is brought to this basis, its
         per-mode 3x3 (affine) blocks are read off, checked to be the whole map (a random probe
         must agree to 1e-9), normalised to determinant 1, and powered mode by mode: O(n log s).
     Rule (`choose_method`): eigen when it applies, n >= 32 and the squaring would take at
     least 2 products (its ~14 n^3 flops, Cholesky + eigh + four n x n products, then beat
     the 2 (2n)^3 = 16 n^3 flops of each dense product); squaring otherwise.
  3. Snapshots: the state advances by P = M^save_every per row (one matrix-vector product, or
     O(n) per row in modal coordinates), a last row by M^rem for a remainder; H per row from
     the compiled `energy`. Rows and times are those of the stepped run.
  4. A non-finite state ends the run early: the rows computed before it are kept and
     `FoldedRun.error` says where (the API turns it into a PartialRun).
  5. Precision: the compiled code runs in the simulation's precision (`native.dtype`, float32 for
     precision="f32"): M is read off the float32 step (or gradients), but the matrix and its
     powers are float64 numpy, and the rows are rounded to float32 when stored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from tpc.diagnostics import TpcError

PROBE_TOL = 1e-9
EIGEN_MIN_N = 32


# ------------------------------------------------------------------------ matrix functions

_PADE13 = (
    64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
    129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
    40840800.0, 960960.0, 16380.0, 182.0, 1.0,
)
_THETA13 = 5.371920351148152


def expm(a: np.ndarray) -> np.ndarray:
    """exp(a) for a square matrix (or a stack of them): scaling and squaring, Pade 13."""
    a = np.asarray(a, dtype=np.float64)
    norm = float(np.max(np.sum(np.abs(a), axis=-2))) if a.size else 0.0
    s = max(0, math.ceil(math.log2(norm / _THETA13))) if norm > _THETA13 else 0
    a = a / 2.0**s
    b = _PADE13
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    a2 = a @ a
    a4 = a2 @ a2
    a6 = a4 @ a2
    u = a @ (a6 @ (b[13] * a6 + b[11] * a4 + b[9] * a2) + b[7] * a6 + b[5] * a4 + b[3] * a2
             + b[1] * eye)
    v = a6 @ (b[12] * a6 + b[10] * a4 + b[8] * a2) + b[6] * a6 + b[4] * a4 + b[2] * a2 \
        + b[0] * eye
    r = np.linalg.solve(v - u, v + u)
    for _ in range(s):
        r = r @ r
    return r


def products(s: int) -> int:
    """Dense products binary exponentiation needs for m^s."""
    return max(0, s.bit_length() - 1 + bin(s).count("1") - 1)


def symplectic_form(n: int) -> np.ndarray:
    j = np.zeros((2 * n, 2 * n))
    j[:n, n:] = np.eye(n)
    j[n:, :n] = -np.eye(n)
    return j


# ------------------------------------------------------------------------ one-step map


@dataclass
class _Env:
    """The compiled code (through its ABI) and one bound environment."""

    native: object  # tpc.runtime.native.Native
    env: object  # tpc.runtime.native.Bound
    shape: tuple[int, ...]
    n: int

    def zeros(self) -> tuple[np.ndarray, np.ndarray]:
        dtype = self.native.dtype
        return np.zeros(self.shape, dtype), np.zeros(self.shape, dtype)


def _unit(env: _Env, k: int | None):
    q, p = env.zeros()
    if k is not None:
        (q if k < env.n else p).reshape(-1)[k % env.n] = 1.0
    return q, p


def step_map(env: _Env, dt: float) -> tuple[np.ndarray, int]:
    """Augmented one-step matrix of the compiled step, and the status (-1 when fine)."""
    n = env.n
    big = np.zeros((2 * n + 1, 2 * n + 1))
    big[-1, -1] = 1.0
    bufs = env.native.scratch("run", n, env=env.env, dt=dt)
    q, p = env.zeros()
    step = env.native.prepare("run", env.env.with_state(q, p), dt=dt, nsnap=1, stride=1,
                              step0=0, **bufs)

    def apply(k: int | None) -> np.ndarray:
        q.fill(0.0)
        p.fill(0.0)
        if k is not None:
            (q if k < n else p).reshape(-1)[k % n] = 1.0
        bufs["status"][0] = -1.0
        step()
        if bufs["status"][0] != -1.0:
            raise _StepFailed(int(bufs["status"][0]))
        return np.concatenate([q.reshape(-1), p.reshape(-1)]).astype(np.float64, copy=False)

    try:
        b = apply(None)
        for k in range(2 * n):
            big[:-1, k] = apply(k) - b
    except _StepFailed as e:
        return big, e.status
    big[:-1, -1] = b
    return big, -1


class _StepFailed(Exception):
    def __init__(self, status: int):
        self.status = status


def gradient_affine(env: _Env) -> tuple[np.ndarray, np.ndarray]:
    """(Hessian of H, gradient at 0) from the compiled gradients, in z = (q, p) order."""
    n = env.n
    qname, pname = env.native.abi["state"]

    def grad(k: int | None) -> np.ndarray:
        q, p = _unit(env, k)
        a, b = np.zeros(n, env.native.dtype), np.zeros(n, env.native.dtype)
        bound = env.env.with_state(q, p)
        env.native.call(f"grad_{qname}", bound, out=a)
        env.native.call(f"grad_{pname}", bound, out=b)
        return np.concatenate([a, b]).astype(np.float64, copy=False)

    c = grad(None)
    hess = np.empty((2 * n, 2 * n))
    for k in range(2 * n):
        hess[:, k] = grad(k) - c
    return 0.5 * (hess + hess.T), c


def exact_map(env: _Env, dt: float) -> np.ndarray:
    """Augmented expm(dt [[J Hess, J c], [0, 0]]): the exact flow of the linear system."""
    n = env.n
    hess, c = gradient_affine(env)
    j = symplectic_form(n)
    a = np.zeros((2 * n + 1, 2 * n + 1))
    a[:-1, :-1] = j @ hess
    a[:-1, -1] = j @ c
    return expm(dt * a)


# ------------------------------------------------------------------------ powers


class Modal:
    """The map in normal-mode coordinates: per-mode 3x3 affine blocks (see the module doc)."""

    def __init__(self, wq: np.ndarray, wp: np.ndarray, wq_inv: np.ndarray, wp_inv: np.ndarray,
                 blocks: np.ndarray):
        self.wq, self.wp, self.wq_inv, self.wp_inv, self.blocks = wq, wp, wq_inv, wp_inv, blocks

    def to_modes(self, z: np.ndarray) -> np.ndarray:
        n = len(self.wq)
        return np.stack([self.wq_inv @ z[:n], self.wp_inv @ z[n:2 * n], np.ones(n)], axis=1)

    def from_modes(self, y: np.ndarray) -> np.ndarray:
        return np.concatenate([self.wq @ y[:, 0], self.wp @ y[:, 1]])

    def power(self, s: int) -> np.ndarray:
        return np.linalg.matrix_power(self.blocks, s)

    def dense(self, blocks: np.ndarray) -> np.ndarray:
        """The augmented (2n+1) x (2n+1) matrix of per-mode `blocks` in (q, p) coordinates."""
        n = len(self.wq)
        out = np.zeros((2 * n + 1, 2 * n + 1))
        w = np.zeros((2 * n, 2 * n))
        w[:n, :n], w[n:, n:] = self.wq, self.wp
        winv = np.zeros((2 * n, 2 * n))
        winv[:n, :n], winv[n:, n:] = self.wq_inv, self.wp_inv
        lin = np.zeros((2 * n, 2 * n))
        idx = np.arange(n)
        for r in range(2):
            for c in range(2):
                lin[r * n + idx, c * n + idx] = blocks[:, r, c]
        out[:-1, :-1] = w @ lin @ winv
        out[:-1, -1] = w @ np.concatenate([blocks[:, 0, 2], blocks[:, 1, 2]])
        out[-1, -1] = 1.0
        return out


def modal_basis(hess: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """(wq, wp, wq_inv, wp_inv, w) for a separable Hessian with positive definite T, else None."""
    n = len(hess) // 2
    hqq, hpp, hqp = hess[:n, :n], hess[n:, n:], hess[:n, n:]
    scale = max(float(np.max(np.abs(hess))), 1e-300)
    if np.max(np.abs(hqp)) > 1e-14 * scale:
        return None
    try:
        chol = np.linalg.cholesky(hpp)
    except np.linalg.LinAlgError:
        return None
    s = chol.T @ hqq @ chol
    w, u = np.linalg.eigh(0.5 * (s + s.T))
    wq = chol @ u
    wp_inv = u.T @ chol.T
    wq_inv = u.T @ np.linalg.solve(chol, np.eye(n))
    wp = wq_inv.T
    return wq, wp, wq_inv, wp_inv, w


def modal_map(big: np.ndarray, basis) -> Modal | None:
    """Per-mode blocks of the augmented map `big` in `basis`; None when they miss part of it."""
    wq, wp, wq_inv, wp_inv, _ = basis
    n = len(wq)
    lin, b = big[:-1, :-1], big[:-1, -1]
    blocks = np.zeros((n, 3, 3))
    left = (wq_inv, wp_inv)
    right = (wq, wp)
    for r in range(2):
        for c in range(2):
            x = left[r] @ lin[r * n:(r + 1) * n, c * n:(c + 1) * n]
            blocks[:, r, c] = np.sum(x * right[c].T, axis=1)
    blocks[:, 0, 2] = wq_inv @ b[:n]
    blocks[:, 1, 2] = wp_inv @ b[n:]
    blocks[:, 2, 2] = 1.0
    det = blocks[:, 0, 0] * blocks[:, 1, 1] - blocks[:, 0, 1] * blocks[:, 1, 0]
    if np.any(det <= 0):
        return None
    blocks[:, :2, :2] /= np.sqrt(det)[:, None, None]
    modal = Modal(wq, wp, wq_inv, wp_inv, blocks)
    rng = np.random.default_rng(0)
    y = np.stack([rng.standard_normal(n), rng.standard_normal(n), np.ones(n)], axis=1)
    z = np.concatenate([modal.from_modes(y), [1.0]])
    want = big @ z
    got = modal.from_modes(np.einsum("kij,kj->ki", blocks, y))
    err = np.linalg.norm(want[:-1] - got)
    if not err <= PROBE_TOL * (np.linalg.norm(want[:-1]) + np.linalg.norm(b) + 1e-300):
        return None
    return modal


def choose_method(n: int, steps: int, save_every: int, separable: bool) -> str:
    """'eigen' or 'squaring' by cost (the rule in the module docstring)."""
    k = products(min(save_every, max(steps, 1)))
    if separable and n >= EIGEN_MIN_N and k >= 2:
        return "eigen"
    return "squaring"


FLOPS_PER_SECOND = 3e9  # dense numpy linear algebra on a small machine, conservatively


def fold_seconds(n: int, steps: int, save_every: int, separable: bool, step_seconds: float) -> float:
    """Estimated time of a folded run: 2n+1 compiled steps for M, its powers, the rows."""
    size = 2 * n + 1
    rows = steps // save_every + 1
    if choose_method(n, steps, save_every, separable) == "eigen":
        flops = 14.0 * n**3 + rows * 20.0 * n
    else:
        k = products(min(save_every, max(steps, 1))) + products(steps % save_every or 1)
        flops = 2.0 * size**3 * k + rows * 2.0 * size**2
    return size * step_seconds + flops / FLOPS_PER_SECOND


@dataclass
class Propagator:
    """The one-step map of a run and its powers, by the chosen method."""

    method: str
    big: np.ndarray  # augmented one-step matrix
    modal: Modal | None = None

    def power_dense(self, s: int) -> np.ndarray:
        if self.modal is not None:
            return self.modal.dense(self.modal.power(s))
        return np.linalg.matrix_power(self.big, s)


def build_propagator(env: _Env, dt: float, method: str = "auto", steps: int = 1,
                     save_every: int = 1, separable: bool = False) -> Propagator:
    if method == "expm":
        big = exact_map(env, dt)
        method = "auto"
    else:
        big, status = step_map(env, dt)
        if status != -1:
            raise _StepFailed(status)
    if method == "auto":
        method = choose_method(env.n, steps, save_every, separable)
    if method == "eigen":
        hess, _ = gradient_affine(env)
        basis = modal_basis(hess)
        modal = modal_map(big, basis) if basis is not None else None
        if modal is not None:
            return Propagator("eigen", big, modal)
        method = "squaring"
    if method != "squaring":
        raise TpcError(f"unknown fold method '{method}' (known: auto, squaring, eigen, expm)")
    return Propagator("squaring", big)


# ------------------------------------------------------------------------ the run


@dataclass
class FoldedRun:
    """Rows of a folded run (row k: the state after k * save_every steps, the last row after
    a remainder); `error` says why it stopped early (rows before it are valid)."""

    t: np.ndarray
    q: np.ndarray
    p: np.ndarray
    h: np.ndarray
    rows: int
    steps: int
    wall: float
    error: str = ""


def run_folded(native, env, dt: float, steps: int, save_every: int, method: str = "auto",
               separable: bool = False) -> FoldedRun:
    """The folded time loop: M (or exp(dt A) for method expm) and its powers, with the
    compiled energy per row. `native`: tpc.runtime.native.Native; `env`: its Bound."""
    t0 = time.perf_counter()
    q, p = env.q, env.p
    n = q.size
    full, rem = divmod(steps, save_every)
    rows = 1 + full + (1 if rem else 0)
    dtype = native.dtype  # rows are stored (and H evaluated) in the run's precision
    out_q = np.empty((rows, n), dtype)
    out_p = np.empty((rows, n), dtype)
    out_h = np.empty(rows, dtype)
    t = np.zeros(rows)
    out_q[0], out_p[0] = q.ravel(), p.ravel()
    qb, pb_state = np.empty(q.shape, dtype), np.empty(p.shape, dtype)
    energy = native.prepare("energy", env.with_state(qb, pb_state))

    def h_of(k: int) -> float:
        qb.reshape(-1)[:] = out_q[k]
        pb_state.reshape(-1)[:] = out_p[k]
        return float(energy())

    out_h[0] = h_of(0)
    result = FoldedRun(t, out_q, out_p, out_h, 1, 0, 0.0)
    if steps == 0:
        result.wall = time.perf_counter() - t0
        return result
    with np.errstate(over="ignore", invalid="ignore"):
        _propagate(_Env(native, env, q.shape, n), dt, steps, save_every, method, separable,
                   full, rem, result, h_of)
    result.wall = time.perf_counter() - t0
    return result


def _propagate(env: _Env, dt, steps, save_every, method, separable, full, rem, res, h_of):
    try:
        prop = build_propagator(env, dt, method, steps, save_every, separable)
    except _StepFailed as e:
        what = ("the state became non-finite" if e.status >= 0
                else "the implicit midpoint iteration did not converge")
        res.error = f"{what} while building the one-step map (step 1, t = {dt:g})"
        return
    n = env.n
    plan = [(save_every, full)] + ([(rem, 1)] if rem else [])
    if prop.modal is not None:
        y = prop.modal.to_modes(np.concatenate([res.q[0], res.p[0]]))
    else:
        z = np.concatenate([res.q[0], res.p[0], [1.0]])
    for stride, count in plan:
        if prop.modal is not None:
            power = prop.modal.power(stride)
        else:
            power = np.linalg.matrix_power(prop.big, stride)
        for _ in range(count):
            if prop.modal is not None:
                y = np.einsum("kij,kj->ki", power, y)
                zz = prop.modal.from_modes(y)
            else:
                z = power @ z
                zz = z[:-1]
            if not np.all(np.isfinite(zz)):
                res.error = (f"the state became non-finite between step {res.steps} and step "
                             f"{res.steps + stride} (t = {(res.steps + stride) * dt:g})")
                return
            res.steps += stride
            k = res.rows
            res.q[k], res.p[k] = zz[:n], zz[n:]
            res.t[k] = res.steps * dt
            res.h[k] = h_of(k)
            res.rows += 1
