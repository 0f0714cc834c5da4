"""Run a folded (linear) simulation: the time loop replaced by the flow of a linear map.

For a quadratic H every integrator maps z = (q, p) to M z + b. With the augmented state
(q, p, 1) this is one (2n+1) x (2n+1) matrix, and s steps are its s-th power.

Algorithm:
  1. The map. A stepped integrator: its one-step map exactly: the compiled stepped code
     (`run`, nsnap = 1, stride = 1) applied to z = 0 gives b, applied to z = e_k gives column
     k of M plus b, so M is the matrix of the very code a stepped run executes, round-off
     included. `integrator = exact`: the linear vector field A = J Hess(H) and its constant
     term J c (the Hessian and c = grad H(0) from the compiled gradients at the unit vectors
     and at 0).
  2. The evolution to each snapshot (`Evolution`), by one of four methods:
       - "eigen" (modal), a stepped integrator and a separable H = p'Tp/2 + q'Vq/2 + linear
         terms with T positive definite: T = L L' (Cholesky) and the symmetric eigenproblem
         L'VL = U diag(w) U' give a symplectic change of variables q = L U a, p = L^-T U b in
         which every integrator built from kicks, drifts and midpoint stages splits into
         independent 2x2 maps, one per normal mode. M is brought to this basis, its per-mode
         3x3 (affine) blocks are read off, checked to be the whole map (a random probe must
         agree to 1e-9), normalised to determinant 1, and powered mode by mode. A mode whose
         w is below the eigensolver's round-off (8 n eps max|w|: a translation of a periodic
         chain, a free particle) gets w = 0 and the exact block of a free drift, [[1, h],
         [0, 1]]: its momentum then never moves, so the folded map conserves the total
         momentum as the stepped one does (round-off in a dense M^s multiplies the drifting
         centre of mass and makes it grow like t^2).
       - "squaring", any other stepped linear map: P = M^stride by binary exponentiation,
         then z -> P z per snapshot.
       - "exact", `integrator = exact`: the exact flow at t = step * dt, evaluated at each
         snapshot from the initial state, so its error does not grow with the number of
         steps. H is first split into the blocks the flow never mixes (the connected
         components of its Hessian). A block with a separable H and positive definite T flows
         in closed form in its normal modes (a rotation, a free drift under a constant force
         (w = 0, exact), or a hyperbolic mode), the phase in long double: round-off at any t.
         Any other block by exp(t A) of its augmented field (scaling and squaring, Pade 13;
         Higham 2005), whose error grows like eps t |A|, the conditioning of the flow itself,
         where powering exp(dt A) grows like eps * steps.
     Rule (`choose_method`): eigen when it applies (the probe passes), squaring otherwise.
  3. Snapshots: rows and times are those of the stepped run; H per row from the compiled
     `energy`. The method's state (`Carry`: the powered state for eigen and squaring, the
     initial state for the exact methods) at the last full-stride row is returned, so that a
     resumed run continues bitwise as if it had never stopped.
  4. A non-finite state or Ctrl-C ends the run early: the rows computed before it are kept and
     `FoldedRun.error` says where (the API turns it into a PartialRun).
  5. Precision f32: folding must not cost accuracy, and a map read off float32 code is not
     symplectic (det M - 1 ~ 5e-8, raised to the number of steps). So the map is built from
     the float64 twin of the compiled code (`twin`), with the f32 run's data (q0, p0, params,
     inputs and dt rounded to float32), evaluated and powered in float64; the state is carried
     in float64 and rounded to float32 once per snapshot, when the row is stored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from tpc.diagnostics import TpcError

PROBE_TOL = 1e-9


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
    # Bound once to buffers of their own: 2n + 1 calls, each cheaper than binding its args.
    q, p = env.zeros()
    a, b = np.zeros(n, env.native.dtype), np.zeros(n, env.native.dtype)
    bound = env.env.with_state(q, p)
    grad_q = env.native.prepare(f"grad_{qname}", bound, out=a)
    grad_p = env.native.prepare(f"grad_{pname}", bound, out=b)

    def grad(k: int | None) -> np.ndarray:
        q.fill(0.0)
        p.fill(0.0)
        if k is not None:
            (q if k < n else p).reshape(-1)[k % n] = 1.0
        grad_q()
        grad_p()
        return np.concatenate([a, b]).astype(np.float64)

    c = grad(None)
    hess = np.empty((2 * n, 2 * n))
    for k in range(2 * n):
        hess[:, k] = grad(k) - c
    return 0.5 * (hess + hess.T), c


# ------------------------------------------------------------------------ normal modes


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
    """(wq, wp, wq_inv, wp_inv, w) for a separable Hessian with positive definite T, else None.
    A w below the eigensolver's backward error is returned as exactly 0 (a zero mode)."""
    n = len(hess) // 2
    hqq, hpp, hqp = hess[:n, :n], hess[n:, n:], hess[:n, n:]
    scale = max(float(np.max(np.abs(hess))), 1e-300)
    if np.max(np.abs(hqp)) > 1e-14 * scale:
        return None
    d = np.diag(hpp)
    if np.count_nonzero(hpp - np.diag(d)) == 0:
        # T = sum p_i^2 / (2 m_i), the usual case: the Cholesky factor is diagonal, and every
        # product with it a scaling (O(n^2), the same numbers the dense products give)
        if not np.all(d > 0):
            return None
        c = np.sqrt(d)
        s = (c[:, None] * hqq) * c[None, :]
    else:
        try:
            chol = np.linalg.cholesky(hpp)
        except np.linalg.LinAlgError:
            return None
        c = None
        s = chol.T @ hqq @ chol
    w, u = np.linalg.eigh(0.5 * (s + s.T))
    # eigh is backward stable: its w are exact for a matrix within ~n eps |s| of s, so a w
    # below that cannot be told from 0, and a translation mode computed as 1e-17 instead of 0
    # would turn a free drift into a slow rotation that feeds momentum back.
    w = np.where(np.abs(w) <= ZERO_MODE_EPS * n * max(float(np.max(np.abs(w))), 1e-300), 0.0, w)
    if c is not None:
        wq = c[:, None] * u
        wp_inv = u.T * c[None, :]
        wq_inv = u.T * (1.0 / c)[None, :]
    else:
        wq = chol @ u
        wp_inv = u.T @ chol.T
        wq_inv = u.T @ np.linalg.solve(chol, np.eye(n))
    wp = wq_inv.T
    return wq, wp, wq_inv, wp_inv, w


