"""Splitting and composition methods synthesised from their order conditions.

Why this exists: the integrator passes need the coefficients of high-order symmetric
compositions (Yoshida's, McLachlan's) and of two-part splitting methods, and tpc computes them
instead of pasting tables. Nothing in numpy or scipy derives Lie-algebraic order conditions or
solves them, so this module does, on top of the exact engine in `tpc.passes.bch`:

1. Conditions. For a palindromic product of exponentials the log has odd weights only; its
   coordinates in the Lyndon basis, as exact `QSym` functions of the stage coefficients, are
   the order conditions (weights 1, 3, ..., order - 1) and the leading error term (weight
   order + 1). `composition_conditions` / `splitting_conditions` derive them once per order.
2. Solving. Vectorised damped Newton (minimum-norm steps when there are more unknowns than
   conditions) from many seeded random starts; converged points are polished in exact rational
   arithmetic, rounded to the doubles with the smallest exact residual and deduplicated. Square
   systems give finitely many real solutions; for an underdetermined system the leading error
   coefficient is minimised over the solution family (a feasible Gauss-Newton descent on the
   family, then Newton on the Lagrange system).
3. Selection and the named methods: `symmetric_composition`, `splitting_method`, `compose`
   (smallest error coefficient found), `yoshida` (the triple jump; Yoshida's solution A, the
   smallest error coefficient of the three 7-stage roots; solution D, identified by a coarse
   label because no intrinsic rule singles it out) and `triple_jump`. Results are cached in
   memory and in a small JSON file
   (`$TPC_CACHE_DIR/compositions.json`, else `~/.cache/tpc/`); a cache that cannot be read or
   written is ignored, and every cached entry is re-verified against the exact conditions.

The leading error coefficient (docs/methods.md): the weight order+1 part of log psi(h),
written in a Lyndon basis, has coordinates e_k; the error coefficient is sqrt(sum e_k^2).
For splittings the basis is that of the free Lie algebra on the two parts (A < B). For
compositions the base is taken to be tpc's leapfrog e^{hV/2} e^{hT} e^{hV/2} of two generic
parts: its odd terms X1, X3, ... are substituted into the composition's error term and the
result is measured in the Lyndon basis on {T < V}; `error_generic` is the norm in the
base-independent basis on {X1, X3, ...}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tpc.passes.bch import (
    Alphabet,
    LieBasis,
    QSym,
    Series,
    evaluate_qsym,
    factor_closure,
    lyndon_words,
    odd_generators,
    stage_product,
)

ENGINE_VERSION = "1"
MAX_ORDER = 8
RESIDUAL_LIMIT = 1e-14

# ----------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class OrderConditions:
    """The order conditions of one class of methods and one order, exact.

    `conditions[i](stages) == targets[i]` for every i is the order condition. The leading
    (weight order+1) error term has coordinates `error_generic_terms` in the basis named by
    `error_generic_labels`; the error coefficient measures `error_map @ error_generic_terms`
    (coordinates named by `error_labels`): for splittings the map is the identity, for
    compositions it substitutes leapfrog's terms for X1, X3, ... (see the module docstring).
    """

    kind: str
    order: int
    labels: tuple[str, ...]
    conditions: tuple[QSym, ...]
    targets: tuple[Fraction, ...]
    error_generic_labels: tuple[str, ...]
    error_generic_terms: tuple[QSym, ...]
    error_labels: tuple[str, ...]
    error_map: tuple[tuple[Fraction, ...], ...]

    @cached_property
    def error_terms(self) -> tuple[QSym, ...]:
        return tuple(_combine(self.error_map, self.error_generic_terms))

    @cached_property
    def error_matrix(self) -> np.ndarray:
        return np.array([[float(c) for c in row] for row in self.error_map])


def _log_coordinates(
    alphabet: Alphabet, parts: Sequence[tuple[int, int]], weights: Sequence[int]
) -> dict[int, tuple[LieBasis, list[QSym]]]:
    """Lyndon coordinates of log(prod_i exp(Y_i)) at the given weights, as QSym functions.

    Only the Lyndon words' coefficients are needed, so the algebra is restricted to their
    factor closure (a quotient by an ideal: exact)."""
    top = max(weights)
    lyndon = [w for n in weights for w in lyndon_words(alphabet, n)]
    support = factor_closure(lyndon)
    log = stage_product(alphabet, parts, top, support).log()
    out = {}
    for n in weights:
        basis = LieBasis(alphabet, n)
        out[n] = (basis, basis.coordinates(log.part(n)))
    return out


TV = Alphabet(("T", "V"), (1, 1))  # the two parts of tpc's leapfrog, T < V
AB = Alphabet(("A", "B"), (1, 1))  # the two parts of a splitting method, A outermost


@cache
def _leapfrog_terms(top: int) -> dict[int, Series]:
    """The odd terms X_k (k <= top) of log(e^{V/2} e^{T} e^{V/2}), exact, as series in T, V."""
    half_v = Series.generator_sum(TV, top, {1: Fraction(1, 2)}).exp()
    t = Series.generator_sum(TV, top, {0: Fraction(1)}).exp()
    log = (half_v * t * half_v).log()
    return {k: log.part(k) for k in range(1, top + 1, 2)}


def _substitute(bracket: Any, x: dict[int, Series], weights: Sequence[int]) -> Series:
    if isinstance(bracket, int):
        return x[weights[bracket]]
    left, right = bracket
    return _substitute(left, x, weights).bracket(_substitute(right, x, weights))


@cache
def _leapfrog_map(n: int) -> tuple[tuple[Fraction, ...], ...]:
    """L with (T,V)-Lyndon coordinates = L @ (X-Lyndon coordinates) at weight n, for the
    weight-n term of a composition of leapfrog steps (X_k -> leapfrog's k-th term)."""
    alphabet = odd_generators(n)
    xbasis = LieBasis(alphabet, n)
    tvbasis = LieBasis(TV, n)
    x = _leapfrog_terms(n)
    columns = []
    for b in xbasis.brackets:
        columns.append(tvbasis.coordinates(_substitute(b, x, alphabet.weights).part(n)))
    return tuple(tuple(col[i] for col in columns) for i in range(len(tvbasis)))


def _combine(matrix: Sequence[Sequence[Fraction]], terms: Sequence[QSym]) -> list[QSym]:
    out = []
    for row in matrix:
        acc = QSym()
        for c, t in zip(row, terms):
            if c != 0:
                acc = acc + t * c
        out.append(acc)
    return out


def _check_order(order: int) -> None:
    if not isinstance(order, int) or isinstance(order, bool):
        raise ValueError(f"order must be an integer, got {order!r}")
    if order < 2 or order % 2:
        raise ValueError(f"order {order} is not possible: symmetric methods have even order >= 2")
    if order > MAX_ORDER:
        raise ValueError(f"order {order} is above the supported maximum {MAX_ORDER}")


@cache
def composition_conditions(order: int) -> OrderConditions:
    """Conditions for psi(h) = S(w_1 h) ... S(w_s h), palindromic w, S symmetric of order 2:
    log S(h) = h X1 + h^3 X3 + h^5 X5 + ...; one colour, letter X_k contributes w^k."""
    _check_order(order)
    cached = _DISK.load_conditions("composition", order)
    if cached is not None:
        return cached
    alphabet = odd_generators(order + 1)
    parts = [(0, k) for k in alphabet.weights]
    coords = _log_coordinates(alphabet, parts, list(range(1, order + 2, 2)))
    labels, conds, targets = _odd_conditions(coords, order)
    ebasis, generic = coords[order + 1]
    out = OrderConditions(
        "composition",
        order,
        tuple(labels),
        tuple(conds),
        tuple(targets),
        tuple(ebasis.labels()),
        tuple(generic),
        tuple(LieBasis(TV, order + 1).labels()),
        _leapfrog_map(order + 1),
    )
    _DISK.save_conditions(out)
    return out


def _odd_conditions(coords, order: int) -> tuple[list, list, list[Fraction]]:
    """The order conditions from the log coordinates of odd degree below `order`: degree 1
    equals 1 (consistency), every higher one 0."""
    labels, conds, targets = [], [], []
    for n in range(1, order, 2):
        basis, cs = coords[n]
        labels += basis.labels()
        conds += cs
        targets += [Fraction(1) if n == 1 else Fraction(0)] * len(cs)
    return labels, conds, targets


@cache
def splitting_conditions(order: int) -> OrderConditions:
    """Conditions for e^{a_1 hA} e^{b_1 hB} e^{a_2 hA} ... (palindromic): colours A = 0, B = 1."""
    _check_order(order)
    cached = _DISK.load_conditions("splitting", order)
    if cached is not None:
        return cached
    coords = _log_coordinates(AB, [(0, 1), (1, 1)], list(range(1, order + 2, 2)))
    labels, conds, targets = _odd_conditions(coords, order)
    ebasis, err = coords[order + 1]
    q = len(err)
    out = OrderConditions(
        "splitting",
        order,
        tuple(labels),
        tuple(conds),
        tuple(targets),
        tuple(ebasis.labels()),
        tuple(err),
        tuple(ebasis.labels()),
        tuple(tuple(Fraction(int(i == j)) for j in range(q)) for i in range(q)),
    )
    _DISK.save_conditions(out)
    return out


# ----------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """Which unknown each stage (flow) uses, and its colour."""

    colours: tuple[int, ...]
    unknown: tuple[int, ...]
    n_unknowns: int

    def expand(self, y: Sequence[Any]) -> list[Any]:
        return [y[k] for k in self.unknown]


def composition_layout(stages: int) -> Layout:
    return Layout(
        (0,) * stages, tuple(min(j, stages - 1 - j) for j in range(stages)), (stages + 1) // 2
    )


def splitting_layout(b_flows: int) -> Layout:
    """A B A ... B A with `b_flows` B-flows; unknowns (a_1..a_p, b_1..b_q)."""
    pa = b_flows // 2 + 1
    colours, unknown = [], []
    for j in range(2 * b_flows + 1):
        i = j // 2
        if j % 2 == 0:
            colours.append(0)
            unknown.append(min(i, b_flows - i))
        else:
            colours.append(1)
            unknown.append(pa + min(i, b_flows - 1 - i))
    return Layout(tuple(colours), tuple(unknown), pa + (b_flows + 1) // 2)


# ----------------------------------------------------------------------------- numerics


class Evaluator:
    """Fast float evaluation of QSym elements (and their Jacobian) at a batch of points.

    Values: the prefix recurrence of `bch.evaluate_qsym`, vectorised over compositions and
    points. Jacobian: d M_a / d v_j = sum_t e_t v_j^(e_t - 1) M_{a[:t]}(v_<j) M_{a[t+1:]}(v_>j),
    from the prefix sums and the matching suffix sums.
    """

    def __init__(self, elements: Sequence[QSym], layout: Layout) -> None:
        self.layout = layout
        self.unknown = np.array(layout.unknown)
        self.colours = np.array(layout.colours)
        self.s = len(layout.colours)
        pre: set = {()}
        suf: set = {()}
        triples: dict[tuple, dict[int, float]] = {}  # (prefix, part, suffix) -> {row: coeff}
        for i, el in enumerate(elements):
            for a, c in el.terms.items():
                for t in range(len(a)):
                    pre.add(a[: t + 1])
                    suf.add(a[t:])
                    row = triples.setdefault((a[:t], a[t], a[t + 1 :]), {})
                    row[i] = row.get(i, 0.0) + float(c) * a[t][1]
        self.pre = sorted(pre, key=lambda a: (len(a), a))
        self.suf = sorted(suf, key=lambda a: (len(a), a))
        pi = {a: i for i, a in enumerate(self.pre)}
        si = {a: i for i, a in enumerate(self.suf)}
        self.maxe = max([p[1] for a in self.pre for p in a] + [1])
        self.C = np.zeros((len(elements), len(self.pre)))
        for i, el in enumerate(elements):
            for a, c in el.terms.items():
                self.C[i, pi[a]] += float(c)
        self.p_step: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.s_step: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.t_step: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for col in set(layout.colours):
            tg = [i for i, a in enumerate(self.pre) if a and a[-1][0] == col]
            self.p_step[col] = (
                np.array(tg, dtype=int),
                np.array([pi[self.pre[i][:-1]] for i in tg], dtype=int),
                np.array([self.pre[i][-1][1] for i in tg], dtype=int),
            )
            tg = [i for i, a in enumerate(self.suf) if a and a[0][0] == col]
            self.s_step[col] = (
                np.array(tg, dtype=int),
                np.array([si[self.suf[i][1:]] for i in tg], dtype=int),
                np.array([self.suf[i][0][1] for i in tg], dtype=int),
            )
            tr = [t for t in triples if t[1][0] == col]
            mat = np.zeros((len(elements), len(tr)))
            for k, t in enumerate(tr):
                for i, c in triples[t].items():
                    mat[i, k] = c
            self.t_step[col] = (
                np.array([pi[t[0]] for t in tr], dtype=int),
                np.array([si[t[2]] for t in tr], dtype=int),
                np.array([t[1][1] - 1 for t in tr], dtype=int),
                mat,
            )

    def _powers(self, v: np.ndarray) -> np.ndarray:
        pw = np.empty((self.maxe + 1,) + v.shape)
        pw[0] = 1.0
        for e in range(1, self.maxe + 1):
            pw[e] = pw[e - 1] * v
        return pw

    def values(self, y: np.ndarray) -> np.ndarray:
        """(B, n_elements) values at the points y (B, n_unknowns)."""
        v = y[:, self.unknown].T
        m = np.zeros((len(self.pre), y.shape[0]))
        m[0] = 1.0
        for j in range(self.s):
            tg, par, ex = self.p_step[self.layout.colours[j]]
            m[tg] += m[par] * self._powers(v[j])[ex]
        return (self.C @ m).T

    def jacobian(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values (B, n), Jacobian (B, n, n_unknowns)) at the points y."""
        b = y.shape[0]
        v = y[:, self.unknown].T
        pows = [self._powers(v[j]) for j in range(self.s)]
        prefix = np.zeros((self.s + 1, len(self.pre), b))
        prefix[0, 0] = 1.0
        for j in range(self.s):
            prefix[j + 1] = prefix[j]
            tg, par, ex = self.p_step[self.layout.colours[j]]
            prefix[j + 1, tg] += prefix[j, par] * pows[j][ex]
        suffix = np.zeros((self.s + 1, len(self.suf), b))
        suffix[self.s, 0] = 1.0
        for j in range(self.s - 1, -1, -1):
            suffix[j] = suffix[j + 1]
            tg, child, ex = self.s_step[self.layout.colours[j]]
            suffix[j, tg] += suffix[j + 1, child] * pows[j][ex]
        jac = np.zeros((len(self.C), self.layout.n_unknowns, b))
        for j in range(self.s):
            pidx, sidx, ex, mat = self.t_step[self.layout.colours[j]]
            if not len(pidx):
                continue
            g = prefix[j, pidx] * suffix[j + 1, sidx] * pows[j][ex]
            jac[:, self.unknown[j]] += mat @ g
        return (self.C @ prefix[self.s]).T, jac.transpose(2, 0, 1)


def _pinv_solve(jac: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimum-norm least-squares solutions of jac @ d = rhs for a batch."""
    return (np.linalg.pinv(jac, rcond=1e-13) @ rhs[..., None])[..., 0]


def _newton_batch(
    ev: Evaluator,
    target: np.ndarray,
    y0: np.ndarray,
    iterations: int,
    tol: float = 1e-11,
    bound: float = 8.0,
) -> np.ndarray:
    """Damped Newton (minimum-norm steps) from every start; returns the converged points."""
    y = y0.copy()
    active = np.arange(len(y))
    done: list[np.ndarray] = []
    for _ in range(iterations):
        if not len(active):
            break
        ya = y[active]
        f, jac = ev.jacobian(ya)
        f = f - target
        norm = np.abs(f).max(axis=1)
        finite = np.isfinite(norm)
        conv = finite & (norm < tol)
        done.append(active[conv])
        keep = finite & ~conv & (np.abs(ya).max(axis=1) < bound)
        active, ya, f, jac, norm = active[keep], ya[keep], f[keep], jac[keep], norm[keep]
        if not len(active):
            break
        d = -_pinv_solve(jac, f)
        d *= np.minimum(1.0, 1.0 / np.maximum(np.abs(d).max(axis=1), 1e-300))[:, None]
        step = np.ones(len(active))
        trial = ya + d
        for _ in range(3):  # backtrack on the residual, then take the step anyway
            worse = ~(np.abs(ev.values(trial) - target).max(axis=1) < norm)
            if not worse.any():
                break
            step[worse] *= 0.5
            trial[worse] = ya[worse] + step[worse, None] * d[worse]
        y[active] = trial
    idx = np.concatenate(done) if done else np.zeros(0, dtype=int)
    return y[idx]


def _dedupe(points: Sequence[np.ndarray], tol: float) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for p in points:
        if not any(np.abs(p - q).max() < tol for q in out):
            out.append(p)
    return out


def _exact_residuals(oc: OrderConditions, layout: Layout, y: Sequence[Any]) -> list[Fraction]:
    values = [Fraction(v) for v in layout.expand(list(y))]
    got = evaluate_qsym(oc.conditions, layout.colours, values)
    return [g - t for g, t in zip(got, oc.targets)]


def _polish(
    oc: OrderConditions, layout: Layout, ev: Evaluator, y: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Newton in exact rational arithmetic (float Jacobian) to far below double precision, then
    round; returns (y, max |residual| of the rounded point, computed exactly) or None."""
    yq = [Fraction(float(v)) for v in y]
    grid = Fraction(1, 2**170)
    for _ in range(8):
        r = _exact_residuals(oc, layout, yq)
        if max(abs(x) for x in r) < Fraction(1, 2**150):
            break
        _, jac = ev.jacobian(np.array([[float(v) for v in yq]]))
        d = _pinv_solve(jac, np.array([[float(x) for x in r]]))[0]
        if not np.all(np.isfinite(d)) or np.abs(d).max() > 1e-3:
            return None
        yq = [round((v - Fraction(float(dv))) / grid) * grid for v, dv in zip(yq, d)]
    else:
        return None
    return _round_to_doubles(oc, layout, ev, yq)


def _round_to_doubles(
    oc: OrderConditions, layout: Layout, ev: Evaluator, yq: Sequence[Fraction]
) -> tuple[np.ndarray, float]:
    """The doubles near the exact root yq whose exact residual is smallest.

    Correct rounding alone can leave residuals of a few 1e-14 when the Jacobian is large
    (|w| ~ 2.4 and weight-7 conditions). The residual at y* + d is J d to far below double
    precision, so a few-ulp lattice around the rounded point is searched with that linear
    prediction and the best predicted points are checked exactly."""
    yf = np.array([float(v) for v in yq])
    plain = max(abs(float(x)) for x in _exact_residuals(oc, layout, yf))
    if plain < 2e-15:
        return yf, plain
    delta = np.array([float(Fraction(f) - q) for f, q in zip(yf, yq)])
    ulp = np.spacing(np.abs(yf))
    _, jac = ev.jacobian(yf[None])
    jac = jac[0]
    n = len(yf)
    influence = np.abs(jac).max(axis=0) * ulp
    free = np.argsort(-influence)[: min(n, 8)]
    reach = 2 if len(free) > 5 else 3
    grid = np.arange(-reach, reach + 1)
    ks = np.stack(np.meshgrid(*([grid] * len(free)), indexing="ij"), -1).reshape(-1, len(free))
    steps = np.zeros((len(ks), n))
    steps[:, free] = ks * ulp[free]
    predicted = np.abs((delta[None, :] + steps) @ jac.T).max(axis=1)
    best, best_res = yf, plain
    for i in np.argsort(predicted, kind="stable")[:4]:
        cand = yf + steps[i]
        res = max(abs(float(x)) for x in _exact_residuals(oc, layout, cand))
        if res < best_res:
            best, best_res = cand, res
    return best, best_res


def _rank_ok(ev: Evaluator, y: np.ndarray) -> bool:
    """Isolated (square) or smooth (underdetermined) solution: the Jacobian has full row rank."""
    _, jac = ev.jacobian(y[None])
    sv = np.linalg.svd(jac[0], compute_uv=False)
    return bool(sv[-1] > 1e-9 * sv[0])


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Candidate:
    """One real solution: its unknowns, the error coefficient and the largest step."""

    unknowns: tuple[float, ...]
    error: float
    error_generic: float
    max_step: float


@dataclass(frozen=True)
class Method:
    """A solved method. `coefficients` are the full flow coefficients in application order."""

    name: str
    kind: str
    order: int
    stages: int
    unknowns: tuple[float, ...]
    coefficients: tuple[float, ...]
    residual: float
    error: float
    error_generic: float
    error_terms: tuple[float, ...]
    solutions: tuple[Candidate, ...]
    family_dim: int
    rule: str
    seconds: float = 0.0
    cached: bool = False
    found: str = ""  # how the candidates were obtained, for describe()

    @property
    def n_solutions(self) -> int:
        return len(self.solutions)

    @property
    def max_step(self) -> float:
        return max(abs(c) for c in self.coefficients)

    def _found(self) -> str:
        if self.found:
            return self.found
        if self.family_dim == 0:
            return f"{self.n_solutions} real solution(s) found"
        return f"{self.family_dim}-parameter family, {self.n_solutions} local optima found"


@dataclass(frozen=True)
class Composition(Method):
    """psi(h) = S(w_1 h) ... S(w_s h) for a symmetric 2nd-order base S; `weights` = w."""

    @property
    def weights(self) -> tuple[float, ...]:
        return self.coefficients

    def describe(self) -> str:
        half = ", ".join(repr(w) for w in self.unknowns)
        return (
            f"{self.name}: symmetric composition of order {self.order}, {self.stages} stages, "
            f"w = [{half}] (outermost first, mirrored); max order-condition residual "
            f"{self.residual:.1e}; error coefficient {self.error:.4g} "
            f"(generic {self.error_generic:.4g}); {self._found()}; chosen by {self.rule}"
        )


@dataclass(frozen=True)
class Splitting(Method):
    """e^{a_1 hA} e^{b_1 hB} e^{a_2 hA} ... e^{b_1 hB} e^{a_1 hA}, A outermost."""

    @property
    def a(self) -> tuple[float, ...]:
        return self.coefficients[0::2]

    @property
    def b(self) -> tuple[float, ...]:
        return self.coefficients[1::2]

    @property
    def sequence(self) -> tuple[tuple[int, float], ...]:
        """The flows in order: (0, a_i) for A, (1, b_i) for B."""
        return tuple((k % 2, c) for k, c in enumerate(self.coefficients))

    def describe(self) -> str:
        pa = self.stages // 2 + 1
        a = ", ".join(repr(x) for x in self.unknowns[:pa])
        b = ", ".join(repr(x) for x in self.unknowns[pa:])
        return (
            f"{self.name}: symmetric splitting of order {self.order}, {self.stages} B-flows, "
            f"a = [{a}], b = [{b}] (outermost first, mirrored); max order-condition residual "
            f"{self.residual:.1e}; error coefficient {self.error:.4g}; {self._found()}; "
            f"chosen by {self.rule}"
        )


# ----------------------------------------------------------------------------- disk cache


def default_cache_dir() -> Path:
    env = os.environ.get("TPC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tpc"


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class _DiskCache:
    """One JSON file of {key: {"payload": ..., "sha256": ...}}; every failure is a miss."""

    name = "compositions.json"

    def path(self) -> Path:
        return default_cache_dir() / self.name

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path().read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict) or data.get("format") != 1:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Any:
        entry = self._read().get(key)
        if not isinstance(entry, dict) or "payload" not in entry:
            return None
        if entry.get("sha256") != _digest(entry["payload"]):
            return None
        return entry["payload"]

    def put(self, key: str, payload: Any) -> None:
        path = self.path()
        entries = self._read()
        entries[key] = {"payload": payload, "sha256": _digest(payload)}
        text = json.dumps({"format": 1, "entries": entries}, sort_keys=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)  # atomic: readers see the old file or the new one
        except OSError as err:
            warnings.warn(f"tpc: could not write composition cache {path}: {err}", stacklevel=3)

    # derived conditions -----------------------------------------------------------------
    @staticmethod
    def _qkey(kind: str, order: int) -> str:
        return f"conditions:{kind}:{order}:{ENGINE_VERSION}"

    def load_conditions(self, kind: str, order: int) -> OrderConditions | None:
        payload = self.get(self._qkey(kind, order))
        if payload is None:
            return None
        try:
            out = OrderConditions(
                kind,
                order,
                tuple(str(x) for x in payload["labels"]),
                tuple(_qsym_from_json(q) for q in payload["conditions"]),
                tuple(Fraction(t) for t in payload["targets"]),
                tuple(str(x) for x in payload["error_generic_labels"]),
                tuple(_qsym_from_json(q) for q in payload["error_generic_terms"]),
                tuple(str(x) for x in payload["error_labels"]),
                tuple(tuple(Fraction(c) for c in row) for row in payload["error_map"]),
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        shapes_ok = (
            len(out.labels) == len(out.conditions) == len(out.targets)
            and len(out.error_generic_labels) == len(out.error_generic_terms)
            and len(out.error_labels) == len(out.error_map)
            and all(len(row) == len(out.error_generic_terms) for row in out.error_map)
        )
        return out if shapes_ok else None

    def save_conditions(self, oc: OrderConditions) -> None:
        self.put(
            self._qkey(oc.kind, oc.order),
            {
                "labels": list(oc.labels),
                "conditions": [_qsym_to_json(q) for q in oc.conditions],
                "targets": [str(t) for t in oc.targets],
                "error_generic_labels": list(oc.error_generic_labels),
                "error_generic_terms": [_qsym_to_json(q) for q in oc.error_generic_terms],
                "error_labels": list(oc.error_labels),
                "error_map": [[str(c) for c in row] for row in oc.error_map],
            },
        )


def _qsym_to_json(q: QSym) -> list:
    return [[[list(p) for p in a], str(c)] for a, c in sorted(q.terms.items())]


def _qsym_from_json(data: list) -> QSym:
    return QSym({tuple((int(c), int(e)) for c, e in a): Fraction(q) for a, q in data})


_DISK = _DiskCache()
_MEMORY: dict[str, Method] = {}


def clear_memory_cache() -> None:
    """Forget solved methods and derived conditions held in this process."""
    _MEMORY.clear()
    composition_conditions.cache_clear()
    splitting_conditions.cache_clear()


# ----------------------------------------------------------------------------- solving


@dataclass(frozen=True)
class _Problem:
    kind: str
    order: int
    stages: int

    @property
    def conditions(self) -> OrderConditions:
        if self.kind == "composition":
            return composition_conditions(self.order)
        return splitting_conditions(self.order)

    @property
    def layout(self) -> Layout:
        if self.kind == "composition":
            return composition_layout(self.stages)
        return splitting_layout(self.stages)

    @property
    def family_dim(self) -> int:
        return self.layout.n_unknowns - len(self.conditions.conditions)

    def key(self) -> str:
        return f"{self.kind}:{self.order}:{self.stages}:{ENGINE_VERSION}"

    def check(self) -> None:
        _check_order(self.order)
        what = "stages" if self.kind == "composition" else "B-flows"
        if not isinstance(self.stages, int) or isinstance(self.stages, bool) or self.stages < 1:
            raise ValueError(f"the number of {what} must be a positive integer")
        if self.stages > 64:
            raise ValueError(f"{self.stages} {what} is above the supported maximum 64")
        need = len(self.conditions.conditions)
        have = self.layout.n_unknowns
        if have < need:
            raise ValueError(
                f"{self.stages} {what} are too few for order {self.order}: a symmetric "
                f"{self.kind} has {have} free coefficients, the order needs {need} conditions"
            )


@dataclass
class _Search:
    """A deterministic multistart: `starts` uniform points per scale, seeded."""

    starts: int
    scales: tuple[float, ...]
    iterations: int = 40
    seed: int = 20240611
    optimise_from: int = 48
    product_starts: int = 0  # starts built as compositions of compositions (_product_starts)
    extra_starts: tuple[tuple[float, ...], ...] = ()  # labels of named roots of this system

    @classmethod
    def default(cls, problem: _Problem) -> _Search:
        n = problem.layout.n_unknowns
        if problem.kind == "composition" and problem.order >= 8 and problem.family_dim == 0:
            extra = (_yoshida_d_label(),) if (problem.order, problem.stages) == (8, 15) else ()
            return cls(
                starts=200, scales=(0.8,), iterations=40, product_starts=600, extra_starts=extra
            )
        if problem.family_dim > 0:  # points on the family to optimise from
            return cls(starts=200, scales=(1.0,), iterations=30)
        return cls(starts=min(100 * n, 800), scales=(1.0, 2.5))


def _error_evaluator(problem: _Problem) -> Evaluator:
    return Evaluator(problem.conditions.error_generic_terms, problem.layout)


def _candidate(problem: _Problem, y: np.ndarray) -> Candidate:
    """The candidate at y, its error coefficients computed exactly from the doubles (so the
    ranking does not depend on floating-point evaluation order)."""
    a = _assess_unknowns(problem, [float(v) for v in y])
    steps = np.abs(np.array(problem.layout.expand(list(y))))
    return Candidate(tuple(float(v) for v in y), a.error, a.error_generic, float(steps.max()))


def _real_solutions(problem: _Problem, search: _Search) -> list[np.ndarray]:
    """Polished, distinct points of the solution set reached from the search's starts."""
    oc, layout = problem.conditions, problem.layout
    ev = Evaluator(oc.conditions, layout)
    target = np.array([float(t) for t in oc.targets])
    rng = np.random.default_rng(search.seed)
    found: list[np.ndarray] = []
    for scale in search.scales:
        y0 = rng.uniform(-scale, scale, (search.starts, layout.n_unknowns))
        found.extend(_newton_batch(ev, target, y0, search.iterations))
    if search.extra_starts:
        y0 = np.array(search.extra_starts, dtype=float)
        found.extend(_newton_batch(ev, target, y0, search.iterations))
    if search.product_starts:
        y0 = _product_starts(problem, rng, search.product_starts)
        if len(y0):
            found.extend(_newton_batch(ev, target, y0, search.iterations))
    if problem.family_dim > 0:
        return [y for y in found if np.all(np.isfinite(y))]
    out: list[np.ndarray] = []
    for y in _dedupe(found, 1e-7):
        if not _rank_ok(ev, y):
            continue
        polished = _polish(oc, layout, ev, y)
        if polished is not None and polished[1] < RESIDUAL_LIMIT:
            out.append(polished[0])
    return _dedupe(out, 1e-12)


def _power_sum_points(
    stages: int, power: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Palindromic weights with sum 1 and sum w^power = 0: a composition of a symmetric method
    of order power - 1 with these weights has order power + 1 (one level of order raising)."""
    layout = composition_layout(stages)
    ev = Evaluator([QSym.monomial(((0, 1),)), QSym.monomial(((0, power),))], layout)
    y0 = rng.uniform(-1.5, 1.5, (count, layout.n_unknowns))
    return [layout.expand(list(y)) for y in _newton_batch(ev, np.array([1.0, 0.0]), y0, 30)]


def _product_starts(problem: _Problem, rng: np.random.Generator, count: int) -> np.ndarray:
    """Starting points for an order-p composition with s = s_out * s_in stages: the stage-wise
    products of an order-(p-4) composition with s_in stages (points of its solution set) and
    s_out order-raising weights, i.e. order-(p-2) methods of the right shape. They reach many
    more real roots of the order-p conditions per start than uniform random points do."""
    p, s = problem.order, problem.stages
    if problem.kind != "composition" or p < 8:
        return np.zeros((0, problem.layout.n_unknowns))
    pairs = [(s // d, d) for d in range(3, s // 3 + 1, 2) if s % d == 0 and (s // d) % 2]
    if not pairs:
        return np.zeros((0, problem.layout.n_unknowns))
    starts: list[np.ndarray] = []
    per = max(1, count // len(pairs))
    for s_out, s_in in pairs:
        inner_problem = _Problem("composition", p - 4, s_in)
        inner_layout = inner_problem.layout
        ev = Evaluator(inner_problem.conditions.conditions, inner_layout)
        target = np.array([float(t) for t in inner_problem.conditions.targets])
        y0 = rng.uniform(-1.5, 1.5, (per, inner_layout.n_unknowns))
        inner = [inner_layout.expand(list(y)) for y in _newton_batch(ev, target, y0, 30)]
        outer = _power_sum_points(s_out, p - 3, per, rng)
        if not inner or not outer:
            continue
        for _ in range(per):
            a = np.array(outer[rng.integers(len(outer))])
            b = np.array(inner[rng.integers(len(inner))])
            w = np.outer(a, b).ravel()
            starts.append(w[: problem.layout.n_unknowns])
    return np.array(starts) if starts else np.zeros((0, problem.layout.n_unknowns))


class _Objective:
    """F(y) - t (the order conditions) and E(y) = |L e(y)|^2 (the error coefficient squared),
    with first derivatives, at a batch of points."""

    def __init__(self, problem: _Problem) -> None:
        oc = problem.conditions
        self.ev_c = Evaluator(oc.conditions, problem.layout)
        self.ev_g = _error_evaluator(problem)
        self.lmap = oc.error_matrix
        self.target = np.array([float(t) for t in oc.targets])

    def constraints(self, y: np.ndarray) -> np.ndarray:
        return self.ev_c.values(y) - self.target

    def objective(self, y: np.ndarray) -> np.ndarray:
        e = self.ev_g.values(y) @ self.lmap.T
        return (e * e).sum(axis=1)

    def parts(self, y: np.ndarray):
        f, jf = self.ev_c.jacobian(y)
        e, je = self.ev_g.jacobian(y)
        e, je = e @ self.lmap.T, np.einsum("pq,bqi->bpi", self.lmap, je)
        return f - self.target, jf, e, je

    def lagrangian_gradient(self, y: np.ndarray, lam: np.ndarray) -> np.ndarray:
        f, jf, e, je = self.parts(y)
        return 2.0 * np.einsum("bqi,bq->bi", je, e) + np.einsum("bki,bk->bi", jf, lam)


def _project(obj: _Objective, y: np.ndarray, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-norm Newton back onto F(y) = t; returns (points, converged?)."""
    y = y.copy()
    todo = np.arange(len(y))
    for _ in range(iterations):
        f, jf = obj.ev_c.jacobian(y[todo])
        f = f - obj.target
        far = ~(np.abs(f).max(axis=1) < 1e-13)
        todo, f, jf = todo[far], f[far], jf[far]
        if not len(todo):
            break
        y[todo] = y[todo] - _pinv_solve(jf, f)
    f = obj.constraints(y)
    ok = np.all(np.isfinite(y), axis=1) & (np.abs(f).max(axis=1) < 1e-11)
    return y, ok


def _minimise_on_family(
    problem: _Problem, points: Sequence[np.ndarray], iterations: int = 25
) -> list[np.ndarray]:
    """Local minima of E(y) on the family F(y) = t, from each point (batched).

    Feasible descent: a Gauss-Newton step for E in the tangent space of the family (the null
    space of dF), projected back onto the family, halved until E decreases. Then Newton on the
    Lagrange system grad E + dF^T lam = 0, F = t, with the Hessian of the Lagrangian from central
    differences of its exact gradient. A point is kept when it satisfies those equations and the
    Hessian restricted to the tangent space is positive semidefinite."""
    obj = _Objective(problem)
    n = problem.layout.n_unknowns
    m = len(obj.target)
    y, ok = _project(obj, np.array(points, dtype=float))
    y, alive = y[ok], np.ones(int(ok.sum()), bool)
    damping = np.full(len(y), 1e-6)
    for _ in range(iterations):
        idx = np.where(alive)[0]
        if not len(idx):
            break
        f, jf, e, je = obj.parts(y[idx])
        z = np.linalg.svd(jf)[2][:, m:, :].transpose(0, 2, 1)  # (b, n, r) tangent basis
        jz = je @ z
        a = np.einsum("bqi,bqj->bij", jz, jz)
        a += (damping[idx] * (1 + np.einsum("bii->b", a)))[:, None, None] * np.eye(n - m)
        u = -np.linalg.solve(a, np.einsum("bqi,bq->bi", jz, e)[..., None])[..., 0]
        step = (z @ u[..., None])[..., 0]
        base = (e * e).sum(axis=1)
        moved = np.zeros(len(idx), bool)
        scale = np.ones(len(idx))
        for _ in range(6):
            trial, feasible = _project(obj, y[idx] + scale[:, None] * step)
            better = feasible & (obj.objective(trial) < base) & ~moved
            y[idx[better]] = trial[better]
            moved |= better
            scale[~moved] *= 0.25
            if moved.all():
                break
        damping[idx[moved]] = np.maximum(damping[idx[moved]] / 4, 1e-12)
        damping[idx[~moved]] *= 100
        small = np.abs(step).max(axis=1) < 1e-13 * (1 + np.abs(y[idx]).max(axis=1))
        alive[idx[small | (damping[idx] > 1e6)]] = False
    out = []
    for yi in y:
        polished = _kkt_newton(obj, yi, n, m)
        if polished is not None:
            out.append(polished)
    return out


def _lagrangian_hessian(obj: _Objective, y: np.ndarray, lam: np.ndarray) -> np.ndarray:
    n = len(y)
    h = 1e-6 * max(1.0, float(np.abs(y).max()))
    pts = np.concatenate([y + h * np.eye(n), y - h * np.eye(n)])
    g = obj.lagrangian_gradient(pts, np.repeat(lam[None], 2 * n, axis=0))
    hess = (g[:n] - g[n:]) / (2 * h)
    return 0.5 * (hess + hess.T)


def _kkt_newton(obj: _Objective, y: np.ndarray, n: int, m: int) -> np.ndarray | None:
    """Newton on the Lagrange system from a near-stationary feasible point (the Hessian of the
    Lagrangian is refreshed every third step: a difference Hessian costs 2n gradients)."""
    if not np.all(np.isfinite(y)):
        return None
    hess = None
    for it in range(12):
        f, jf, e, je = obj.parts(y[None])
        f, jf, g = f[0], jf[0], 2.0 * je[0].T @ e[0]
        lam = -np.linalg.lstsq(jf.T, g, rcond=None)[0]
        residual = np.abs(g + jf.T @ lam).max()
        if residual < 1e-13 * (1 + np.abs(g).max()) and np.abs(f).max() < 1e-13:
            break
        if hess is None or it % 3 == 0:
            hess = _lagrangian_hessian(obj, y, lam)
        kkt = np.zeros((n + m, n + m))
        kkt[:n, :n], kkt[:n, n:], kkt[n:, :n] = hess, jf.T, jf
        rhs = -np.concatenate([g + jf.T @ lam, f])
        d = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n]
        if not np.all(np.isfinite(d)) or np.abs(d).max() > 1e-2:
            break
        y = y + d
    f, jf, e, je = obj.parts(y[None])
    f, jf, g = f[0], jf[0], 2.0 * je[0].T @ e[0]
    lam = -np.linalg.lstsq(jf.T, g, rcond=None)[0]
    stationary = np.abs(g + jf.T @ lam).max() < 1e-9 * (1 + np.abs(g).max())
    if not (stationary and np.abs(f).max() < 1e-10):
        return None
    z = np.linalg.svd(jf)[2][m:].T
    reduced = z.T @ _lagrangian_hessian(obj, y, lam) @ z
    scale = max(1.0, float(np.abs(reduced).max()))
    return y if np.linalg.eigvalsh(reduced).min() > -1e-7 * scale else None


def _solve(problem: _Problem, search: _Search | None = None) -> tuple[list[Candidate], int]:
    """All distinct real solutions (square system) or local optima of the error coefficient on
    the solution family (underdetermined), as candidates sorted by error coefficient."""
    search = search or _Search.default(problem)
    oc, layout = problem.conditions, problem.layout
    ev_c = Evaluator(oc.conditions, layout)
    points = _real_solutions(problem, search)
    if problem.family_dim > 0 and points:
        # optimise from the points with the smallest error coefficient, and as many others
        # picked at random (the family's good basins are small, the rest keeps variety)
        rng = np.random.default_rng(search.seed + 1)
        energy = _Objective(problem).objective(np.array(points))
        order = [int(i) for i in np.argsort(energy, kind="stable")]
        half = search.optimise_from // 2
        rest = order[half:]
        pick = order[:half] + [rest[i] for i in rng.permutation(len(rest))[:half]]
        optima = _minimise_on_family(problem, [points[i] for i in pick])
        points = []
        for y in _dedupe(optima, 1e-6):
            polished = _polish(oc, layout, ev_c, y)
            if polished is not None and polished[1] < RESIDUAL_LIMIT:
                points.append(polished[0])
        points = _dedupe(points, 1e-7)
    cands = [_candidate(problem, y) for y in points]
    cands.sort(key=lambda c: (c.error, c.unknowns))
    return cands, problem.family_dim


def _method(
    problem: _Problem,
    name: str,
    chosen: Candidate,
    cands: Sequence[Candidate],
    rule: str,
    seconds: float,
    cached: bool,
) -> Method:
    layout = problem.layout
    y = np.array(chosen.unknowns)
    check = _assess_unknowns(problem, list(chosen.unknowns))
    cls = Composition if problem.kind == "composition" else Splitting
    return cls(
        name=name,
        kind=problem.kind,
        order=problem.order,
        stages=problem.stages,
        unknowns=tuple(chosen.unknowns),
        coefficients=tuple(float(v) for v in layout.expand(list(y))),
        residual=check.residual,
        error=check.error,
        error_generic=check.error_generic,
        error_terms=check.error_terms,
        solutions=tuple(cands),
        family_dim=problem.family_dim,
        rule=rule,
        seconds=seconds,
        cached=cached,
    )


def _cands_to_json(cands: Sequence[Candidate]) -> list:
    return [list(c.unknowns) for c in cands]


def _cands_from_json(problem: _Problem, data: Any) -> list[Candidate] | None:
    """Re-verify cached unknowns against the exact conditions; None if anything is off."""
    try:
        points = [np.array([float(v) for v in row]) for row in data]
    except (TypeError, ValueError):
        return None
    n = problem.layout.n_unknowns
    if not points or any(p.shape != (n,) or not np.all(np.isfinite(p)) for p in points):
        return None
    oc, layout = problem.conditions, problem.layout
    for p in points:
        if max(abs(float(r)) for r in _exact_residuals(oc, layout, p)) >= RESIDUAL_LIMIT:
            return None
    return [_candidate(problem, p) for p in points]


def _solved(
    problem: _Problem, search: _Search | None = None
) -> tuple[list[Candidate], float, bool]:
    """(candidates, seconds, from_cache) for a problem, through both caches."""
    key = "solutions:" + problem.key()
    hit = _MEMORY.get(key)
    if hit is not None:
        return list(hit.solutions), 0.0, True
    t0 = time.perf_counter()
    payload = _DISK.get(key) if search is None else None
    cands = _cands_from_json(problem, payload) if payload is not None else None
    if cands is not None:
        return cands, time.perf_counter() - t0, True
    cands, _ = _solve(problem, search)
    if not cands:
        what = "real solution" if problem.family_dim == 0 else "optimum on the solution family"
        raise ValueError(
            f"no {what} found for a symmetric {problem.kind} of order {problem.order} with "
            f"{problem.stages} {'stages' if problem.kind == 'composition' else 'B-flows'}"
        )
    if search is None:
        _DISK.put(key, _cands_to_json(cands))
    return cands, time.perf_counter() - t0, False


def _remember(key: str, method: Method) -> Method:
    _MEMORY[key] = method
    return method


def _best(kind: str, order: int, stages: int) -> Method:
    """The solved method of `kind` with the smallest error coefficient, memoized."""
    problem = _Problem(kind, order, stages)
    problem.check()
    key = "solutions:" + problem.key()
    if key in _MEMORY:
        return _MEMORY[key]
    cands, seconds, cached = _solved(problem)
    rule = "smallest error coefficient" + (
        " among the optima on the family" if problem.family_dim else " among the real solutions"
    )
    m = _method(problem, f"{kind}{order}_{stages}", cands[0], cands, rule, seconds, cached)
    return _remember(key, m)


# ----------------------------------------------------------------------------- public API


def symmetric_composition(order: int, stages: int) -> Composition:
    """The symmetric composition S(w_1 h) ... S(w_s h) of a symmetric 2nd-order method S with
    the given order and number of stages: among all real solutions found (square system) or
    all local optima on the solution family, the one with the smallest error coefficient."""
    return _best("composition", order, stages)  # type: ignore[return-value]


def splitting_method(order: int, stages: int) -> Splitting:
    """A symmetric two-part splitting method with `stages` B-flows, A outermost:
    e^{a_1 hA} e^{b_1 hB} e^{a_2 hA} ... e^{b_1 hB} e^{a_1 hA}, with the smallest error
    coefficient (Lyndon basis on A < B) among the real solutions or family optima found."""
    return _best("splitting", order, stages)  # type: ignore[return-value]


def compose(*parts: str, order: int, stages: int) -> Composition | Splitting:
    """compose(order=N, stages=S): symmetric composition of the base method;
    compose("A", "B", order=N, stages=S): two-part splitting method with S B-flows."""
    if not parts:
        return symmetric_composition(order, stages)
    if len(parts) == 2:
        return splitting_method(order, stages)
    raise ValueError(f"compose takes no parts or two parts, got {len(parts)}")


# ----------------------------------------------------------------------------- named methods

# Yoshida's Table 2 lists five of the many real solutions of the (8, 15) system; none of them is
# extremal in the error coefficient, max |w| or sum |w| among the solutions a search finds
# (docs/methods.md). Solution D is therefore identified by a coarse label: it is the real root
# whose w_7 ... w_1 (outermost first) round to Yoshida's values at one decimal. Newton's method
# from the label converges to D, the result is checked to round back to the label, and every
# digit of it comes from the exact polish of the order conditions.
_YOSHIDA_D_LABEL = (0.9, 0.3, -1.4, -0.2, 1.9, -2.0, 0.1)


def _renamed(method: Method, name: str, rule: str) -> Method:
    return replace(method, name=name, rule=rule)


def yoshida(order: int) -> Composition:
    """Yoshida's (1990) symmetric compositions of a symmetric 2nd-order method.

    4: the triple jump, the unique real solution with 3 stages. 6: solution A, the real
    solution of the 7-stage system with the smallest error coefficient (it also has the
    smallest max |w|). 8: solution D of the 15-stage system, identified by its label."""
    _check_order(order)
    key = f"yoshida{order}:{ENGINE_VERSION}"
    if key in _MEMORY:
        return _MEMORY[key]  # type: ignore[return-value]
    if order == 4:
        m = symmetric_composition(4, 3)
        if m.n_solutions != 1:
            raise ValueError("expected a unique real 3-stage 4th-order composition")
        rule = "the unique real solution of the 3-stage conditions (Yoshida's triple jump)"
        return _remember(key, _renamed(m, "yoshida4", rule))  # type: ignore[return-value]
    if order == 6:
        m = symmetric_composition(6, 7)
        by_step = min(m.solutions, key=lambda c: c.max_step)
        rule = (
            f"Yoshida's solution A: of the {m.n_solutions} real solutions of the 7-stage "
            "conditions, the smallest error coefficient"
            + (" (and the smallest max |w|)" if by_step == m.solutions[0] else "")
        )
        return _remember(key, _renamed(m, "yoshida6", rule))  # type: ignore[return-value]
    if order == 8:
        return _remember(key, _yoshida_d())  # type: ignore[return-value]
    raise ValueError(f"yoshida{order} does not exist: Yoshida's methods have order 4, 6 or 8")


def _yoshida_d_label() -> tuple[float, ...]:
    return _YOSHIDA_D_LABEL + (1.0 - 2.0 * sum(_YOSHIDA_D_LABEL),)


def _rounds_to_label(unknowns) -> bool:
    return all(round(float(w), 1) == x for w, x in zip(unknowns, _YOSHIDA_D_LABEL))


def _yoshida_d() -> Composition:
    problem = _Problem("composition", 8, 15)
    label = np.array(_yoshida_d_label())
    search = _Search(starts=1, scales=(), iterations=40)
    key = "solutions:" + problem.key() + ":yoshida-D"
    t0 = time.perf_counter()
    payload = _DISK.get(key)
    cands = _cands_from_json(problem, payload) if payload is not None else None
    cached = cands is not None
    if cands is None:
        oc, layout = problem.conditions, problem.layout
        ev = Evaluator(oc.conditions, layout)
        target = np.array([float(t) for t in oc.targets])
        got = _newton_batch(ev, target, label[None], search.iterations)
        polished = _polish(oc, layout, ev, got[0]) if len(got) and _rank_ok(ev, got[0]) else None
        if polished is None or polished[1] >= RESIDUAL_LIMIT or not _rounds_to_label(polished[0]):
            raise ValueError("the 8th-order conditions have no real root at Yoshida's label")
        cands = [_candidate(problem, polished[0])]
        _DISK.put(key, _cands_to_json(cands))
    rule = (
        "Yoshida's solution D: the real root of the 15-stage conditions whose w round to "
        "his Table 2 at one decimal (Newton's method from that label)"
    )
    seconds = time.perf_counter() - t0
    m = _method(problem, "yoshida8", cands[0], cands, rule, seconds, cached)
    return replace(m, found="root identified by its label")  # type: ignore[return-value]


def _root2(k: int, bits: int = 200) -> Fraction:
    """2^(1/k) to `bits` bits (integer Newton on the k-th root of 2^(1 + k bits))."""
    n = 1 << (1 + k * bits)
    x = 1 << (bits + 1)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return Fraction(x, 1 << bits)
        x = y


def triple_jump_weights(order: int, exact: bool = False) -> list:
    """The recursive triple jump: each level composes the previous method as
    S(x1 h) S(x0 h) S(x1 h), x1 = 1 / (2 - 2^(1/(k+1))), x0 = 1 - 2 x1, for k = 2, 4, ...
    `exact=True` gives the weights as rationals within 2^-190 of the true values."""
    _check_order(order)
    weights = [Fraction(1)] if exact else [1.0]
    for k in range(2, order, 2):
        x1 = 1 / (2 - _root2(k + 1)) if exact else 1.0 / (2.0 - 2.0 ** (1.0 / (k + 1)))
        x0 = 1 - 2 * x1
        weights = [w * f for f in (x1, x0, x1) for w in weights]
    return weights


def triple_jump(order: int) -> Composition:
    """The recursive triple jump (3, 9 and 27 stages for orders 4, 6, 8), checked by the engine."""
    _check_order(order)
    key = f"triple_jump{order}:{ENGINE_VERSION}"
    if key in _MEMORY:
        return _MEMORY[key]  # type: ignore[return-value]
    t0 = time.perf_counter()
    exact = triple_jump_weights(order, exact=True)
    problem = _Problem("composition", order, len(exact))
    layout = problem.layout
    disk_key = "solutions:" + problem.key() + ":triple-jump"
    payload = _DISK.get(disk_key)
    cands = _cands_from_json(problem, payload) if payload is not None else None
    if (
        cands is not None
        and np.abs(
            np.array(cands[0].unknowns) - [float(w) for w in exact[: layout.n_unknowns]]
        ).max()
        > 1e-13
    ):
        cands = None  # a root, but not the triple jump
    cached = cands is not None
    if cands is None:
        ev = Evaluator(problem.conditions.conditions, layout)
        y, _ = _round_to_doubles(problem.conditions, layout, ev, exact[: layout.n_unknowns])
        cands = [_candidate(problem, y)]
        _DISK.put(disk_key, _cands_to_json(cands))
    rule = "the recursive triple jump (closed form)"
    seconds = time.perf_counter() - t0
    m = _method(problem, f"triple_jump{order}", cands[0], cands, rule, seconds, cached)
    return _remember(key, replace(m, found="closed form"))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Assessment:
    """Exact order-condition residuals and the error coefficients of given coefficients."""

    residuals: tuple[float, ...]
    error: float
    error_generic: float
    error_terms: tuple[float, ...] = ()

    @property
    def residual(self) -> float:
        return max(abs(r) for r in self.residuals)


def _assess(problem: _Problem, coefficients: Sequence[float]) -> Assessment:
    layout = problem.layout
    if len(coefficients) != len(layout.colours):
        raise ValueError(f"expected {len(layout.colours)} coefficients, got {len(coefficients)}")
    y = [0.0] * layout.n_unknowns
    for k, c in zip(layout.unknown, coefficients):
        y[k] = float(c)
    if any(float(c) != y[k] for k, c in zip(layout.unknown, coefficients)):
        raise ValueError("the coefficients must be palindromic (the conditions assume symmetry)")
    return _assess_unknowns(problem, y)


def _assess_unknowns(problem: _Problem, y: Sequence[float]) -> Assessment:
    layout, oc = problem.layout, problem.conditions
    values = [Fraction(v) for v in layout.expand(y)]
    res = [float(r) for r in _exact_residuals(oc, layout, y)]
    exact = evaluate_qsym(oc.error_generic_terms, layout.colours, values)
    err = [float(sum((c * v for c, v in zip(row, exact)), Fraction(0))) for row in oc.error_map]
    return Assessment(
        tuple(res),
        float(math.sqrt(sum(e * e for e in err))),
        float(math.sqrt(sum(float(v) ** 2 for v in exact))),
        tuple(err),
    )


def assess_composition(order: int, weights: Sequence[float]) -> Assessment:
    """Residuals of the order-`order` conditions and the error coefficients of a palindromic
    composition with the given stage weights (computed exactly from the doubles)."""
    _check_order(order)
    return _assess(_Problem("composition", order, len(weights)), weights)


def assess_splitting(order: int, a: Sequence[float], b: Sequence[float]) -> Assessment:
    """The same for e^{a_1 hA} e^{b_1 hB} ... e^{a_1 hA} (len(a) = len(b) + 1)."""
    _check_order(order)
    if len(a) != len(b) + 1:
        raise ValueError("a splitting A B A ... A needs one more a than b")
    flows = [x for pair in zip(a, list(b) + [None]) for x in pair if x is not None]
    return _assess(_Problem("splitting", order, len(b)), flows)
