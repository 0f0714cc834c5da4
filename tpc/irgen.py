"""The only bridge from the .ham AST to IR: checks names and shapes, emits a `ham.system`.

Array expressions are kept lazy: a value of shape [N, 3] is a function from particle indices to a
`vector<3xf64>`, and it is only emitted inside the loop of the reduction that consumes it. So
`sum(p * p)` becomes one `ham.sum` over N of a vector product, and `sum(i < j: ...)` becomes a
`ham.pair_sum` whose body loads rows `q[i]` and `q[j]`. Scalars are emitted eagerly where they
appear; constants, params and sizes are hoisted to the top of the energy region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    FloatAttr,
    IndexType,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    UnitAttr,
    VectorType,
    f64,
    i64,
)
from xdsl.ir import Block, Operation, Region, SSAValue

from tpc.diagnostics import Loc, TpcError
from tpc.dialects import ham
from tpc.parts import Part, groups, partition
from tpc.periodic import periodic
from tpc.syntax import (
    BinOp,
    Call,
    Index,
    Name,
    Neg,
    Node,
    Num,
    Program,
    Reduction,
    System,
)
from tpc.units import ALWAYS, constants, unit_names

Dim = int | str
Form = tuple[str | None, int]  # size symbol (or None for a constant) plus an offset

UNARY_MATH: dict[str, type[Operation]] = {
    "sin": math.SinOp, "cos": math.CosOp, "tan": math.TanOp, "exp": math.ExpOp,
    "log": math.LogOp, "sqrt": math.SqrtOp, "abs": math.AbsFOp, "sinh": math.SinhOp,
    "cosh": math.CoshOp, "tanh": math.TanhOp, "erf": math.ErfOp, "erfc": ham.ErfcOp,
}
VECTOR_FUNCS = {"norm": 1, "dot": 2, "cross": 2}


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def fmt_shape(shape: tuple[Dim, ...]) -> str:
    return "a scalar" if not shape else "shape [" + ", ".join(map(str, shape)) + "]"


def outer_dims(shape: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """The dims a value is looped over; a fixed last dim is carried as a vector instead."""
    return shape[:-1] if shape and isinstance(shape[-1], int) else shape


@dataclass
class Val:
    """An expression's value: `at(indices of the outer dims)` emits and returns an SSA value."""

    shape: tuple[Dim, ...]
    at: Callable[[list[SSAValue]], SSAValue]
    field: str | None = None  # set for a whole state/input array, so indexing can load directly
    fixed_indices: tuple[SSAValue, ...] = ()


def to_loc(loc: Loc) -> FileLineColLoc:
    return FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line), IntAttr(loc.col))