ZERO_MODE_EPS = 8 * np.finfo(np.float64).eps


def modal_map(big: np.ndarray, basis) -> Modal | None:
    """Per-mode blocks of the augmented map `big` in `basis`; None when they miss part of it."""
    wq, wp, wq_inv, wp_inv, w = basis
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
    # A zero mode feels no force from its own coordinate: every kick leaves its momentum as it
    # was and every drift moves it by c h p, so its block is exactly [[1, h], [0, 1]] (h read
    # off M, the sum of the drifts), plus whatever the linear terms of H add.
    zero = w == 0.0
    blocks[zero, 0, 0] = blocks[zero, 1, 1] = 1.0
    blocks[zero, 1, 0] = 0.0
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


def exact_modal_state(basis, force: np.ndarray, y0: np.ndarray, t) -> np.ndarray:
    """The exact flow for time t (long double) of H = sum over modes of b^2/2 + w a^2/2 + f a
    + g b, from modal coordinates y0 (columns a, b), in (q, p). Per mode,
        a(t) = a0 C + (b0 + g) S - f D,   b(t) = -g + (b0 + g) C - a0 w S - f S,
    with C = cos(sqrt(w) t), S = sin(sqrt(w) t) / sqrt(w), D = (1 - C) / w = 2 sin^2(...) / w
    (no cancellation for small w): a rotation for w > 0, cosh and sinh for w < 0, and for
    w = 0 the limits C = 1, S = t, D = t^2/2 (a free drift under a constant force)."""
    wq, wp, _, _, w = basis
    n = len(wq)
    ld = np.longdouble
    f = ld(1) * (wq.T @ force[:n])
    g = ld(1) * (wp.T @ force[n:])
    a0, b0 = ld(1) * y0[:, 0], ld(1) * y0[:, 1]
    w = w.astype(ld)
    c, s, d = np.ones(n, ld), np.full(n, t, ld), np.full(n, t * t / 2, ld)
    pos, neg = w > 0, w < 0
    om = np.sqrt(w[pos])
    x = om * t
    c[pos], s[pos], d[pos] = np.cos(x), np.sin(x) / om, 2 * np.sin(x / 2) ** 2 / w[pos]
    ka = np.sqrt(-w[neg])
    x = ka * t
    c[neg], s[neg], d[neg] = np.cosh(x), np.sinh(x) / ka, 2 * np.sinh(x / 2) ** 2 / ka**2
    a = a0 * c + (b0 + g) * s - f * d
    b = -g + (b0 + g) * c - a0 * w * s - f * s
    return np.concatenate([wq @ a.astype(np.float64), wp @ b.astype(np.float64)])


# ------------------------------------------------------------------------ the methods


def choose_method(n: int, steps: int, save_every: int, separable: bool) -> str:
    """'eigen' or 'squaring' (the rule in the module docstring; eigen can still fall back to
    squaring when its probe fails)."""
    return "eigen" if separable else "squaring"


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
class Carry:
    """What a folded run needs to go on from `step`, bitwise as if it had not stopped: the
    powered state there (eigen: modal coordinates, squaring: the augmented z), or, for the
    exact methods, the initial state at `step` (every snapshot is evaluated from it)."""

    method: str
    step: int
    data: np.ndarray


