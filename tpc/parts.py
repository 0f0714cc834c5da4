"""H's parts, read off the AST: the terms of its top-level sum, named or grouped.

A term that is a `let` name is a part named by it; a `let` whose body is itself a sum of `let`
names stands for those parts (`let Hfast = T + Vbond` gives the parts T and Vbond). The other
terms are grouped by the state fields they depend on (through `let`s too), one part per group:
`V` for terms of q alone (constants join it), `T` for terms of p alone, `W` for terms of both,
renamed with a numeric suffix when the name is taken. Parts keep the order in which they first
appear in H; a part's terms keep their signs and their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tpc.diagnostics import Loc
from tpc.syntax import BinOp, Name, Neg, Node, System

AUTO_NAMES = {"q": "V", "p": "T", "qp": "W"}


@dataclass
class Term:
    sign: int  # +1 or -1
    node: Node


@dataclass
class Part:
    name: str
    loc: Loc
    terms: list[Term] = field(default_factory=list)
    named: bool = False  # named by a let (False: an automatic group)


def signed_terms(node: Node, sign: int = 1) -> list[Term]:
    """The terms of a sum, left to right, looking through + , - and unary minus."""
    out: list[Term] = []
    stack: list[tuple[Node, int]] = [(node, sign)]
    while stack:
        n, s = stack.pop()
        if isinstance(n, BinOp) and n.op in "+-":
            stack.append((n.rhs, s if n.op == "+" else -s))
            stack.append((n.lhs, s))
        elif isinstance(n, Neg):
            stack.append((n.operand, -s))
        else:
            out.append(Term(s, n))
    return out


class _Dependence:
    """Which state fields an expression reads, through lets (memoized, cycles cut)."""

    def __init__(self, system: System):
        st = system.states[0]
        self.state = {st.q.name: "q", st.p.name: "p"}
        self.lets = {d.name: d.expr for d in system.lets}
        self.memo: dict[str, frozenset[str]] = {}

    def of(self, node: Node) -> frozenset[str]:
        found: set[str] = set()
        stack: list[object] = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, list):
                stack.extend(n)
                continue
            if not isinstance(n, Node):
                continue
            name = getattr(n, "id", None) if isinstance(n, Name) else getattr(n, "array", None)
            if name in self.state:
                found.add(self.state[name])
            elif name in self.lets:
                found |= self.let(name)
            for child in vars(n).values():
                if isinstance(child, Node | list):
                    stack.append(child)
        return frozenset(found)

    def let(self, name: str) -> frozenset[str]:
        if name not in self.memo:
            self.memo[name] = frozenset()  # a cycle is reported by irgen; cut it here
            self.memo[name] = self.of(self.lets[name])
        return self.memo[name]


def partition(system: System, h: Node) -> list[Part]:
    """H's parts (see the module docstring)."""
    lets = {d.name: d for d in system.lets}
    deps = _Dependence(system)
    parts: dict[str, Part] = {}
    groups: dict[str, str] = {}  # dependence key -> automatic part name
    taken = {d.name for d in system.lets} | {p.name for p in system.params}
    taken |= {x.name for st in system.states for x in (st.q, st.p)}
    taken |= {a.name for a in system.inputs}

    def named(term: Term, seen: tuple[str, ...] = ()) -> list[tuple[str, Term]]:
        n = term.node
        if not (isinstance(n, Name) and n.id in lets) or n.id in seen:
            return []
        inner = signed_terms(lets[n.id].expr, term.sign)
        if all(isinstance(t.node, Name) and t.node.id in lets for t in inner) and len(inner) > 1:
            out: list[tuple[str, Term]] = []
            for t in inner:
                out += named(t, (*seen, n.id)) or [(t.node.id, t)]  # type: ignore[union-attr]
            return out
        return [(n.id, term)]

    def auto_name(key: str) -> str:
        if key not in groups:
            base = AUTO_NAMES[key]
            name, k = base, 1
            while name in taken or name in parts:
                name, k = f"{base}_{k}", k + 1
            groups[key] = name
        return groups[key]

    for term in signed_terms(h):
        pieces = named(term)
        if pieces:
            for name, t in pieces:
                part = parts.setdefault(name, Part(name, lets[name].loc, named=True))
                part.terms.append(t)
            continue
        d = deps.of(term.node)
        key = "qp" if len(d) == 2 else ("p" if d == {"p"} else "q")
        name = auto_name(key)
        parts.setdefault(name, Part(name, term.node.loc)).terms.append(term)
    return list(parts.values())


def groups(system: System, parts: list[Part]) -> dict[str, list[str]]:
    """The `let`s that stand for several parts (`let Hfast = T + Vbond`), each with the parts
    it stands for, so an integrator can name them. Iterative with a memo: a chain of 1500
    lets must cost linear time and no recursion."""
    names = {p.name for p in parts}
    lets = {d.name: d for d in system.lets}
    # a let is a candidate when its body is a sum of two or more names
    refs: dict[str, list[str]] = {}
    for name, d in lets.items():
        terms = signed_terms(d.expr)
        if len(terms) > 1 and all(isinstance(t.node, Name) for t in terms):
            refs[name] = [t.node.id for t in terms]  # type: ignore[union-attr]
    memo: dict[str, list[str] | None] = {n: [n] for n in names}
    for root in refs:
        stack = [root]
        while stack:
            name = stack[-1]
            if name in memo:
                stack.pop()
                continue
            if name not in refs:
                memo[name] = None
                stack.pop()
                continue
            todo = [r for r in refs[name] if r not in memo and r not in stack]
            if todo:
                stack.extend(todo)
                continue
            subs = [memo.get(r) for r in refs[name]]
            memo[name] = None if any(x is None for x in subs) else [n for x in subs for n in x]
            stack.pop()
    return {n: v for n, v in memo.items() if n not in names and n in refs and v}