class IRGen:
    def __init__(self, program: Program):
        self.program = program
        self.system: System = program.system
        self.constants = constants(program)  # pi, and G with units (tpc.units)
        self.block: Block | None = None
        self.hoisted: list[Operation] = []
        self.cache: dict[tuple, SSAValue] = {}
        self.loop_vars: dict[str, SSAValue] = {}
        self.lets: dict[str, Val] = {}
        self.let_decls = {d.name: d for d in self.system.lets}
        self.in_progress: list[str] = []
        # Affine bounds of the summation indices, as (size symbol or None, offset) pairs, so
        # every q[i + c] is checked against its dimension before it can read out of bounds.
        self.ranges: dict[str, tuple[Form, Form]] = {}
        self.min_sizes: dict[str, tuple[int, Loc]] = {}
        self.used_lets: set[str] = set()

    # ------------------------------------------------------------ emission helpers
    def emit(self, op: Operation, loc: Loc | None = None) -> SSAValue:
        if loc is not None:
            op.location = to_loc(loc)
        assert self.block is not None
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def hoist(self, key: tuple, make: Callable[[], Operation]) -> SSAValue:
        if key not in self.cache:
            op = make()
            self.hoisted.append(op)
            self.cache[key] = op.results[0]
        return self.cache[key]

    def fconst(self, value: float) -> SSAValue:
        return self.hoist(("f", value), lambda: arith.ConstantOp(FloatAttr(value, f64)))

    def iconst(self, value: int) -> SSAValue:
        return self.hoist(
            ("i", value), lambda: arith.ConstantOp(IntegerAttr(value, IndexType()))
        )

    def dim(self, d: Dim) -> SSAValue:
        if isinstance(d, int):
            return self.iconst(d)
        return self.hoist(("dim", d), lambda: ham.DimOp(d))

    # ----------------------------------------------------------------- declarations
    def names(self) -> dict[str, tuple[str, Loc]]:
        """Every declared name with its kind; reports redefinitions."""
        seen: dict[str, tuple[str, Loc]] = {}

        def declare(name: str, kind: str, loc: Loc) -> None:
            check_not_builtin(name, kind, loc)
            if name in seen:
                prev = seen[name][1]
                raise TpcError(
                    f"redefinition of '{name}' (first declared as {_a(seen[name][0])} at {prev})",
                    loc,
                )
            seen[name] = (kind, loc)

        sys = self.system
        for p in sys.params:
            declare(p.name, "param", p.loc)
        for b in sys.boxes:
            declare(b.name, "box", b.loc)
        for c in sys.cutoffs:
            declare(c.name, "cutoff", c.loc)
        for st in sys.states:
            declare(st.q.name, "state", st.q.loc)
            declare(st.p.name, "state", st.p.loc)
        for a in sys.inputs:
            declare(a.name, "input", a.loc)
        for let in sys.lets:
            declare(let.name, "let", let.loc)
        for obs in sys.observes:
            check_output_name(obs.name, obs.loc)
            declare(obs.name, "observable", obs.loc)
        for arr in [*sys.inputs, *(x for st in sys.states for x in (st.q, st.p))]:
            for d, dloc in zip(arr.shape, arr.dim_locs):
                if isinstance(d, int) and d <= 0:
                    raise TpcError(f"dimension of '{arr.name}' must be positive, got {d}", dloc)
                if isinstance(d, str):
                    if d in seen and seen[d][0] != "size":
                        raise TpcError(f"'{d}' is {_a(seen[d][0])}, not a size", dloc)
                    check_not_builtin(d, "size", dloc)
                    seen.setdefault(d, ("size", dloc))
        return seen

    def check_declarations(self) -> None:
        sys = self.system
        if not sys.states:
            raise TpcError(f"system '{sys.name}' has no 'state q[...], p[...]' declaration", sys.loc)
        if len(sys.states) > 1:
            raise TpcError("a system has exactly one state declaration", sys.states[1].loc)
        st = sys.states[0]
        if st.q.shape != st.p.shape:
            raise TpcError(
                f"'{st.p.name}' must have the shape of '{st.q.name}' "
                f"({fmt_shape(tuple(st.q.shape))}), got {fmt_shape(tuple(st.p.shape))}",
                st.p.loc,
            )
        if not sys.hamiltonians:
            raise TpcError(f"system '{sys.name}' defines no 'H = ...'", sys.loc)
        if len(sys.hamiltonians) > 1:
            raise TpcError(
                f"H is defined twice (first at {sys.hamiltonians[0].loc})", sys.hamiltonians[1].loc
            )
        check_state_sizes(st.q)
        self.periodic = periodic(sys)

    # ------------------------------------------------------------------ generation
    def generate(self) -> ModuleOp:
        self.check_declarations()
        self.kinds = self.names()
        if unit_names(self.program) is not None:
            for name, (kind, loc) in self.kinds.items():
                if name in self.constants and name not in ALWAYS:
                    raise TpcError(f"{kind} '{name}' would hide the constant {name} of the "
                                   "simulate block's units; remove it or the units", loc)
        sys = self.system
        st = sys.states[0]
        self.fields = {st.q.name: tuple(st.q.shape), st.p.name: tuple(st.p.shape)}
        self.fields |= {a.name: tuple(a.shape) for a in sys.inputs}
        self.params = {p.name for p in sys.params}

        h_decl = sys.hamiltonians[0]
        parts = partition(sys, h_decl.expr)
        part_ops = [self.part(part) for part in parts]
        observables = [self.observable(o) for o in sys.observes]
        self.check_unused_lets()

        def located(op: Operation, loc: Loc) -> Operation:
            op.location = to_loc(loc)
            return op

        decls: list[Operation] = [located(ham.ParamOp(p.name, p.value), p.loc) for p in sys.params]
        sizes = [(n, dloc) for n, (k, dloc) in self.kinds.items() if k == "size"]
        decls += [located(ham.SizeOp(s), dloc) for s, dloc in sizes]
        decls += [located(ham.InputOp(a.name, a.shape), a.loc) for a in sys.inputs]
        decls.append(located(ham.StateOp(st.q.name, st.p.name, st.q.shape), st.loc))
        decls += part_ops
        h_op = ham.HamiltonianOp([p.part_name for p in part_ops])
        named_groups = groups(sys, parts)
        if named_groups:
            h_op.attributes["groups"] = DictionaryAttr({
                k: ArrayAttr([SymbolRefAttr(n) for n in v]) for k, v in named_groups.items()})
        decls.append(located(h_op, h_decl.loc))
        decls += observables
        pbc = self.periodic
        system = ham.SystemOp(sys.name, decls, pbc.box if pbc else None)
        system.location = to_loc(sys.loc)
        if pbc is not None:
            if pbc.cutoff is not None:
                system.attributes["cutoff"] = FloatAttr(pbc.cutoff, f64)
                system.attributes["cutoff_shift"] = StringAttr(pbc.shift)
            system.attributes["ewald_tolerance"] = FloatAttr(pbc.ewald_tolerance, f64)
        if self.min_sizes:
            system.attributes["min_sizes"] = DictionaryAttr(
                {k: IntegerAttr(v, i64) for k, (v, _) in sorted(self.min_sizes.items())}
            )
        module = ModuleOp([system])
        module.verify()
        return module

    def part(self, part: Part) -> ham.PartOp:
        """One ham.part: its terms, signed and summed in order, in a region of their own."""
        body = Block()
        self.block = self.top = body
        self.hoisted, self.cache, self.lets = [], {}, {}
        total: SSAValue | None = None
        for term in part.terms:
            val = self.expr(term.node)
            if val.shape:
                raise TpcError(
                    f"H must be a scalar, but it has {fmt_shape(val.shape)}", term.node.loc
                )
            v = val.at([])
            if total is None:
                total = v if term.sign > 0 else self.emit(arith.NegfOp(v), term.node.loc)
            else:
                op = arith.AddfOp(total, v) if term.sign > 0 else arith.SubfOp(total, v)
                total = self.emit(op, term.node.loc)
        self.emit(ham.YieldOp(total), part.loc)
        for op in reversed(self.hoisted):
            body.insert_op_before(op, body.first_op) if body.first_op else body.add_op(op)
        self.used_lets |= set(self.lets)
        op = ham.PartOp(part.name, Region(body))
        op.location = to_loc(part.loc)
        if part.named:
            op.attributes["let"] = UnitAttr()
        return op

    def observable(self, obs) -> ham.MonitorOp:
        """`observe NAME = EXPR`: a ham.monitor region yielding the expression's value."""
        body = Block()
        self.block = self.top = body
        self.hoisted, self.cache, self.lets = [], {}, {}
        val = self.expr(obs.expr)
        if val.shape:
            raise TpcError(f"observable '{obs.name}' must be a scalar, but it has "
                           f"{fmt_shape(val.shape)}; reduce it with sum(...), dot or norm",
                           obs.expr.loc)
        self.emit(ham.YieldOp(val.at([])), obs.loc)
        for op in reversed(self.hoisted):
            body.insert_op_before(op, body.first_op) if body.first_op else body.add_op(op)
        self.used_lets |= set(self.lets)
        op = ham.MonitorOp(obs.name, Region(body), "observable")
        op.location = to_loc(obs.loc)
        return op

    def check_unused_lets(self) -> None:
        """Report errors in lets that H never uses, generating them into a scratch block."""
        unused = [d for d in self.system.lets if d.name not in self.used_lets]
        if not unused:
            return
        checker = IRGen(self.program)
        checker.kinds, checker.fields, checker.params = self.kinds, self.fields, self.params
        checker.block = checker.top = Block()
        for d in unused:
            checker.let(d.name, d.loc)

    # ----------------------------------------------------------------- expressions
    def expr(self, node: Node) -> Val:
        method = getattr(self, "expr_" + type(node).__name__)
        return method(node)

    def scalar(self, v: SSAValue) -> Val:
        return Val((), lambda idx: v)

    def eager(self, shape: tuple[Dim, ...], at: Callable[[list[SSAValue]], SSAValue]) -> Val:
        """Values with no outer dims are emitted now, once; arrays stay lazy."""
        if outer_dims(shape):
            return Val(shape, at)
        v = at([])
        return Val(shape, lambda idx: v)

    def expr_Num(self, node: Num) -> Val:
        return self.scalar(self.fconst(node.value))

    def expr_Name(self, node: Name) -> Val:
        name = node.id
        if name in self.loop_vars:
            raise TpcError(f"summation index '{name}' can only be used inside [ ]", node.loc)
        kind = self.kinds.get(name, (None,))[0]
        if kind == "param":
            return self.scalar(self.hoist(("param", name), lambda: ham.ParamRefOp(name)))
        if kind in ("state", "input"):
            return self.field_val(name, ())
        if kind == "let":
            return self.let(name, node.loc)
        if kind == "size":
            raise TpcError(f"size '{name}' can only be used in shapes, ranges and indices", node.loc)
        if kind == "box":
            box = self.system.boxes[0]
            if len(box.lengths) > 1:
                raise TpcError(f"'{name}' is an orthorhombic box with {len(box.lengths)} lengths, "
                               "not a number", node.loc)
            return self.scalar(self.fconst(box.lengths[0]))
        if kind == "cutoff":
            return self.scalar(self.fconst(self.system.cutoffs[0].value))
        if name in self.constants:  # pi, and G with units (tpc.units)
            return self.scalar(self.fconst(self.constants[name]))
        raise TpcError(f"unknown name '{name}'", node.loc)

    def let(self, name: str, use: Loc) -> Val:
        if name in self.lets:
            return self.lets[name]
        if name in self.in_progress:
            cycle = " -> ".join(self.in_progress[self.in_progress.index(name):] + [name])
            raise TpcError(f"'let' definitions form a cycle: {cycle}", self.let_decls[name].loc)
        self.in_progress.append(name)
        # Scalar lets are computed once at the top of H, not inside the loop that first uses them.
        saved, self.block = self.block, self.top_block()
        saved_vars, self.loop_vars = self.loop_vars, {}
        try:
            val = self.expr(self.let_decls[name].expr)
        finally:
            self.block, self.loop_vars = saved, saved_vars
            self.in_progress.pop()
        self.lets[name] = val
        return val

    def top_block(self) -> Block:
        return self.top

    def field_val(self, name: str, fixed: tuple[SSAValue, ...]) -> Val:
        shape = self.fields[name][len(fixed):]

        def at(idx: list[SSAValue]) -> SSAValue:
            indices = [*fixed, *idx]
            rest = self.fields[name][len(indices):]
            return self.emit(ham.LoadOp(name, indices, ham.value_type(rest)))

        return Val(shape, at, field=name, fixed_indices=fixed)

    def expr_Index(self, node: Index) -> Val:
        kind = self.kinds.get(node.array, (None,))[0]
        if kind is None:
            if node.array in self.loop_vars:
                raise TpcError(f"summation index '{node.array}' cannot be indexed", node.loc)
            raise TpcError(f"unknown name '{node.array}'", node.loc)
        base = self.expr(Name(node.loc, node.array))
        if len(node.indices) > len(base.shape):
            raise TpcError(
                f"too many indices for '{node.array}' ({fmt_shape(base.shape)}): "
                f"{len(node.indices)} given",
                node.loc,
            )
        idx = [self.index(e, base.shape[k], node.array) for k, e in enumerate(node.indices)]
        if base.field is not None:
            return self.field_val(base.field, base.fixed_indices + tuple(idx))
        n_outer = len(outer_dims(base.shape))
        if len(idx) <= n_outer:
            rest = base.shape[len(idx):]
            return self.eager(rest, lambda more: base.at([*idx, *more]))
        # Indexing into the vector part of a computed array: the position must be a constant.
        pos_node = node.indices[-1]
        if not (isinstance(pos_node, Num) and pos_node.is_int):
            raise TpcError("a component of a computed vector needs a constant index", pos_node.loc)
        row = base.at(idx[:-1])
        return self.scalar(self.emit(ham.ExtractOp(row, int(pos_node.value)), node.loc))

    def form(self, e: Node) -> Form:
        """The affine form of an index or range bound (validity is checked by `index`)."""
        if isinstance(e, Num):
            return (None, int(e.value))
        if isinstance(e, Name):
            return (e.id, 0)
        if isinstance(e, BinOp) and isinstance(e.rhs, Num):
            sym, off = self.form(e.lhs)
            return (sym, off + int(e.rhs.value) * (1 if e.op == "+" else -1))
        return (None, 0)

    def require_le(self, a: Form, b: Form, loc: Loc, what: str) -> None:
        """Prove a <= b, or record the smallest size that makes it true at run time."""
        (sa, oa), (sb, ob) = a, b
        if sa == sb:
            if oa > ob:
                raise TpcError(what, loc)
        elif sa is None:
            need = oa - ob
            if need > self.min_sizes.get(sb, (1, loc))[0]:  # sizes are at least 1 anyway
                self.min_sizes[sb] = (need, loc)
        else:
            raise TpcError(what + " (cannot be proven for every size)", loc)

    def check_bounds(self, e: Node, dim: Dim, array: str) -> None:
        sym, off = self.form(e)
        if sym in self.ranges:
            (ls, lo), (hs, hi) = self.ranges[sym]
            low, high = (ls, lo + off), (hs, hi + off - 1)
        else:
            low = high = (sym, off)
        limit: Form = (None, dim - 1) if isinstance(dim, int) else (dim, -1)
        self.require_le((None, 0), low, e.loc, f"index into '{array}' can be negative")
        self.require_le(high, limit, e.loc, f"index into '{array}' can run past its end ({dim})")

    def index(self, e: Node, dim: Dim, array: str, whole: bool = True) -> SSAValue:
        """An index: integer, summation index, size symbol, or one of those +/- an integer."""
        if whole and dim != "?" and not isinstance(e, Num) and not (
            isinstance(e, Name) and e.id == dim
        ):
            self.check_index_form(e, array)
            self.check_bounds(e, dim, array)
        if isinstance(e, Num):
            if not e.is_int:
                raise TpcError(f"index into '{array}' must be an integer, got {e.value}", e.loc)
            n = int(e.value)
            if isinstance(dim, int) and not 0 <= n < dim:
                raise TpcError(
                    f"index {n} out of range for '{array}' (dimension of size {dim})", e.loc
                )
            if isinstance(dim, str) and dim != "?":
                self.require_le((None, n), (dim, -1), e.loc, f"index {n} into '{array}'")
            return self.iconst(n)
        if isinstance(e, Neg) and isinstance(e.operand, Num):
            raise TpcError(f"negative index into '{array}'", e.loc)
        if isinstance(e, Name):
            if e.id in self.loop_vars:
                return self.loop_vars[e.id]
            if self.kinds.get(e.id, (None,))[0] == "size":
                if whole and e.id == dim:
                    raise TpcError(
                        f"index {e.id} out of range for '{array}' (dimension of size {dim}; "
                        f"the last index is {e.id}-1)",
                        e.loc,
                    )
                return self.dim(e.id)
            if e.id in self.kinds:
                raise TpcError(f"'{e.id}' is not an index ({_a(self.kinds[e.id][0])})", e.loc)
            raise TpcError(f"unknown index '{e.id}'", e.loc)
        if isinstance(e, BinOp) and e.op in "+-" and isinstance(e.rhs, Num) and e.rhs.is_int:
            base = self.index(e.lhs, dim, array, whole=False)
            off = self.iconst(int(e.rhs.value))
            op = arith.AddiOp(base, off) if e.op == "+" else arith.SubiOp(base, off)
            return self.emit(op, e.loc)
        raise TpcError(
            f"index into '{array}' must be an integer, a summation index, or one of them +/- "
            "an integer",
            e.loc,
        )

    def check_index_form(self, e: Node, array: str) -> None:
        base = e.lhs if isinstance(e, BinOp) and isinstance(e.rhs, Num) else e
        if isinstance(base, Name) and (
            base.id in self.loop_vars or self.kinds.get(base.id, (None,))[0] == "size"
        ):
            return
        self.index(e, "?", array, whole=False)  # reports the malformed index

    # --------------------------------------------------------------- arithmetic
    def as_type(self, v: SSAValue, target: tuple[Dim, ...]) -> SSAValue:
        """Broadcast a scalar SSA value to the vector type of `target`'s trailing fixed dim."""
        want = ham.value_type(target[len(outer_dims(target)):])
        if v.type == want:
            return v
        return self.emit(ham.BroadcastOp(v, want))  # type: ignore[arg-type]

    def elementwise(
        self, args: list[Val], make: Callable[..., Operation], loc: Loc, what: str
    ) -> Val:
        shapes = [a.shape for a in args if a.shape]
        shape = shapes[0] if shapes else ()
        for s in shapes[1:]:
            if s != shape:
                raise TpcError(
                    f"shape mismatch in {what}: {fmt_shape(shape)} and {fmt_shape(s)}", loc
                )
        def at(idx: list[SSAValue]) -> SSAValue:
            vals = [self.as_type(a.at(idx if a.shape else []), shape) for a in args]
            return self.emit(make(*vals), loc)

        return self.eager(shape, at)

    def expr_BinOp(self, node: BinOp) -> Val:
        if node.op == "^":
            return self.power(node)
        if node.op == "/" and is_zero_literal(node.rhs):
            raise TpcError("division by zero", node.rhs.loc)
        lhs, rhs = self.expr(node.lhs), self.expr(node.rhs)
        make = {"+": arith.AddfOp, "-": arith.SubfOp, "*": arith.MulfOp, "/": arith.DivfOp}
        return self.elementwise([lhs, rhs], make[node.op], node.loc, f"'{node.op}'")

    def power(self, node: BinOp) -> Val:
        base = self.expr(node.lhs)
        exp_node = node.rhs
        sign = 1
        while isinstance(exp_node, Neg):
            exp_node, sign = exp_node.operand, -sign
        if isinstance(exp_node, Num) and exp_node.is_int:
            n = sign * int(exp_node.value)
            if n == 0:  # x^0 is 1, also where x is 0: its derivative n*x^(n-1) would be 0/0
                one = self.fconst(1.0)
                return self.eager(base.shape, lambda idx: self.as_type(one, base.shape))
            return self.elementwise([base], lambda b: ham.IPowOp(b, n), node.loc, "'^'")
        exponent = self.expr(node.rhs)
        if exponent.shape:
            raise TpcError(f"exponent must be a scalar, got {fmt_shape(exponent.shape)}", node.loc)
        return self.elementwise([base, exponent], math.PowFOp, node.loc, "'^'")

    def expr_Neg(self, node: Neg) -> Val:
        return self.elementwise([self.expr(node.operand)], arith.NegfOp, node.loc, "'-'")

    def expr_Call(self, node: Call) -> Val:
        fn = node.fn
        if fn in UNARY_MATH:
            self.arity(node, 1)
            return self.elementwise([self.expr(node.args[0])], UNARY_MATH[fn], node.loc, fn)
        if fn in VECTOR_FUNCS:
            self.arity(node, VECTOR_FUNCS[fn])
            args = [self.expr(a) for a in node.args]
            return self.vector_func(fn, args, node)
        known = ", ".join(sorted([*UNARY_MATH, *VECTOR_FUNCS, "sum"]))
        raise TpcError(f"unknown function '{fn}' (known: {known})", node.loc)

    def arity(self, node: Call, n: int) -> None:
        if len(node.args) != n:
            plural = "s" if n > 1 else ""
            raise TpcError(
                f"'{node.fn}' takes {n} argument{plural}, got {len(node.args)}", node.loc
            )

    def vector_func(self, fn: str, args: list[Val], node: Call) -> Val:
        shape = args[0].shape
        for a in args[1:]:
            if a.shape != shape:
                raise TpcError(
                    f"shape mismatch in {fn}: {fmt_shape(shape)} and {fmt_shape(a.shape)}",
                    node.loc,
                )
        if not shape or not isinstance(shape[-1], int):
            raise TpcError(
                f"'{fn}' needs vectors with a fixed-length last dimension, got {fmt_shape(shape)}",
                node.loc,
            )
        if fn != "cross" and len(shape) > 1 and isinstance(shape[-2], int):
            raise TpcError(
                f"'{fn}' of {fmt_shape(shape)} would give a fixed-length vector of results, "
                f"which is not supported; apply it to one row at a time ({fn}(x[k]))",
                node.loc,
            )
        if fn == "cross":
            if shape[-1] != 3:
                raise TpcError(f"'cross' needs 3-vectors, got {fmt_shape(shape)}", node.loc)
            return self.eager(
                shape, lambda idx: self.emit(ham.CrossOp(*[a.at(idx) for a in args]), node.loc)
            )
        make = {"norm": ham.NormOp, "dot": ham.DotOp}[fn]
        return self.eager(
            shape[:-1], lambda idx: self.emit(make(*[a.at(idx) for a in args]), node.loc)
        )

    # ----------------------------------------------------------------- reductions
    def expr_Reduction(self, node: Reduction) -> Val:
        if node.kind == "all":
            return self.full_sum(self.expr(node.body), node.loc)
        for v in node.vars:
            if v in self.kinds:
                raise TpcError(f"summation index '{v}' shadows the {self.kinds[v][0]} '{v}'", node.loc)
            if v in self.loop_vars:
                raise TpcError(f"summation index '{v}' is already in use", node.loc)
        if len(node.vars) == 2 and node.vars[0] == node.vars[1]:
            raise TpcError("a pair sum needs two different indices", node.loc)
        if node.kind == "range":
            lo = self.index(node.lower, "?", "range")
            hi = self.index(node.upper, "?", "range")
            bounds = (self.form(node.lower), self.form(node.upper))
        else:
            lo, hi, bounds = self.infer_range(node)
        for v in node.vars:
            self.ranges[v] = bounds
        block = Block(arg_types=[IndexType()] * len(node.vars))
        saved = self.block
        self.block = block
        self.loop_vars |= dict(zip(node.vars, block.args))
        try:
            body = self.expr(node.body)
            if outer_dims(body.shape):
                raise TpcError(
                    f"the summand must be a scalar or a vector, got {fmt_shape(body.shape)}; "
                    "index it or wrap it in sum(...)",
                    node.body.loc,
                )
            value = body.at([])
            self.emit(ham.YieldOp(value))
        finally:
            for v in node.vars:
                self.loop_vars.pop(v, None)
                self.ranges.pop(v, None)
            self.block = saved
        region = Region(block)
        if node.kind in ("lt", "ne"):
            op = ham.PairSumOp(lo, hi, node.kind, region, value.type)
        else:
            op = ham.SumOp(lo, hi, region, value.type)
        return self.scalar_or_vector(self.emit(op, node.loc), body.shape)

    def scalar_or_vector(self, v: SSAValue, shape: tuple[Dim, ...]) -> Val:
        return Val(shape, lambda idx: v)

    def infer_range(self, node: Reduction) -> tuple[SSAValue, SSAValue, tuple[Form, Form]]:
        """The range of i from its uses: every q[i + c] over a dim D needs 0 <= i + c < D."""
        uses: list[tuple[Dim, int, Loc]] = []
        for var in node.vars:
            uses += self.index_uses(node.body, var)
        if not uses:
            raise TpcError(
                f"cannot infer the range of '{node.vars[0]}': it indexes no array "
                f"(write sum({node.vars[0]} in 0..N: ...))",
                node.loc,
            )
        dims = {d for d, _, _ in uses}
        if len(dims) > 1:
            shown = ", ".join(sorted(map(str, dims)))
            raise TpcError(f"'{node.vars[0]}' indexes dimensions of different sizes ({shown})", node.loc)
        dim = dims.pop()
        offsets = [c for _, c, _ in uses]
        if len(node.vars) == 2 and any(offsets):
            raise TpcError("pair-sum indices cannot carry offsets", node.loc)
        start = max(0, -min(offsets))
        lo = self.iconst(start)
        top = max(offsets)
        bounds = ((None, start), (None, dim - top) if isinstance(dim, int) else (dim, -top))
        if top == 0:
            return lo, self.dim(dim), bounds
        if isinstance(dim, int):
            return lo, self.iconst(dim - top), bounds
        hi = self.hoist(("dimoff", dim, top), lambda: arith.SubiOp(self.dim(dim), self.iconst(top)))
        return lo, hi, bounds

    def index_uses(self, node: Node, var: str) -> list[tuple[Dim, int, Loc]]:
        found: list[tuple[Dim, int, Loc]] = []

        def offset_of(e: Node) -> int | None:
            if isinstance(e, Name) and e.id == var:
                return 0
            if (
                isinstance(e, BinOp) and e.op in "+-" and isinstance(e.lhs, Name)
                and e.lhs.id == var and isinstance(e.rhs, Num)
            ):
                return int(e.rhs.value) * (1 if e.op == "+" else -1)
            return None

        def walk(n: Node) -> None:
            if isinstance(n, Reduction) and var in n.vars:
                return
            if isinstance(n, Index):
                shape = self.fields.get(n.array)
                if shape is None and n.array in self.let_decls:
                    shape = self.let(n.array, n.loc).shape
                for k, e in enumerate(n.indices):
                    c = offset_of(e)
                    if c is not None and shape is not None and k < len(shape):
                        found.append((shape[k], c, e.loc))
            if isinstance(n, Name) and n.id in self.let_decls:
                return
            for child in vars(n).values():
                if isinstance(child, Node):
                    walk(child)
                elif isinstance(child, list):
                    for c in child:
                        if isinstance(c, Node):
                            walk(c)

        walk(node)
        return found

    def full_sum(self, val: Val, loc: Loc) -> Val:
        """sum(array): nested loops over the outer dims; a vector part is reduced in place."""
        dims = outer_dims(val.shape)
        if not dims:
            v = val.at([])
            if v.type == f64:
                return self.scalar(v)
            return self.scalar(self.emit(ham.ReduceOp(v), loc))

        def build(depth: int, idx: list[SSAValue]) -> SSAValue:
            block = Block(arg_types=[IndexType()])
            saved, self.block = self.block, block
            idx = [*idx, block.args[0]]
            if depth + 1 < len(dims):
                inner = build(depth + 1, idx)
            else:
                inner = val.at(idx)
                if isinstance(inner.type, VectorType):
                    inner = self.emit(ham.ReduceOp(inner), loc)
            self.emit(ham.YieldOp(inner))
            self.block = saved
            return self.emit(ham.SumOp(self.iconst(0), self.dim(dims[depth]), Region(block)), loc)

        return self.scalar(build(0, []))