class Propagator:
    """A powered one-step map (eigen or squaring): z -> M^stride z per snapshot."""

    def __init__(self, method: str, big: np.ndarray, modal: Modal | None = None):
        self.method, self.big, self.modal = method, big, modal
        self._powers: dict[int, np.ndarray] = {}

    def describe(self) -> str:
        if self.modal is not None:
            return "the one-step map powered mode by mode in normal coordinates"
        return "the one-step map powered by repeated squaring"

    def power_dense(self, s: int) -> np.ndarray:
        if self.modal is not None:
            return self.modal.dense(self.modal.power(s))
        return np.linalg.matrix_power(self.big, s)

    def _power(self, stride: int) -> np.ndarray:
        if stride not in self._powers:
            self._powers[stride] = (self.modal.power(stride) if self.modal is not None
                                    else np.linalg.matrix_power(self.big, stride))
        return self._powers[stride]

    def start(self, z: np.ndarray, step: int) -> Carry:
        data = self.modal.to_modes(z) if self.modal is not None else np.append(z, 1.0)
        return Carry(self.method, step, data)

    def advance(self, carry: Carry, step: int) -> tuple[Carry, np.ndarray]:
        """The carry at `step` (after carry.step) and the state there."""
        power = self._power(step - carry.step)
        if self.modal is not None:
            data = np.einsum("kij,kj->ki", power, carry.data)
            z = self.modal.from_modes(data)
        else:
            data = power @ carry.data
            z = data[:-1]
        return Carry(self.method, step, data), z


def decoupled(hess: np.ndarray) -> list[np.ndarray]:
    """The index sets of z = (q, p) that a linear flow never mixes: the connected components of
    the Hessian's nonzero pattern, a coordinate always with its momentum (J pairs them)."""
    n = len(hess) // 2
    root = list(range(n))

    def find(k: int) -> int:
        while root[k] != k:
            root[k] = root[root[k]]
            k = root[k]
        return k

    for i, j in np.argwhere(hess != 0):
        root[find(int(i) % n)] = find(int(j) % n)
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    return [np.concatenate([np.array(ks), np.array(ks) + n]) for ks in groups.values()]


class ExactFlow:
    """The exact flow of a linear system (method "exact"), evaluated at each snapshot's t from
    the state at `Carry.step`. H is split first into the blocks it never mixes (`decoupled`:
    the guiding centre and the free drift along B of a charge in a magnetic field, say); a
    block with a separable H and positive definite T flows in closed form in its normal modes
    (`exact_modal_state`), any other by exp(t A) of its augmented field."""

    method = "exact"

    def __init__(self, dt: float, hess: np.ndarray, force: np.ndarray):
        self.dt = dt
        self._modes_of = None
        self.blocks = []
        for idx in decoupled(hess):
            h, c = hess[np.ix_(idx, idx)], force[idx]
            basis = modal_basis(h)
            if basis is not None:
                self.blocks.append((idx, "modal", (basis, c)))
                continue
            m = len(idx) // 2
            field = np.zeros((2 * m + 1, 2 * m + 1))
            j = symplectic_form(m)
            field[:-1, :-1] = j @ h
            field[:-1, -1] = j @ c
            self.blocks.append((idx, "expm", field))

    def describe(self) -> str:
        modal = sum(1 for _, how, _ in self.blocks if how == "modal")
        other = len(self.blocks) - modal
        what = [f"{modal} in closed form in normal modes"] if modal else []
        what += [f"{other} by exp(t A)"] if other else []
        return (f"the exact flow evaluated at each snapshot's t, H in {len(self.blocks)} "
                f"decoupled block(s): {', '.join(what)}")

    def start(self, z: np.ndarray, step: int) -> Carry:
        return Carry(self.method, step, z.copy())

    def advance(self, carry: Carry, step: int) -> tuple[Carry, np.ndarray]:
        """The carry (unchanged: the flow starts from it at every snapshot) and the state at
        `step`."""
        return carry, self.at(carry, step)

    def _modes(self, carry: Carry) -> list:
        """The carry's state in each block's normal modes (None for an exp(t A) block), once
        per carry: every snapshot starts from it."""
        if self._modes_of is None or self._modes_of[0] is not carry.data:
            modes = []
            for idx, how, data in self.blocks:
                z0 = carry.data[idx]
                if how == "modal":
                    _, _, wq_inv, wp_inv, _ = data[0]
                    m = len(wq_inv)
                    modes.append(np.stack([wq_inv @ z0[:m], wp_inv @ z0[m:]], axis=1))
                else:
                    modes.append(None)
            self._modes_of = (carry.data, modes)
        return self._modes_of[1]

    def at(self, carry: Carry, step: int) -> np.ndarray:
        z = np.empty(len(carry.data))
        for (idx, how, data), y0 in zip(self.blocks, self._modes(carry)):
            z0 = carry.data[idx]
            if how == "modal":
                basis, force = data
                t = np.longdouble(step - carry.step) * np.longdouble(self.dt)
                z[idx] = exact_modal_state(basis, force, y0, t)
            else:
                t = float(step - carry.step) * self.dt
                z[idx] = (expm(t * data) @ np.append(z0, 1.0))[:-1]
        return z


