"""ham-split-parts: a separable part that reads both q and p becomes two parts, one per field.

A splitting method flows each part as a kick (q alone) or a drift (p alone), so a part such as
`let E = sum(i: p[i]^2 / 2 + q[i]^2 / 2)` or `0.5 * (dot(p, p) + dot(q, q))`, which ham-degree
finds separable (every additive term reads one field) but which as a whole reads both, has no
flow of its own. This pass splits it where ham-degree's term decomposition sees the terms.

Algorithm, for each `ham.part @E` with `depends_on = [q, p]` and `separable = true`:
  1. Clone the part twice, as @E_q and @E_p (a numeric suffix when a name is taken).
  2. In the clone of field f, walk the yielded value down through additions, subtractions,
     negations, constant factors and divisors and the bodies of sums, as ham-degree's term
     split does, while a value reads both fields: at an addition or subtraction, an operand
     that reads only the other field (for p: also one that reads nothing) is dropped, so
     a + b becomes a and a - b becomes -b or a.
  3. Drop what is left unused, give the clones ham-degree's facts and `split_from = "E"` (an
     integrator that names @E flows the two together), and replace @E by @E_q, @E_p in
     ham.hamiltonian.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham
from tpc.passes.ham_degree import analyze_part, attach, read_facts, value_deps
from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint
from xdsl.transforms.dead_code_elimination import region_dce

_FACTS = ("degree", "quadratic", "separable", "depends_on", "why")


def _belongs(deps: frozenset[str], field: str, q: str, p: str) -> bool:
    """Constant terms go with q (the potential side), like the automatic parts."""
    return p not in deps if field == q else deps == {p}


def _prune(v: SSAValue, deps, field: str, q: str, p: str) -> None:
    """Drop, below the mixed value v, every additive term that does not belong to `field`."""
    def mixed(x: SSAValue) -> bool:
        d = deps.get(x, frozenset())
        return q in d and p in d

    op = v.owner
    if isinstance(op, arith.AddfOp | arith.SubfOp):
        kept = [x for x in (op.lhs, op.rhs)
                if mixed(x) or _belongs(deps.get(x, frozenset()), field, q, p)]
        if len(kept) == 1:
            (x,) = kept
            if x is op.rhs and isinstance(op, arith.SubfOp):
                neg = arith.NegfOp(x)
                op.parent_block().insert_op_before(neg, op)
                x = neg.result
            op.result.replace_all_uses_with(x)
        operands = kept
    elif isinstance(op, arith.NegfOp):
        operands = [op.operand]
    elif isinstance(op, arith.MulfOp | arith.DivfOp):
        operands = [x for x in (op.lhs, op.rhs) if deps.get(x)]
    elif isinstance(op, ham.SumOp | ham.PairSumOp):
        operands = [op.body.block.last_op.values[0]]
    else:
        operands = []  # not separable below here: ham-degree said the part is
    for x in operands:
        if mixed(x):
            _prune(x, deps, field, q, p)


def split(part: ham.PartOp, system: ham.SystemOp, name: str, field: str) -> ham.PartOp:
    q, p = system.state.names
    clone = part.clone()
    clone.sym_name = StringAttr(name)
    clone.attributes["split_from"] = StringAttr(part.part_name)
    for key in _FACTS:
        clone.attributes.pop(key, None)
    block = clone.body.block
    deps = value_deps(block, (q, p))
    _prune(block.last_op.values[0], deps, field, q, p)
    while region_dce(clone.body):
        pass
    facts = analyze_part(clone, (q, p))
    h_deps = facts.deps.get(block.last_op.values[0], frozenset())
    attach(clone, facts, tuple(f for f in (q, p) if f in h_deps))
    return clone


def _fresh(system: ham.SystemOp, base: str) -> str:
    taken = {p.part_name for p in system.parts}
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


class SplitSeparablePart(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ham.PartOp, rewriter: PatternRewriter) -> None:
        system = op.parent_op()
        if not isinstance(system, ham.SystemOp):
            return
        facts = read_facts(op)
        if not facts.separable or len(facts.depends_on) != 2:
            return
        q, p = system.state.names
        name = op.part_name
        new = [split(op, system, _fresh(system, f"{name}_{f}"), f) for f in (q, p)]
        rewriter.insert(new, InsertPoint.after(op))
        h = system.hamiltonian
        h.parts = h.with_part_replaced(name, [x.part_name for x in new])
        rewriter.notify_op_modified(h)
        rewriter.erase(op)


@dataclass(frozen=True)
class HamSplitPartsPass(ModulePass):
    """Split each separable part that reads both q and p into a q part and a p part."""

    name = "ham-split-parts"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(SplitSeparablePart(), apply_recursively=False).rewrite_module(op)
