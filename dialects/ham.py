"""The `ham` dialect: a Hamiltonian H(q, p) as IR, at the level of the mathematics.

A `ham.system` holds the declarations of a `.ham` file as symbols (params, sizes, inputs, the
state), H's parts (`ham.part`, one region per term of H's top-level sum, named by the `let` it
came from or by what it depends on) and `ham.hamiltonian`, which states H as the sum of its
parts. Sums over particles and pair sums stay as region ops, and norms, dots and cross products
stay as ops, so that later passes can recognise the physics (a quadratic form for folding, a
Coulomb pair sum for Ewald, a splitting of H into parts that flow exactly).

Scalar arithmetic uses `arith` and `math` on f64 and on small fixed vectors (`vector<3xf64>`).
After `ham-derive`, the system also holds one `ham.gradient @part wrt @field` region per part
and state field the part depends on, in scatter form: loops whose bodies `ham.accumulate`
partial derivatives into the gradient of that field.

    ham.system @Kepler {
      ham.param @mu = 1.000000e+00 : f64
      ham.state @q, @p : !ham.field<[3]>
      ham.part @H_p attributes {depends_on = ["p"], degree = 2 : i64} {
        %p = ham.load @p[] : vector<3xf64>
        %pp = ham.dot %p, %p : vector<3xf64>
        ...
        ham.yield %t : f64
      }
      ham.part @H_q attributes {depends_on = ["q"], degree = "nonpoly"} { ... }
      ham.hamiltonian = [@H_p, @H_q] {degree = "nonpoly", quadratic = false, separable = true}
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    Float64Type,
    FloatAttr,
    IndexType,
    IntAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    VectorType,
    f64,
    i64,
)
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AnyAttr,
    IRDLOperation,
    VarConstraint,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    opt_result_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.traits import (
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    MemoryWriteEffect,
    NoTerminator,
    Pure,
    RecursiveMemoryEffect,
    SymbolOpInterface,
    SymbolTable,
)
from xdsl.utils.exceptions import VerifyException

# ----------------------------------------------------------------------------- types


@irdl_attr_definition
class FieldType(ParametrizedAttribute, TypeAttribute):
    """The shape of a declared array: each dimension an integer or a size symbol (`N`)."""

    name = "ham.field"
    dims: ArrayAttr[IntAttr | StringAttr]

    def __init__(self, dims: Sequence[int | str]):
        super().__init__(
            ArrayAttr([IntAttr(d) if isinstance(d, int) else StringAttr(d) for d in dims])
        )

    @property
    def shape(self) -> tuple[int | str, ...]:
        return tuple(d.data for d in self.dims.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        def dim() -> Attribute:
            if (n := parser.parse_optional_integer(allow_boolean=False)) is not None:
                return IntAttr(n)
            return StringAttr(parser.parse_identifier())

        with parser.in_angle_brackets():
            dims = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, dim)
        return (ArrayAttr(dims),)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<[" + ", ".join(str(d) for d in self.shape) + "]>")

    def verify(self) -> None:
        for d in self.shape:
            if isinstance(d, int) and d <= 0:
                raise VerifyException(f"field dimensions must be positive, got {d}")


def value_type_of(rank_left: Sequence[int | str]) -> Attribute:
    """The SSA type of a field indexed down to `rank_left` trailing dims."""
    if not rank_left:
        return f64
    if len(rank_left) == 1 and isinstance(rank_left[0], int):
        return VectorType(f64, [rank_left[0]])
    raise ValueError(f"no SSA value type for an array of shape {list(rank_left)}")


value_type = value_type_of


# ------------------------------------------------------------------------ declarations


def _sym(op: Operation) -> str:
    return op.properties["sym_name"].data  # type: ignore[union-attr]


@irdl_op_definition
class SystemOp(IRDLOperation):
    """A Hamiltonian system: declarations, the energy and (after ham-derive) its gradients."""

    name = "ham.system"
    sym_name = prop_def(SymbolNameConstraint())
    box = opt_prop_def(ArrayAttr[FloatAttr[Float64Type]])  # one length per position axis
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), SymbolTable(), NoTerminator(), IsolatedFromAbove())

    def __init__(self, name: str, ops: Sequence[Operation],
                 box: Sequence[float] | None = None):
        props: dict[str, Attribute] = {"sym_name": StringAttr(name)}
        if box is not None:
            props["box"] = ArrayAttr([FloatAttr(x, f64) for x in box])
        super().__init__(properties=props, regions=[Region(Block(ops))])

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data}")
        if self.box is not None:
            printer.print_string(" box ")
            printer.print_attribute(self.box)
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> SystemOp:
        name = parser.parse_symbol_name().data
        box = None
        if parser.parse_optional_keyword("box"):
            box = parser.parse_attribute()
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region()
        op = cls.__new__(cls)
        IRDLOperation.__init__(
            op,
            properties={"sym_name": StringAttr(name)} | ({"box": box} if box else {}),
            regions=[region],
        )
        if attrs is not None:
            op.attributes |= attrs.data
        return op

    @property
    def box_lengths(self) -> tuple[float, ...] | None:
        return None if self.box is None else tuple(x.value.data for x in self.box.data)

    # Lookups used by every pass; declarations are few, so a scan is cheapest.
    def decls(self, kind: type[Operation]) -> list[Operation]:
        return [op for op in self.body.block.ops if isinstance(op, kind)]

    @property
    def state(self) -> StateOp:
        return self.decls(StateOp)[0]  # type: ignore[return-value]

    @property
    def hamiltonian(self) -> HamiltonianOp:
        return self.decls(HamiltonianOp)[0]  # type: ignore[return-value]

    @property
    def parts(self) -> list[PartOp]:
        return self.decls(PartOp)  # type: ignore[return-value]

    @property
    def monitors(self) -> list[MonitorOp]:
        return self.decls(MonitorOp)  # type: ignore[return-value]

    def part(self, name: str) -> PartOp | None:
        return next((p for p in self.parts if p.part_name == name), None)

    def gradients(self, wrt: str, parts: Sequence[str] | None = None) -> list[GradientOp]:
        """The gradients with respect to `wrt` of `parts` (all parts when None), in order."""
        grads = [g for g in self.decls(GradientOp) if g.wrt_name == wrt]  # type: ignore
        if parts is not None:
            grads = [g for g in grads if g.part_name in parts]
        return grads  # type: ignore[return-value]

    def field_shape(self, name: str) -> tuple[int | str, ...]:
        for op in self.body.block.ops:
            if isinstance(op, InputOp) and op.sym_name.data == name:
                return op.shape.shape
            if isinstance(op, StateOp) and name in op.names:
                return op.shape.shape
        raise KeyError(name)

    def verify_(self) -> None:
        states = self.decls(StateOp)
        if len(states) != 1:
            raise VerifyException(f"a system needs exactly one ham.state, found {len(states)}")
        if len(self.decls(HamiltonianOp)) != 1:
            raise VerifyException("a system needs exactly one ham.hamiltonian")
        names = [p.part_name for p in self.parts]
        if sorted(names) != sorted(self.hamiltonian.part_names):
            raise VerifyException("every ham.part must be named once by ham.hamiltonian")
        sizes = {op.sym_name.data for op in self.decls(SizeOp)}
        for op in self.decls(StateOp) + self.decls(InputOp):
            for d in op.shape.shape:
                if isinstance(d, str) and d not in sizes:
                    raise VerifyException(f"dimension '{d}' is not a declared ham.size")


@irdl_op_definition
class ParamOp(IRDLOperation):
    """A scalar constant of the system, overridable at run time."""

    name = "ham.param"
    sym_name = prop_def(SymbolNameConstraint())
    value = prop_def(FloatAttr[Float64Type])
    traits = traits_def(SymbolOpInterface(), HasParent(SystemOp))
    assembly_format = "$sym_name `=` $value attr-dict"

    def __init__(self, name: str, value: float):
        super().__init__(properties={"sym_name": StringAttr(name), "value": FloatAttr(value, f64)})


@irdl_op_definition
class SizeOp(IRDLOperation):
    """A size bound at run time by the shape of the initial data."""

    name = "ham.size"
    sym_name = prop_def(SymbolNameConstraint())
    traits = traits_def(SymbolOpInterface(), HasParent(SystemOp))
    assembly_format = "$sym_name attr-dict"

    def __init__(self, name: str):
        super().__init__(properties={"sym_name": StringAttr(name)})


@irdl_op_definition
class InputOp(IRDLOperation):
    """Per-particle constants given with the initial state (masses, charges)."""

    name = "ham.input"
    sym_name = prop_def(SymbolNameConstraint())
    shape = prop_def(FieldType)
    traits = traits_def(SymbolOpInterface(), HasParent(SystemOp))
    assembly_format = "$sym_name `:` qualified($shape) attr-dict"

    def __init__(self, name: str, shape: Sequence[int | str]):
        super().__init__(properties={"sym_name": StringAttr(name), "shape": FieldType(shape)})


@irdl_op_definition
class StateOp(IRDLOperation):
    """The canonical coordinates q and their conjugate momenta p, of one shape."""

    name = "ham.state"
    q = prop_def(SymbolRefAttr)
    p = prop_def(SymbolRefAttr)
    shape = prop_def(FieldType)
    traits = traits_def(HasParent(SystemOp))
    assembly_format = "$q `,` $p `:` qualified($shape) attr-dict"

    def __init__(self, q: str, p: str, shape: Sequence[int | str]):
        super().__init__(
            properties={"q": SymbolRefAttr(q), "p": SymbolRefAttr(p), "shape": FieldType(shape)}
        )

    @property
    def names(self) -> tuple[str, str]:
        return self.q.string_value(), self.p.string_value()


@irdl_op_definition
class PartOp(IRDLOperation):
    """One named part of H (a term of its top-level sum): a region that yields its f64 energy.

    Parts are what splitting methods flow one at a time, so analyses attach their facts here
    (`depends_on`, `degree`, `quadratic`, `separable`, the op that broke the quadratic class).

        ham.part @T attributes {depends_on = ["p"], degree = 2 : i64} {
          ...
          ham.yield %t : f64
        }
    """

    name = "ham.part"
    sym_name = prop_def(SymbolNameConstraint())
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), HasParent(SystemOp))
    assembly_format = "$sym_name attr-dict-with-keyword $body"

    def __init__(self, name: str, body: Region):
        super().__init__(properties={"sym_name": StringAttr(name)}, regions=[body])

    @property
    def part_name(self) -> str:
        return self.sym_name.data

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The state fields the part depends on (ham-degree's fact; () before it ran)."""
        deps = self.attributes.get("depends_on")
        return tuple(s.data for s in deps.data) if isinstance(deps, ArrayAttr) else ()

    def fact(self, name: str):
        attr = self.attributes.get(name)
        return getattr(attr, "value", attr) if attr is not None else None

    def verify_(self) -> None:
        term = self.body.block.last_op
        if not isinstance(term, YieldOp) or len(term.values) != 1 or term.values[0].type != f64:
            raise VerifyException(f"ham.part @{self.part_name} must yield exactly one f64")


