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
`shadow = {kick = [...], drift = [...], c_aab, c_abb}` to the scheme. When both vanish (a
fourth-order composition) H~ starts at dt^4, which is not implemented: refused.
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
    c_aab, c_abb = h2_coefficients(letters)
    if abs(c_aab) < 1e-12 and abs(c_abb) < 1e-12:
        raise Refusal(scheme, f"--shadow: the dt^2 term of {scheme.sym_name.data}'s shadow "
                      "Hamiltonian vanishes (a method of order 4 or more); its dt^4 term is not "
                      "implemented")
    return {"kick": list(next(iter(groups["kick"]))), "drift": list(next(iter(groups["drift"]))),
            "c_aab": float(c_aab), "c_abb": float(c_abb)}


def read_shadow(scheme: sym.SchemeOp) -> dict | None:
    attr = scheme.attributes.get("shadow")
    if not isinstance(attr, DictionaryAttr):
        return None
    d = attr.data
    return {"kick": [s.data for s in d["kick"].data], "drift": [s.data for s in d["drift"].data],
            "c_aab": d["c_aab"].value.data, "c_abb": d["c_abb"].value.data}


class MarkShadow(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: sym.SchemeOp, rewriter: PatternRewriter) -> None:
        if "shadow" in op.attributes:
            return
        p = plan(op)
        op.attributes["shadow"] = DictionaryAttr({
            "kick": ArrayAttr([StringAttr(s) for s in p["kick"]]),
            "drift": ArrayAttr([StringAttr(s) for s in p["drift"]]),
            "c_aab": FloatAttr(p["c_aab"], f64), "c_abb": FloatAttr(p["c_abb"], f64)})
        rewriter.notify_op_modified(op)


@dataclass(frozen=True)
class SymShadowPass(ModulePass):
    """Attach the dt^2 term of the scheme's shadow Hamiltonian (BCH brackets of its kicks and
    drifts) for --shadow."""

    name = "sym-shadow"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(MarkShadow(), apply_recursively=False).rewrite_module(op)