BUILTINS = frozenset([*UNARY_MATH, *VECTOR_FUNCS, "sum"])


# Names the output .npz already uses (snapshots, run metadata) or uses as prefixes: an
# observable is saved under its own name, so it may not take one of them.
OUTPUT_NAMES = {"t", "H", "dt", "save_every", "steps_total", "steps_done", "t_final", "folded",
                "fold_method", "fold_carry", "fold_carry_step", "compiler", "system",
                "source_sha256", "integrator", "precision", "fold_enabled", "newton3", "kahan",
                "device", "tpc_version"}
OUTPUT_PREFIXES = ("param_", "input_", "resume_", "kahan_")


def check_output_name(name: str, loc: Loc) -> None:
    if name in OUTPUT_NAMES or name.startswith(OUTPUT_PREFIXES):
        raise TpcError(f"observable '{name}' would clash with the output's '{name}' (the names "
                       f"{', '.join(sorted(OUTPUT_NAMES))} and the prefixes "
                       f"{', '.join(OUTPUT_PREFIXES)} are taken)", loc)


def check_not_builtin(name: str, kind: str, loc: Loc) -> None:
    if name in BUILTINS:
        raise TpcError(f"'{name}' is a built-in function; it cannot also be {_a(kind)}", loc)


def check_state_sizes(q) -> None:
    """The trajectory is reshaped from the state's length, which determines only one size."""
    sizes = [(d, dloc) for d, dloc in zip(q.shape, q.dim_locs) if isinstance(d, str)]
    if len(sizes) > 1:
        (first, _), (second, loc) = sizes[:2]
        what = f"'{first}' twice" if first == second else f"two size symbols, {first} and {second}"
        raise TpcError(
            f"the state shape uses {what}; a state shape may use one size symbol, once", loc
        )


def is_zero_literal(node: Node) -> bool:
    while isinstance(node, Neg):
        node = node.operand
    return isinstance(node, Num) and node.value == 0


def generate(program: Program) -> ModuleOp:
    return IRGen(program).generate()
