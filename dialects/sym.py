"""The `sym` dialect: the integrator as IR.

A `sym.scheme` is one time step: a sequence of stages, each the flow of part of H for a time
`c * dt` (a kick moves p by -c dt dH/dq, a drift moves q by c dt dH/dp, an implicit midpoint
stage advances both for a non-separable H). `sym.evolve` is the time loop that runs a scheme
and records snapshots; `sym.propagate` replaces it when the whole step is a linear map.

    sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64} {
      sym.kick 5.000000e-01
      sym.drift 1.000000e+00
      sym.kick 5.000000e-01
    }
    sym.evolve @leapfrog {save = ["q", "p", "H"]}
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    f64,
    i64,
)
from xdsl.ir import Block, Dialect, Operation, Region
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    prop_def,
    region_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, NoTerminator, SymbolOpInterface, SymbolTable
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class SchemeOp(IRDLOperation):
    """One time step of an integrator for a system, as a sequence of stages."""

    name = "sym.scheme"
    sym_name = prop_def(SymbolNameConstraint())
    system = prop_def(SymbolRefAttr)
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), NoTerminator())

    def __init__(self, name: str, system: str, stages: Sequence[Operation], **attrs):
        super().__init__(
            properties={"sym_name": StringAttr(name), "system": SymbolRefAttr(system)},
            regions=[Region(Block(stages))], attributes=attrs,
        )

    @property
    def stages(self) -> list[Operation]:
        return list(self.body.block.ops)

    def print(self, printer: Printer) -> None:
        printer.print_string(f" @{self.sym_name.data} for ")
        printer.print_attribute(self.system)
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> SchemeOp:
        name = parser.parse_symbol_name().data
        parser.parse_keyword("for")
        system = parser.parse_attribute()
        attrs = parser.parse_optional_attr_dict_with_keyword()
        region = parser.parse_region()
        op = cls.__new__(cls)
        IRDLOperation.__init__(
            op, properties={"sym_name": StringAttr(name), "system": system}, regions=[region]
        )
        if attrs is not None:
            op.attributes |= attrs.data
        return op

    def verify_(self) -> None:
        if not self.stages:
            raise VerifyException("a sym.scheme needs at least one stage")
        if self.parent is not None and SymbolTable.lookup_symbol(self, self.system) is None:
            raise VerifyException(f"the scheme's system {self.system} is not in the module")
        for st in self.stages:
            if not isinstance(st, StageOp):
                raise VerifyException(f"{st.name} is not a sym stage")


class StageOp(IRDLOperation):
    """A stage: the flow of part of H for coeff * dt."""

    coeff = prop_def(FloatAttr[Float64Type])
    traits = traits_def(HasParent(SchemeOp))
    assembly_format = "$coeff attr-dict"

    def __init__(self, coeff: float, **props):
        super().__init__(properties={"coeff": FloatAttr(coeff, f64), **props})

    @property
    def c(self) -> float:
        return self.coeff.value.data


@irdl_op_definition
class KickOp(StageOp):
    """p -= c dt dH/dq (exact flow of the q-dependent part of a separable H)."""

    name = "sym.kick"


@irdl_op_definition
class DriftOp(StageOp):
    """q += c dt dH/dp (exact flow of the p-dependent part of a separable H)."""

    name = "sym.drift"


@irdl_op_definition
class ImplicitMidpointOp(StageOp):
    """z' = z + c dt J grad H((z + z') / 2), solved by fixed-point iteration to round-off."""

    name = "sym.implicit_midpoint"
    max_iter = prop_def(IntegerAttr)
    tol = prop_def(FloatAttr[Float64Type])
    assembly_format = "$coeff `max_iter` $max_iter `tol` $tol attr-dict"

    def __init__(self, coeff: float, max_iter: int = 100, tol: float = 1e-15):
        super().__init__(
            coeff, max_iter=IntegerAttr(max_iter, i64), tol=FloatAttr(tol, f64)
        )


class _RunOp(IRDLOperation):
    scheme = prop_def(SymbolRefAttr)
    save = prop_def(ArrayAttr[StringAttr])
    assembly_format = "$scheme `save` $save attr-dict"

    def __init__(self, scheme: str, save: Sequence[str] = ("q", "p", "H"), **props):
        super().__init__(
            properties={
                "scheme": SymbolRefAttr(scheme),
                "save": ArrayAttr([StringAttr(s) for s in save]),
                **props,
            }
        )


@irdl_op_definition
class EvolveOp(_RunOp):
    """The time loop: `steps` steps of the scheme, a snapshot every `save_every` (run-time
    values), with a non-finite check after every step."""

    name = "sym.evolve"


@irdl_op_definition
class PropagateOp(_RunOp):
    """The time loop of a linear scheme folded into matrix powers: the one-step map M of the
    scheme (built exactly, run time sizes allowed), then M^save_every by repeated squaring."""

    name = "sym.propagate"
    method = prop_def(StringAttr)
    assembly_format = "$scheme `save` $save `method` $method attr-dict"

    def __init__(self, scheme: str, method: str = "auto", save: Sequence[str] = ("q", "p", "H")):
        super().__init__(scheme, save, method=StringAttr(method))


Sym = Dialect(
    "sym", [SchemeOp, KickOp, DriftOp, ImplicitMidpointOp, EvolveOp, PropagateOp], []
)