@irdl_op_definition
class HamiltonianOp(IRDLOperation):
    """H as the sum of its parts. ham-degree attaches the facts of the whole H here.

        ham.hamiltonian = [@T, @V] {degree = 2 : i64, quadratic = true, separable = true}
    """

    name = "ham.hamiltonian"
    parts = prop_def(ArrayAttr[SymbolRefAttr])
    traits = traits_def(HasParent(SystemOp))
    assembly_format = "`=` $parts attr-dict"

    def __init__(self, parts: Sequence[str]):
        super().__init__(properties={"parts": ArrayAttr([SymbolRefAttr(p) for p in parts])})

    @property
    def part_names(self) -> list[str]:
        return [p.string_value() for p in self.parts.data]

    def with_part_replaced(self, name: str, by: Sequence[str]) -> ArrayAttr:
        """The part list with `name` replaced, in place, by the parts `by` (a split part)."""
        names: list[str] = []
        for n in self.part_names:
            names += list(by) if n == name else [n]
        return ArrayAttr([SymbolRefAttr(n) for n in names])

    def verify_(self) -> None:
        names = self.part_names
        if not names:
            raise VerifyException("ham.hamiltonian needs at least one part")
        if len(set(names)) != len(names):
            raise VerifyException("ham.hamiltonian names a part twice")
        system = self.parent_op()
        if isinstance(system, SystemOp):
            known = {p.part_name for p in system.parts}
            for n in names:
                if n not in known:
                    raise VerifyException(f"'@{n}' is not a ham.part of @{system.sym_name.data}")


