"""Integrator specifications: the small language of `integrator = ...` and its schemes.

A specification names a method and, optionally, the parts of H it flows:

    leapfrog                      Strang splitting of the automatic partition, V(q) outermost
    leapfrog(A, B, C)             A/2, B/2, C, B/2, A/2 (A outermost)
    yoshida6(A, T + B)            Yoshida's 7-stage order-6 composition of leapfrog(A, T + B)
    compose(order = 6, stages = 7)        a symmetric composition synthesized for the request
    compose(A, B, order = 4, stages = 6)  a two-part splitting method with its own a_i, b_i
    respa(slow = Vpair, fast = T + Vbond, inner = 10)   multiple time steps (nests)
    midpoint, exact

An argument is a part, a sum of parts (`T + Vbond`, flowed together), a method (a sub-scheme)
or, for keywords, a number. The parser is written here rather than in the .ham grammar because
the same text arrives from three places (a simulate block, `--integrator`, the sym-integrator
pass option) and errors must point into each; it keeps the offset of every node.

`build(spec, sides)` turns a specification into stages: `Flow(parts, c)` (the flow of the sum
of `parts` for c * dt) and `Repeat(n, stages)` (a sub-scheme run n times). The caller makes the
IR of them; the coefficients come from `tpc.passes.compositions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class MethodError(ValueError):
    """A bad specification; `offset` is the character of the text it is about."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


# ----------------------------------------------------------------------------- the syntax


@dataclass(frozen=True)
class Term:
    """A sum of parts, flowed together."""

    parts: tuple[str, ...]
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return " + ".join(self.parts)


@dataclass(frozen=True)
class Number:
    value: float
    text: str
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Arg:
    key: str | None
    value: Term | Number | Method
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.key} = {self.value}" if self.key else str(self.value)


@dataclass(frozen=True)
class Method:
    name: str
    args: tuple[Arg, ...] = ()
    offset: int = field(default=0, compare=False)
    called: bool = False  # written with parentheses

    def __str__(self) -> str:
        if not self.called:
            return self.name
        return f"{self.name}({', '.join(str(a) for a in self.args)})"

    @property
    def positional(self) -> list[Arg]:
        return [a for a in self.args if a.key is None]

    def keyword(self, key: str) -> Arg | None:
        return next((a for a in self.args if a.key == key), None)


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|([0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?"
                    r"[0-9]+)?)|(\S))")
MAX_DEPTH = 16  # nested sub-schemes; deeper is a mistake, not a method


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = []
        pos = 0
        while True:
            m = _TOKEN.match(text, pos)
            if m is None:
                break
            kind = "name" if m.group(1) else "number" if m.group(2) else "punct"
            self.tokens.append((kind, m.group(m.lastindex), m.start(m.lastindex)))
            pos = m.end()
        self.tokens.append(("end", "", len(text.rstrip())))
        self.i = 0

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str):
        kind, text, off = self.take()
        if text != value:
            got = "the end" if kind == "end" else repr(text)
            raise MethodError(f"expected '{value}' in the integrator, got {got}", off)

    def method(self, depth: int = 0) -> Method:
        kind, name, off = self.take()
        if kind != "name":
            got = "the end" if kind == "end" else repr(name)
            raise MethodError(f"expected an integrator name, got {got}", off)
        if self.peek()[1] != "(":
            return Method(name, (), off)
        if depth >= MAX_DEPTH:
            raise MethodError(f"integrators nest at most {MAX_DEPTH} deep", off)
        self.take()
        args = []
        if self.peek()[1] != ")":
            while True:
                args.append(self.arg(depth))
                if self.peek()[1] != ",":
                    break
                self.take()
        self.expect(")")
        return Method(name, tuple(args), off, called=True)

    def arg(self, depth: int) -> Arg:
        kind, text, off = self.peek()
        if kind == "name" and self.tokens[self.i + 1][1] == "=":
            self.i += 2
            return Arg(text, self.value(depth), off)
        return Arg(None, self.value(depth), off)

    def value(self, depth: int):
        kind, text, off = self.peek()
        if kind == "number":
            self.take()
            try:
                return Number(float(text.replace("_", "")), text, off)
            except ValueError:
                raise MethodError(f"bad number {text!r}", off) from None
        if kind != "name":
            got = "the end" if kind == "end" else repr(text)
            raise MethodError(f"expected a part, a method or a number, got {got}", off)
        if self.tokens[self.i + 1][1] == "(":
            return self.method(depth + 1)
        names = [self.take()[1]]
        while self.peek()[1] == "+":
            self.take()
            k, name, o = self.take()
            if k != "name":
                raise MethodError("expected a part name after '+'", o)
            names.append(name)
        return Term(tuple(names), off)