POWERED = ("eigen", "squaring")
METHODS = (*POWERED, "exact")


def build_propagator(env: _Env, dt: float, method: str = "auto", steps: int = 1,
                     save_every: int = 1, separable: bool = False):
    """The evolution of a folded run: a Propagator (eigen, squaring) for a stepped integrator,
    an ExactFlow for method "expm" (the exact integrator). `method` may name the one to use
    (a resumed run must use the method of the run it continues)."""
    if method in ("expm", "exact"):
        hess, c = gradient_affine(env)
        return ExactFlow(dt, hess, c)
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
        raise TpcError(f"unknown fold method '{method}' (known: auto, {', '.join(METHODS)})")
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
    interrupted: bool = False
    method: str = ""  # the method used (METHODS)
    how: str = ""  # the method in words, for remarks
    carry: Carry | None = None  # at the last full-stride row, for a resumed run


def run_folded(native, env, dt: float, steps: int, save_every: int, method: str = "auto",
               separable: bool = False, *, twin=None, step0: int = 0,
               carry: Carry | None = None) -> FoldedRun:
    """The folded time loop with the compiled energy per row. `native`:
    tpc.runtime.native.Native; `env`: its Bound, the state at step `step0`. `twin`: (Native,
    Bound, dt) of float64 code and data to build the map from, when the run's own code is
    float32. `carry`: the state of the method (`method` names it) when continuing a run."""
    t0 = time.perf_counter()
    q, p = env.q, env.p
    n = q.size
    full, rem = divmod(steps, save_every)
    rows = 1 + full + (1 if rem else 0)
    dtype = native.dtype  # rows are stored in the run's precision
    out_q = np.empty((rows, n), dtype)
    out_p = np.empty((rows, n), dtype)
    out_h = np.empty(rows)  # the energy is float64 in every precision, as in a stepped run
    t = np.zeros(rows)
    t[0] = step0 * dt
    out_q[0], out_p[0] = q.ravel(), p.ravel()
    qb, pb_state = np.empty(q.shape, dtype), np.empty(p.shape, dtype)
    energy = native.prepare("energy", env.with_state(qb, pb_state))

    def h_of(k: int) -> float:
        qb.reshape(-1)[:] = out_q[k]
        pb_state.reshape(-1)[:] = out_p[k]
        return float(energy())

    out_h[0] = h_of(0)
    result = FoldedRun(t, out_q, out_p, out_h, 1, step0, 0.0)
    if steps == 0 and carry is None:
        result.wall = time.perf_counter() - t0
        return result
    map_native, map_env, map_dt = twin if twin is not None else (native, env, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            _propagate(_Env(map_native, map_env, q.shape, n), map_dt, dt, steps, save_every,
                       method, separable, full, rem, result, h_of, carry)
        except KeyboardInterrupt:
            result.error = f"interrupted at step {result.steps}"
            result.interrupted = True
    result.wall = time.perf_counter() - t0
    return result


def _propagate(env: _Env, map_dt, dt, steps, save_every, method, separable, full, rem, res,
               h_of, carry):
    try:
        evo = build_propagator(env, map_dt, method, steps, save_every, separable)
    except _StepFailed as e:
        what = ("the state became non-finite" if e.status >= 0
                else "the implicit midpoint iteration did not converge")
        res.error = f"{what} while building the one-step map (step 1, t = {dt:g})"
        return
    res.method, res.how = evo.method, evo.describe()
    n = env.n
    if carry is None:
        z0 = np.concatenate([env.env.q.ravel(), env.env.p.ravel()]).astype(np.float64)
        carry = evo.start(z0, res.steps)
    elif carry.method != evo.method or (evo.method in POWERED and carry.step != res.steps):
        raise TpcError(f"cannot continue a folded run ({carry.method} at step {carry.step}) "
                       f"with {evo.method} at step {res.steps}")
    res.carry = carry
    plan = [(save_every, full)] + ([(rem, 1)] if rem else [])
    for stride, count in plan:
        for _ in range(count):
            carry, zz = evo.advance(carry, res.steps + stride)
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
            if stride == save_every:
                res.carry = carry