@irdl_op_definition
class GradientOp(IRDLOperation):
    """d(part)/d(wrt), accumulated by the region into a field of the state's shape (scatter
    form: `ham.accumulate`). One per part and state field the part depends on. A wrt of
    several names joined by `+` (`wrt @"q+G+m"`, from ham-derive-params) is one region that
    accumulates the gradients with respect to each of them (a field, a param, an input)."""

    name = "ham.gradient"
    part = prop_def(SymbolRefAttr)
    wrt = prop_def(SymbolRefAttr)
    body = region_def("single_block")
    traits = traits_def(HasParent(SystemOp))
    assembly_format = "$part `wrt` $wrt attr-dict-with-keyword $body"

    def __init__(self, part: str, wrt: str, body: Region):
        super().__init__(
            properties={"part": SymbolRefAttr(part), "wrt": SymbolRefAttr(wrt)}, regions=[body]
        )

    @property
    def part_name(self) -> str:
        return self.part.string_value()

    @property
    def wrt_name(self) -> str:
        return self.wrt.string_value()

    def verify_(self) -> None:
        term = self.body.block.last_op
        if not isinstance(term, YieldOp) or term.values:
            raise VerifyException("ham.gradient must end in an empty ham.yield")
        system = self.parent_op()
        if isinstance(system, SystemOp) and system.part(self.part_name) is None:
            raise VerifyException(f"'@{self.part_name}' is not a ham.part")