def parse(text: str) -> Method:
    """The specification in `text`; MethodError (with an offset into `text`) if malformed."""
    p = _Parser(text)
    m = p.method()
    kind, rest, off = p.peek()
    if kind != "end":
        raise MethodError(f"unexpected {rest!r} after the integrator", off)
    return m


def check_names(m: Method) -> None:
    """Every method named in the specification is one tpc knows."""
    if m.name not in KNOWN:
        raise MethodError(f"unknown integrator '{m.name}' (known: {', '.join(KNOWN)})", m.offset)
    for a in m.args:
        if isinstance(a.value, Method):
            check_names(a.value)


# ----------------------------------------------------------------------------- the schemes


@dataclass(frozen=True)
class Flow:
    parts: tuple[str, ...]
    c: float
    kind: str | None = None  # None: sym-flow-kinds decides from the parts' facts


@dataclass(frozen=True)
class Repeat:
    n: int
    stages: tuple


@dataclass
class Scheme:
    stages: list
    order: int
    exact: bool = False
    notes: list[str] = field(default_factory=list)  # for remarks: coefficients, residuals


@dataclass(frozen=True)
class Sides:
    """What the builder needs to know of H: its parts in order, and the automatic partition
    (q-only parts, p-only parts, parts of both); `groups` maps a name standing for several
    parts (a `let` that sums parts) to them."""

    parts: tuple[str, ...]
    v: tuple[str, ...]
    t: tuple[str, ...]
    mixed: tuple[str, ...]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    magnetic: tuple[str, ...] = ()  # ham-magnetic's parts: |p - e A(q)|^2 / 2m


KNOWN = ("leapfrog", "yoshida4", "yoshida6", "yoshida8", "midpoint", "exact", "compose", "respa",
         "boris", "triple_jump6", "triple_jump8", "discrete_gradient")
DISCRETE_GRADIENT_NOTE = (
    "discrete_gradient: the average vector field method (implicit, order 2, opt-in): H is "
    "conserved to round-off when it is a polynomial (Gauss-Legendre nodes exact for its "
    "degree), to quadrature accuracy otherwise; it gives up symplecticity (no shadow "
    "Hamiltonian, phase-space volume not exactly kept) and the exact conservation of quadratic "
    "invariants such as angular momentum (linear ones, total momentum, stay exact)")


def _scale(stages: Sequence, w: float) -> list:
    return [Flow(s.parts, s.c * w, s.kind) if isinstance(s, Flow) else Repeat(s.n, tuple(_scale(
        s.stages, w))) for s in stages]


def strang(terms: Sequence[tuple[str, ...]]) -> list:
    """leapfrog(t1, ..., tk): t1/2 ... t(k-1)/2, tk, t(k-1)/2 ... t1/2."""
    *outer, inner = terms
    half = [Flow(t, 0.5) for t in outer]
    return half + [Flow(inner, 1.0)] + half[::-1]


def compose_stages(base: Sequence, weights: Sequence[float]) -> list:
    out = []
    for w in weights:
        out += _scale(base, w)
    return out


