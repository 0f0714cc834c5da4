"""sym-shadow: the leading term of the scheme's shadow (modified) Hamiltonian, for --shadow.

A splitting or composition scheme of H = T(p) + V(q) is exactly the time-dt flow of a
modified Hamiltonian H~ = H + dt^2 H2 + dt^4 H4 + ..., which it conserves to round-off on
exponentially long times; the energy error of the run is mostly H~ - H. For a product of
flows exp(c_1 dt X_1) ... exp(c_s dt X_s), X_i in {A, B}, BCH gives (in the Lyndon basis)

    H2 = c_AAB {A,{A,B}} + c_ABB {B,{B,A}}      ([[A,B],B] = [B,[B,A]])

with A the parts the scheme kicks (V, depends on q alone) and B those it drifts (T, p alone).
Double brackets are the same under the Lie algebra (anti-)homomorphism H -> X_H and under
reversing a palindromic product, so the Poisson brackets take the Lie coefficients as they are
(leapfrog KDK: c_AAB = -1/24, c_ABB = 1/12, the classical result). For separable parts:

    {V,{V,T}} = g^T T''(p) g,  g = dV/dq        {T,{T,V}} = v^T V''(q) v,  v = dT/dp

second directional derivatives along the gradients (passes/jet_lowering.py), never a Hessian.

Algorithm: flatten the scheme (sym.repeat unrolled), check that every flow is a kick of the
same parts or a drift of the same parts and that the product is palindromic, take the weight-3
Lyndon coordinates of log(product) with exact rationals (passes/bch.py), and attach
`shadow = {kick = [...], drift = [...], c_aab, c_abb}` to the scheme.

The dt^4 term. When both weight-3 coordinates vanish (a composition of order 4: yoshida4),
H~ = H + dt^4 H4 + O(dt^6) with H4 the weight-5 part of the logarithm (six Lyndon
coordinates; a bracket of weight 5 nests four brackets, so the anti-homomorphism's signs cancel
as at weight 3 and the Poisson brackets again take the Lie coefficients as they are; leapfrog's
are the classical -1/720 {T,{T,{T,{T,V}}}} and 7/5760 {V,{V,{V,{V,T}}}}, among others, though
sym-shadow keeps only the leading term). To evaluate it, it is rewritten in right-nested
brackets by the Dynkin-Specht-Wever identity (a Lie element P of weight n is
(1/n) sum_w <P, w> r(w), with r(w) = [w1,[w2,[...,[w_(n-1),w_n]]]]), and each right-nested
Poisson bracket is expanded with

    {V, F} = g . dF/dp        {T, F} = -v . dF/dq        {V, T} = g . v

(separable parts: g = dV/dq depends on q only, v = dT/dp on p only). Every derivative lands
on a tensor V^(k)(q) or T^(k)(p), so a weight-5 bracket is a sum of full contractions of such
tensors along trees with 5 nodes (a V node of degree k is V^(k), a T node T^(k), each edge
pairs a q index of one with a p index of the other). There are six such trees:

    V4_vvvv = V''''[v,v,v,v]              T4_gggg = T''''[g,g,g,g]
    V3_vvu  = V'''[v,v,u],  u = T'' g     T3_gga  = T'''[g,g,a],  a = V'' v
    T2_aa   = a^T T'' a                   V2_uu   = u^T V'' u

e.g. {T,{T,{T,{T,V}}}} = V4_vvvv, {V,{T,{T,{T,V}}}} = -3 V3_vvu, and
{V,{V,{T,{T,V}}}} = 2 V2_uu + 2 T3_gga (T = |p|^2 / 2: V2_uu = g^T V'' g). The coefficients of
the trees come from a one-dimensional calculus that keeps V^(k) and T^(k) as symbols: each
tree is a distinct monomial there (V4_vvvv = V4 T1^4, V3_vvu = V3 V1 T1^2 T2, ...), so they
hold in any dimension. H4 = sum_tree c_tree tree goes on the scheme as `dt4 = {tree = c}`
instead of c_aab, c_abb (weight 3 the same way: T2_gg = g^T T'' g, V2_vv = v^T V'' v).

Run time (tpc/invariants.py) gets g and v from the compiled gradients, a and u from
hvp_<part> (a first-order jet through the part's gradient region: a Hessian-vector product,
never a Hessian) and the directional derivatives from taylor_<part> (Taylor jets to order 4,
passes/jet_lowering.py); the mixed V'''[v,v,u] is the polarization
(D3(v + u) - D3(v - u) - 2 D3(u)) / 6 of third directional derivatives D3(x) = V'''[x,x,x].
Nothing here assumes T quadratic: for T = p^T M^-1 p / 2, T''' = T'''' = 0 and those trees
vanish. When the weight-5 coordinates vanish too (order 6 or more) the leading term is dt^6,
which is not implemented: refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tpc.dialects import sym
from tpc.passes.bch import Alphabet, LieBasis, Series
from tpc.passes.refusal import Refusal
from xdsl.context import Context
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, FloatAttr, ModuleOp, StringAttr, f64
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

A, B = 0, 1


def flat_stages(stages) -> list:
    out = []
    for st in stages:
        if isinstance(st, sym.RepeatOp):
            out += flat_stages(st.stages) * st.n
        else:
            out.append(st)
    return out


def h2_coefficients(letters: list[tuple[int, Fraction]]) -> tuple[Fraction, Fraction]:
    """(c_AAB, c_ABB): the weight-3 Lyndon coordinates of log(prod exp(c X))."""
    alphabet = Alphabet(("A", "B"), (1, 1))
    product = Series(alphabet, 3).one()
    for letter, c in letters:
        product = product * Series.generator_sum(alphabet, 3, {letter: c}).exp()
    basis = LieBasis(alphabet, 3)
    coords = dict(zip(basis.words, basis.coordinates(product.log().part(3))))
    return coords[(A, A, B)], coords[(A, B, B)]


# One-dimensional bracket calculus: a monomial is the exponents of V1..V5 (derivatives of V
# at q) then T1..T5 (of T at p); a polynomial maps monomials to exact coefficients.
Poly = dict[tuple[int, ...], Fraction]
DEPTH = 5


def _mono(v: dict[int, int] | None = None, t: dict[int, int] | None = None) -> tuple[int, ...]:
    out = [0] * (2 * DEPTH)
    for k, n in (v or {}).items():
        out[k - 1] += n
    for k, n in (t or {}).items():
        out[DEPTH + k - 1] += n
    return tuple(out)


# The contraction each monomial stands for (the trees of the module docstring).
TREES = {
    _mono({2: 1}, {1: 2}): "V2_vv", _mono({1: 2}, {2: 1}): "T2_gg",
    _mono({4: 1}, {1: 4}): "V4_vvvv", _mono({1: 4}, {4: 1}): "T4_gggg",
    _mono({3: 1, 1: 1}, {1: 2, 2: 1}): "V3_vvu", _mono({1: 2, 2: 1}, {3: 1, 1: 1}): "T3_gga",
    _mono({2: 2}, {1: 2, 2: 1}): "T2_aa", _mono({1: 2, 2: 1}, {2: 2}): "V2_uu",
}
DT4_TREES = ("V4_vvvv", "T4_gggg", "V3_vvu", "T3_gga", "T2_aa", "V2_uu")
# Below this a BCH coordinate computed from floating-point stage coefficients is zero.
VANISHES = 1e-12


def _derive(f: Poly, offset: int) -> Poly:
    """d/dq (offset 0: V's symbols) or d/dp (offset DEPTH: T's) of a polynomial."""
    out: Poly = {}
    for m, c in f.items():
        for k in range(DEPTH):
            n = m[offset + k]
            if n:
                if k + 1 == DEPTH:
                    raise AssertionError("a bracket deeper than the calculus tracks")
                mm = list(m)
                mm[offset + k] -= 1
                mm[offset + k + 1] += 1
                key = tuple(mm)
                out[key] = out.get(key, Fraction(0)) + c * n
    return out


def _times(f: Poly, m: tuple[int, ...], c: Fraction) -> Poly:
    return {tuple(a + b for a, b in zip(k, m)): x * c for k, x in f.items()}


def _ad(letter: int, f: Poly) -> Poly:
    """{X, f}: {V, f} = V1 df/dp, {T, f} = -T1 df/dq."""
    if letter == A:
        return _times(_derive(f, DEPTH), _mono({1: 1}), Fraction(1))
    return _times(_derive(f, 0), _mono(None, {1: 1}), Fraction(-1))


def right_nested(word: tuple[int, ...]) -> Poly:
    """{X1,{X2,{...,{X_(n-1),X_n}}}} for separable V (A) and T (B), in the 1-D calculus."""
    *head, x, y = word
    if x == y:
        return {}
    f: Poly = {_mono({1: 1}, {1: 1}): Fraction(1 if x == A else -1)}
    for letter in reversed(head):
        f = _ad(letter, f)
    return f


def log_part(letters: list[tuple[int, Fraction]], weight: int) -> Series:
    alphabet = Alphabet(("A", "B"), (1, 1))
    product = Series(alphabet, weight).one()
    for letter, c in letters:
        product = product * Series.generator_sum(alphabet, weight, {letter: c}).exp()
    return product.log().part(weight)


def bracket_terms(letters: list[tuple[int, Fraction]], weight: int) -> dict[str, Fraction]:
    """The weight-n part of log(prod exp(c X)) as Poisson brackets of separable V and T, by
    tree (Dynkin-Specht-Wever to right-nested brackets, then the 1-D calculus)."""
    total: Poly = {}
    for word, c in log_part(letters, weight).terms.items():
        for m, x in right_nested(word).items():
            total[m] = total.get(m, Fraction(0)) + x * c / weight
    out = {}
    for m, c in total.items():
        if c != 0:
            if m not in TREES:  # pragma: no cover - the trees span weights 3 and 5
                raise AssertionError(f"unexpected contraction {m}")
            out[TREES[m]] = c
    return out


def plan(scheme: sym.SchemeOp) -> dict:
    stages = flat_stages(scheme.stages)
    groups: dict[str, set[tuple[str, ...]]] = {"kick": set(), "drift": set()}
    letters = []
    for st in stages:
        kind = st.kind_name if isinstance(st, sym.FlowOp) else None
        if kind not in groups:
            raise Refusal(scheme, "--shadow needs a splitting of H into T(p) and V(q) flowed by "
                          f"kicks and drifts; @{scheme.sym_name.data} has a "
                          f"{kind or st.name} stage")
        groups[kind].add(tuple(st.part_names))
        letters.append((A if kind == "kick" else B, Fraction(st.coeff.value.data)))
    if any(len(g) != 1 for g in groups.values()):
        raise Refusal(scheme, "--shadow needs every kick to flow the same parts and every drift "
                      "the same parts")
    if [c for _, c in letters] != [c for _, c in reversed(letters)] or [
            x for x, _ in letters] != [x for x, _ in reversed(letters)]:
        raise Refusal(scheme, "--shadow needs a symmetric (palindromic) scheme: its shadow "
                      "Hamiltonian then has only even powers of dt")
    out: dict = {"kick": list(next(iter(groups["kick"]))),
                 "drift": list(next(iter(groups["drift"])))}
    c_aab, c_abb = h2_coefficients(letters)
    if abs(c_aab) >= VANISHES or abs(c_abb) >= VANISHES:
        return out | {"c_aab": float(c_aab), "c_abb": float(c_abb)}
    dt4 = bracket_terms(letters, 5)
    if all(abs(c) < VANISHES for c in dt4.values()):
        raise Refusal(scheme, f"--shadow: the dt^2 and dt^4 terms of {scheme.sym_name.data}'s "
                      "shadow Hamiltonian vanish (a method of order 6 or more); its dt^6 term "
                      "is not implemented")
    return out | {"dt4": {k: float(dt4.get(k, 0)) for k in DT4_TREES}}


def read_shadow(scheme: sym.SchemeOp) -> dict | None:
    attr = scheme.attributes.get("shadow")
    if not isinstance(attr, DictionaryAttr):
        return None
    d = attr.data
    out = {"kick": [s.data for s in d["kick"].data], "drift": [s.data for s in d["drift"].data]}
    if "dt4" in d:
        return out | {"dt4": {k: v.value.data for k, v in d["dt4"].data.items()}}
    return out | {"c_aab": d["c_aab"].value.data, "c_abb": d["c_abb"].value.data}


class MarkShadow(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.SchemeOp, rewriter: PatternRewriter) -> None:
        if "shadow" in op.attributes:
            return
        p = plan(op)
        terms = ({"dt4": DictionaryAttr({k: FloatAttr(c, f64) for k, c in p["dt4"].items()})}
                 if "dt4" in p else {"c_aab": FloatAttr(p["c_aab"], f64),
                                     "c_abb": FloatAttr(p["c_abb"], f64)})
        op.attributes["shadow"] = DictionaryAttr({
            "kick": ArrayAttr([StringAttr(s) for s in p["kick"]]),
            "drift": ArrayAttr([StringAttr(s) for s in p["drift"]]), **terms})
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class SymShadowPass(ModulePass):
    """Attach the leading term (dt^2, or dt^4 for a method of order 4) of the scheme's shadow
    Hamiltonian (BCH brackets of its kicks and drifts) for --shadow."""

    name = "sym-shadow"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(MarkShadow(), apply_recursively=False).rewrite_module(op)