@irdl_op_definition
class MonitorOp(IRDLOperation):
    """A quantity computed at snapshots, not part of H: a conserved quantity that ham-symmetry
    derived (`quantity = "momentum"`, `"angular_momentum"`) or a user observable
    (`quantity = "observable"`, from `observe NAME = EXPR`). A region yielding one f64, like
    ham.part; sym-lower-loops lowers all of them into one exported `monitors` function.

        ham.monitor @P_x attributes {quantity = "momentum", symmetry = "translation_x"} {
          ...
          ham.yield %px : f64
        }
    """

    name = "ham.monitor"
    sym_name = prop_def(SymbolNameConstraint())
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), HasParent(SystemOp))
    assembly_format = "$sym_name attr-dict-with-keyword $body"

    def __init__(self, name: str, body: Region, quantity: str):
        super().__init__(properties={"sym_name": StringAttr(name)}, regions=[body])
        self.attributes["quantity"] = StringAttr(quantity)

    @property
    def monitor_name(self) -> str:
        return self.sym_name.data

    @property
    def quantity(self) -> str:
        q = self.attributes.get("quantity")
        return q.data if isinstance(q, StringAttr) else ""

    def verify_(self) -> None:
        term = self.body.block.last_op
        if not isinstance(term, YieldOp) or len(term.values) != 1 or term.values[0].type != f64:
            raise VerifyException(f"ham.monitor @{self.monitor_name} must yield exactly one f64")


# ---------------------------------------------------------------------- expressions


def enclosing_system(op: Operation) -> SystemOp | None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, SystemOp):
        parent = parent.parent_op()
    return parent


def _symbol_names(system: SystemOp, kind: type[Operation]) -> set[str]:
    return {d.sym_name.data for d in system.decls(kind)}  # type: ignore[attr-defined]


def _verify_field_access(op: Operation, field: str, n_indices: int, value_type: Attribute) -> None:
    """The field exists, is indexed at most to its rank, and the value has the rest's type."""
    system = enclosing_system(op)
    if system is None:
        return  # a detached op (being built or moved): checked once it is placed
    try:
        shape = system.field_shape(field)
    except KeyError:
        raise VerifyException(
            f"'{field}' is not a state or input of @{system.sym_name.data}"
        ) from None
    if n_indices > len(shape):
        raise VerifyException(f"{n_indices} indices for '{field}' of rank {len(shape)}")
    try:
        expected = value_type_of(shape[n_indices:])
    except ValueError as e:
        raise VerifyException(str(e)) from None
    if value_type != expected:
        raise VerifyException(
            f"'{field}' indexed {n_indices} time(s) is {expected}, not {value_type}"
        )


@irdl_op_definition
class YieldOp(IRDLOperation):
    name = "ham.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator(), Pure())
    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, *values: SSAValue | Operation):
        super().__init__(operands=[values])


@irdl_op_definition
class ParamRefOp(IRDLOperation):
    """The value of a param (a run-time constant)."""

    name = "ham.param_ref"
    param = prop_def(SymbolRefAttr)
    result = result_def(f64)
    traits = traits_def(Pure())
    assembly_format = "$param attr-dict `:` type($result)"

    def __init__(self, param: str):
        super().__init__(properties={"param": SymbolRefAttr(param)}, result_types=[f64])

    def verify_(self) -> None:
        system = enclosing_system(self)
        if system is not None and self.param.string_value() not in _symbol_names(system, ParamOp):
            raise VerifyException(f"'{self.param.string_value()}' is not a ham.param")