class Builder:
    """Builds a Scheme from a Method. `sides` describes H; `solver` gives the coefficients of
    the composition methods (tpc.passes.compositions), so this module needs no numerics."""

    def __init__(self, sides: Sides, solver, on_mixed: Callable[[str, int], Exception]):
        self.sides, self.solver, self.on_mixed = sides, solver, on_mixed

    # ---- terms and coverage
    def term(self, t: Term) -> tuple[str, ...]:
        out = []
        for name in t.parts:
            if name in self.sides.groups:
                out += self.sides.groups[name]
            elif name in self.sides.parts:
                out.append(name)
            else:
                known = ", ".join(list(self.sides.parts) + list(self.sides.groups))
                raise MethodError(f"'{name}' is not a part of H (its parts: {known})", t.offset)
        return tuple(out)

    def automatic(self, offset: int) -> list[tuple[str, ...]]:
        s = self.sides
        if s.mixed:
            raise self.on_mixed(s.mixed[0], offset)
        terms = [t for t in (s.v, s.t) if t]
        return terms or [s.parts]

    def split_term(self, parts: tuple[str, ...], offset: int) -> list[tuple[str, ...]]:
        """A term given as a sub-scheme's parts: split into q-side and p-side like the
        automatic partition (V outermost)."""
        v = tuple(p for p in parts if p in self.sides.v)
        t = tuple(p for p in parts if p in self.sides.t)
        mixed = [p for p in parts if p in self.sides.mixed]
        if mixed:
            raise self.on_mixed(mixed[0], offset)
        return [x for x in (v, t) if x] or [parts]

    # ---- methods
    def build(self, m: Method) -> Scheme:
        scheme = self.method(m)
        flows = _flat_parts(scheme.stages)
        if scheme.exact:
            return scheme
        seen: dict[str, int] = {}
        for p in flows:
            seen[p] = seen.get(p, 0) + 1
        missing = [p for p in self.sides.parts if p not in seen]
        if missing:
            raise MethodError(f"the integrator does not flow part @{missing[0]} of H: the "
                              "parts it names must add up to H", m.offset)
        return scheme

    def method(self, m: Method) -> Scheme:
        if m.name not in KNOWN:
            raise MethodError(f"unknown integrator '{m.name}' (known: {', '.join(KNOWN)})",
                              m.offset)
        if m.name in ("compose", "respa", "boris"):
            return getattr(self, m.name)(m)
        if m.name == "discrete_gradient":
            if m.args:
                raise MethodError("'discrete_gradient' flows all of H and takes no arguments",
                                  m.args[0].offset)
            return Scheme([Flow(self.sides.parts, 1.0, "avf")], 2,
                          notes=[DISCRETE_GRADIENT_NOTE])
        if m.name in ("midpoint", "exact"):
            if m.args:
                raise MethodError(f"'{m.name}' flows all of H and takes no arguments",
                                  m.args[0].offset)
            stages = [Flow(self.sides.parts, 1.0, "midpoint" if m.name == "midpoint" else None)]
            return Scheme(stages, 0 if m.name == "exact" else 2, exact=m.name == "exact")
        base, order, notes = self.base(m)
        if m.name == "leapfrog":
            return Scheme(base, 2)
        weights, note = self.solver.named(m.name)
        return Scheme(compose_stages(base, weights), int(m.name[-1]), notes=notes + [note])

    def base(self, m: Method) -> tuple[list, int, list[str]]:
        """The leapfrog over m's positional parts (or the automatic partition)."""
        for a in m.args:
            if a.key is not None:
                raise MethodError(f"'{m.name}' takes parts, not '{a.key} = ...'", a.offset)
        terms = []
        for a in m.args:
            if not isinstance(a.value, Term):
                raise MethodError(f"the arguments of '{m.name}' are parts of H (or sums of "
                                  "parts)", a.offset)
            terms.append(self.term(a.value))
        _check_disjoint(terms, m.args)
        if not terms:
            terms = self.automatic(m.offset)
        return strang(terms), 2, []

    def _int_keyword(self, m: Method, key: str, default: int | None = None) -> int:
        a = m.keyword(key)
        if a is None:
            if default is None:
                raise MethodError(f"'{m.name}' needs {key} = N", m.offset)
            return default
        v = a.value
        if not isinstance(v, Number) or v.value != int(v.value) or not 1 <= v.value <= 10**6:
            raise MethodError(f"{key} must be a whole number from 1 to 1000000", a.offset)
        return int(v.value)

    def compose(self, m: Method) -> Scheme:
        for a in m.args:
            if a.key not in (None, "order", "stages"):
                raise MethodError(f"'compose' takes parts, order and stages, not '{a.key}'",
                                  a.offset)
        order = self._int_keyword(m, "order")
        stages = self._int_keyword(m, "stages")
        pos = m.positional
        try:
            if len(pos) == 2 and all(isinstance(a.value, Term) for a in pos):
                a_part, b_part = (self.term(a.value) for a in pos)
                _check_disjoint([a_part, b_part], pos)
                seq, note = self.solver.splitting(order, stages)
                # seq: [(0 or 1, coefficient), ...]: flows of A (0) and B (1) in order
                flows = [Flow((a_part, b_part)[k], c) for k, c in seq]
                return Scheme(flows, order, notes=[note])
            if len(pos) == 1 and isinstance(pos[0].value, Method):
                sub = self.method(pos[0].value)
                if sub.order != 2:
                    raise MethodError("compose(...) composes a second-order symmetric base "
                                      f"method; '{pos[0].value.name}' has order {sub.order}",
                                      pos[0].offset)
                base = sub.stages
            elif pos:
                raise MethodError("compose takes two parts (a splitting method), one base "
                                  "method such as leapfrog(A, B, C), or none", pos[0].offset)
            else:
                base = strang(self.automatic(m.offset))
            weights, note = self.solver.composition(order, stages)
        except ValueError as e:
            if isinstance(e, MethodError):
                raise
            raise MethodError(f"compose: {e}", m.offset) from None
        return Scheme(compose_stages(base, weights), order, notes=[note])

    def boris(self, m: Method) -> Scheme:
        """The Boris pusher: one stage flowing the magnetic kinetic part (first) and the
        potential parts (q alone) together."""
        if m.args:
            raise MethodError("'boris' takes no arguments: it flows all of H", m.args[0].offset)
        s = self.sides
        if len(s.magnetic) != 1:
            raise MethodError(
                "integrator 'boris' needs H = |p - e A(q)|^2 / (2 m) + e phi(q): one part of the "
                "form dot(p - X, p - X) / (2 m) with X a vector of q (ham-magnetic finds "
                f"{len(s.magnetic)}), the others of q alone", m.offset)
        others = [p for p in s.parts if p != s.magnetic[0]]
        bad = [p for p in others if p not in s.v]
        if bad:
            raise MethodError(f"integrator 'boris': part @{bad[0]} reads p; besides the magnetic "
                              "part, H may only have parts of q alone (e phi(q))", m.offset)
        return Scheme([Flow((s.magnetic[0], *others), 1.0, "boris")], 2)

    def respa(self, m: Method) -> Scheme:
        for a in m.args:
            if a.key not in ("slow", "fast", "inner"):
                raise MethodError("'respa' takes slow = PARTS, fast = PARTS or a method, "
                                  "inner = N", a.offset)
        slow, fast = m.keyword("slow"), m.keyword("fast")
        if slow is None or fast is None:
            raise MethodError("'respa' needs slow = ... and fast = ...", m.offset)
        inner = self._int_keyword(m, "inner")
        if not isinstance(slow.value, Term):
            raise MethodError("slow = ... is the part (or sum of parts) flowed at the outer "
                              "step", slow.offset)
        slow_parts = self.term(slow.value)
        if isinstance(fast.value, Method):
            sub = self.method(fast.value)
            fast_stages, fast_order = sub.stages, sub.order
        elif isinstance(fast.value, Term):
            fast_parts = self.term(fast.value)
            _check_disjoint([slow_parts, fast_parts], [slow, fast])
            fast_stages, fast_order = strang(self.split_term(fast_parts, fast.offset)), 2
        else:
            raise MethodError("fast = ... is parts of H or a method", fast.offset)
        if set(slow_parts) & set(_flat_parts(fast_stages)):
            raise MethodError("slow and fast must not share a part", fast.offset)
        inner_stages = tuple(_scale(fast_stages, 1.0 / inner))
        stages = [Flow(slow_parts, 0.5), Repeat(inner, inner_stages), Flow(slow_parts, 0.5)]
        return Scheme(stages, min(2, fast_order) if fast_order else 2)


def _flat_parts(stages) -> list[str]:
    out: list[str] = []
    for s in stages:
        if isinstance(s, Flow):
            out += [p for p in s.parts if p not in out]
        else:
            out += [p for p in _flat_parts(s.stages) if p not in out]
    return out


def _check_disjoint(terms: Sequence[tuple[str, ...]], args: Sequence[Arg]) -> None:
    seen: set[str] = set()
    for t, a in zip(terms, args):
        both = seen & set(t)
        if both:
            raise MethodError(f"part @{sorted(both)[0]} is named twice: each part of H "
                              "belongs to one argument", a.offset)
        seen |= set(t)