@irdl_op_definition
class DimOp(IRDLOperation):
    """The run-time value of a size symbol."""

    name = "ham.dim"
    size = prop_def(SymbolRefAttr)
    result = result_def(IndexType)
    traits = traits_def(Pure())
    assembly_format = "$size attr-dict `:` type($result)"

    def __init__(self, size: str):
        super().__init__(properties={"size": SymbolRefAttr(size)}, result_types=[IndexType()])

    def verify_(self) -> None:
        system = enclosing_system(self)
        if system is not None and self.size.string_value() not in _symbol_names(system, SizeOp):
            raise VerifyException(f"'{self.size.string_value()}' is not a ham.size")


@irdl_op_definition
class LoadOp(IRDLOperation):
    """An element (all indices given) or a trailing row (`vector<3xf64>`) of a state or input."""

    name = "ham.load"
    field = prop_def(SymbolRefAttr)
    indices = var_operand_def(IndexType)
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = "$field `[` $indices `]` attr-dict `:` type($result)"

    def __init__(self, field: str, indices: Sequence[SSAValue | Operation], type: Attribute):
        super().__init__(
            properties={"field": SymbolRefAttr(field)}, operands=[indices], result_types=[type]
        )

    @property
    def field_name(self) -> str:
        return self.field.string_value()

    def verify_(self) -> None:
        _verify_field_access(self, self.field_name, len(self.indices), self.result.type)


@irdl_op_definition
class AccumulateOp(IRDLOperation):
    """gradient[wrt][indices] += value (scatter form of a gradient)."""

    name = "ham.accumulate"
    field = prop_def(SymbolRefAttr)
    indices = var_operand_def(IndexType)
    value = operand_def()
    traits = traits_def(MemoryWriteEffect())
    assembly_format = "$field `[` $indices `]` `,` $value attr-dict `:` type($value)"

    def __init__(self, field: str, indices: Sequence[SSAValue | Operation], value: SSAValue):
        super().__init__(properties={"field": SymbolRefAttr(field)}, operands=[indices, value])

    def verify_(self) -> None:
        parent = self.parent_op()
        while parent is not None and not isinstance(parent, GradientOp | SystemOp):
            parent = parent.parent_op()
        if isinstance(parent, SystemOp):
            raise VerifyException("ham.accumulate belongs inside a ham.gradient")
        name = self.field.string_value()
        # wrt @"q+G+m" (ham-derive-params): one region for several fields at once
        if isinstance(parent, GradientOp) and name not in parent.wrt_name.split("+"):
            raise VerifyException(
                f"accumulates into '{name}' inside the gradient with respect to "
                f"'{parent.wrt_name}'"
            )
        system = enclosing_system(self)
        if system is not None and name in {p.sym_name.data for p in system.decls(ParamOp)}:
            # d/d(param): a scalar (ham-derive-params, for parameter adjoints)
            if self.indices or self.value.type != f64:
                raise VerifyException(f"the gradient of param '{name}' is one f64, unindexed")
            return
        _verify_field_access(self, name, len(self.indices), self.value.type)


def _vector_or_scalar(t: Attribute) -> int | None:
    """Vector length, or None for a scalar f64."""
    if t == f64:
        return None
    if isinstance(t, VectorType) and t.element_type == f64 and len(t.get_shape()) == 1:
        return t.get_shape()[0]
    raise VerifyException(f"expected f64 or vector<Kxf64>, got {t}")


@irdl_op_definition
class IPowOp(IRDLOperation):
    """x^n for a constant integer n: kept apart from math.powf so that degree is exact."""

    name = "ham.ipow"
    T: ClassVar = VarConstraint("T", AnyAttr())
    base = operand_def(T)
    exponent = prop_def(IntegerAttr[I64])
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$base `,` $exponent attr-dict `:` type($result)"

    def __init__(self, base: SSAValue | Operation, n: int):
        t = SSAValue.get(base).type
        super().__init__(
            operands=[base], properties={"exponent": IntegerAttr(n, i64)},
            result_types=[t],
        )

    def verify_(self) -> None:
        if self.base.type != self.result.type:
            raise VerifyException("ham.ipow result type must equal its operand type")


@irdl_op_definition
class ErfcOp(IRDLOperation):
    """The complementary error function, which the math dialect lacks; 1 - erf(x) would lose
    every digit of the small values an Ewald real-space sum is made of."""

    name = "ham.erfc"
    T: ClassVar = VarConstraint("T", AnyAttr())
    operand = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$operand attr-dict `:` type($result)"

    def __init__(self, x: SSAValue | Operation):
        super().__init__(operands=[x], result_types=[SSAValue.get(x).type])


class _VectorReduction(IRDLOperation):
    result = result_def(f64)
    traits = traits_def(Pure())


@irdl_op_definition
class NormOp(_VectorReduction):
    """Euclidean norm of a vector."""

    name = "ham.norm"
    vector = operand_def(VectorType)
    assembly_format = "$vector attr-dict `:` type($vector)"

    def __init__(self, v: SSAValue | Operation):
        super().__init__(operands=[v], result_types=[f64])


@irdl_op_definition
class ReduceOp(_VectorReduction):
    """Sum of the components of a vector."""

    name = "ham.reduce"
    vector = operand_def(VectorType)
    assembly_format = "$vector attr-dict `:` type($vector)"

    def __init__(self, v: SSAValue | Operation):
        super().__init__(operands=[v], result_types=[f64])


@irdl_op_definition
class DotOp(_VectorReduction):
    name = "ham.dot"
    T: ClassVar = VarConstraint("T", AnyAttr())
    lhs = operand_def(T)
    rhs = operand_def(T)
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($lhs)"

    def __init__(self, a: SSAValue | Operation, b: SSAValue | Operation):
        super().__init__(operands=[a, b], result_types=[f64])

    def verify_(self) -> None:
        if self.lhs.type != self.rhs.type:
            raise VerifyException("ham.dot operands must have the same vector type")


@irdl_op_definition
class CrossOp(IRDLOperation):
    name = "ham.cross"
    T: ClassVar = VarConstraint("T", AnyAttr())
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($result)"

    def __init__(self, a: SSAValue | Operation, b: SSAValue | Operation):
        super().__init__(operands=[a, b], result_types=[SSAValue.get(a).type])

    def verify_(self) -> None:
        if not (self.lhs.type == self.rhs.type == self.result.type) or _vector_or_scalar(
            self.lhs.type
        ) != 3:
            raise VerifyException("ham.cross needs two vector<3xf64>")


@irdl_op_definition
class BroadcastOp(IRDLOperation):
    """A scalar repeated into every component of a vector."""

    name = "ham.broadcast"
    scalar = operand_def(f64)
    result = result_def(VectorType)
    traits = traits_def(Pure())
    assembly_format = "$scalar attr-dict `:` type($result)"

    def __init__(self, s: SSAValue | Operation, type: VectorType):
        super().__init__(operands=[s], result_types=[type])


@irdl_op_definition
class ExtractOp(IRDLOperation):
    """One component of a vector (constant position)."""

    name = "ham.extract"
    vector = operand_def(VectorType)
    position = prop_def(IntegerAttr[I64])
    result = result_def(f64)
    traits = traits_def(Pure())
    assembly_format = "$vector `[` $position `]` attr-dict `:` type($vector)"

    def __init__(self, v: SSAValue | Operation, position: int):
        super().__init__(
            operands=[v], properties={"position": IntegerAttr(position, i64)},
            result_types=[f64],
        )

    def verify_(self) -> None:
        n = _vector_or_scalar(self.vector.type)
        if not 0 <= self.position.value.data < (n or 0):
            raise VerifyException(f"component {self.position.value.data} out of range")


# ------------------------------------------------------------------------ reductions

PAIR_KINDS = ("lt", "ne")


class _LoopOp(IRDLOperation):
    """Loops over particle indices in [lower, upper): a sum (one result) or a plain loop."""

    lower = operand_def(IndexType)
    upper = operand_def(IndexType)
    result = opt_result_def()
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect())

    N_IVS: ClassVar[int] = 1

    def _print_ivs(self, printer: Printer) -> None:
        printer.print_ssa_value(self.body.block.args[0])

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        self._print_ivs(printer)
        printer.print_string(" in ")
        printer.print_ssa_value(self.lower)
        printer.print_string(" to ")
        printer.print_ssa_value(self.upper)
        if self.result is not None:
            printer.print_string(" : ")
            printer.print_attribute(self.result.type)
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def _parse_ivs(cls, parser: Parser) -> tuple[list[Parser.UnresolvedArgument], dict]:
        return [parser.parse_argument(expect_type=False)], {}

    @classmethod
    def parse(cls, parser: Parser) -> _LoopOp:
        ivs, props = cls._parse_ivs(parser)
        parser.parse_keyword("in")
        lower = parser.resolve_operand(parser.parse_unresolved_operand(), IndexType())
        parser.parse_keyword("to")
        upper = parser.resolve_operand(parser.parse_unresolved_operand(), IndexType())
        result_type = parser.parse_type() if parser.parse_optional_punctuation(":") else None
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region([iv.resolve(IndexType()) for iv in ivs])
        op = cls.__new__(cls)
        IRDLOperation.__init__(
            op, operands=[lower, upper], properties=props,
            result_types=[[result_type] if result_type else []], regions=[body],
        )
        if attrs is not None:
            op.attributes |= attrs.data
        return op

    def verify_(self) -> None:
        block = self.body.block
        if len(block.args) != self.N_IVS or any(a.type != IndexType() for a in block.args):
            raise VerifyException(f"{self.name} body needs {self.N_IVS} index argument(s)")
        term = block.last_op
        if not isinstance(term, YieldOp):
            raise VerifyException(f"{self.name} body must end in ham.yield")
        if self.result is None:
            if term.values:
                raise VerifyException(f"{self.name} without a result must yield nothing")
        elif len(term.values) != 1 or term.values[0].type != self.result.type:
            raise VerifyException(f"{self.name} must yield one value of its result type")
        if self.result is not None:
            _vector_or_scalar(self.result.type)


@irdl_op_definition
class SumOp(_LoopOp):
    """sum over i in [lower, upper) of the body's value; without a result, a plain loop."""

    name = "ham.sum"

    def __init__(
        self, lower: SSAValue | Operation, upper: SSAValue | Operation, body: Region,
        result_type: Attribute | None = f64,
    ):
        super().__init__(
            operands=[lower, upper], result_types=[[result_type] if result_type else []],
            regions=[body],
        )


@irdl_op_definition
class PairSumOp(_LoopOp):
    """sum over pairs i, j in [lower, upper) with i < j (each pair once) or i != j."""

    name = "ham.pair_sum"
    kind = prop_def(StringAttr)
    N_IVS: ClassVar[int] = 2

    def __init__(
        self, lower: SSAValue | Operation, upper: SSAValue | Operation, kind: str, body: Region,
        result_type: Attribute | None = f64,
    ):
        super().__init__(
            operands=[lower, upper], properties={"kind": StringAttr(kind)},
            result_types=[[result_type] if result_type else []], regions=[body],
        )

    # `!=` cannot be printed: the MLIR lexer reads `!` as the start of a type alias, so the
    # text would not parse back. The ordered-pairs kind is the keyword `ne` instead.
    def _print_ivs(self, printer: Printer) -> None:
        i, j = self.body.block.args
        printer.print_ssa_value(i)
        printer.print_string(" < " if self.kind.data == "lt" else " ne ")
        printer.print_ssa_value(j)

    @classmethod
    def _parse_ivs(cls, parser: Parser) -> tuple[list[Parser.UnresolvedArgument], dict]:
        i = parser.parse_argument(expect_type=False)
        if parser.parse_optional_punctuation("<") or parser.parse_optional_keyword("lt"):
            kind = "lt"
        elif parser.parse_optional_keyword("ne"):
            kind = "ne"
        else:
            parser.raise_error("expected '<' or 'ne' between the two indices of ham.pair_sum")
        j = parser.parse_argument(expect_type=False)
        return [i, j], {"kind": StringAttr(kind)}

    def verify_(self) -> None:
        super().verify_()
        if self.kind.data not in PAIR_KINDS:
            raise VerifyException(f"pair kind must be one of {PAIR_KINDS}")


Ham = Dialect(
    "ham",
    [
        SystemOp, ParamOp, SizeOp, InputOp, StateOp, PartOp, HamiltonianOp, GradientOp, MonitorOp,
        YieldOp,
        ParamRefOp, DimOp, LoadOp, AccumulateOp, IPowOp, ErfcOp, NormOp, ReduceOp, DotOp, CrossOp,
        BroadcastOp, ExtractOp, SumOp, PairSumOp,
    ],
    [FieldType],
)
