"""The `sym` dialect: the integrator as IR.

A `sym.scheme` is one time step: a sequence of stages, each the exact flow of some of H's parts
(`ham.part`) for a time `c * dt` (`sym.flow`); `sym.repeat` nests a sub-scheme run n times.
`sym-flow-kinds` decides how each flow runs (kick, drift, implicit midpoint, exact linear flow)
from the parts' facts; `sym-lower-flows` turns every flow into the state updates the loop and
kernel lowerings consume (`sym.update`, `sym.midpoint`). `sym.evolve` is the time loop that runs
a scheme and records snapshots; `sym.propagate` replaces it when the whole step is a linear map.

    sym.scheme @leapfrog for @Kepler attributes {order = 2 : i64} {
      sym.flow [@V] 5.000000e-01 as "kick"
      sym.flow [@T] 1.000000e+00 as "drift"
      sym.flow [@V] 5.000000e-01 as "kick"
    }
    sym.evolve @leapfrog save ["q", "p", "H"]
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
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import NoTerminator, SymbolOpInterface, SymbolTable
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
        if self.parent is not None and SymbolTable.lookup_symbol(self, self.system) is None:
            raise VerifyException(f"the scheme's system {self.system} is not in the module")
        _verify_stages(self.stages, "sym.scheme")


STAGES_DOC = ("sym.flow, sym.repeat, sym.update, sym.linear, sym.kepler, sym.boris, "
              "sym.midpoint")


def _parts_attr(parts: Sequence[str]) -> ArrayAttr:
    return ArrayAttr([SymbolRefAttr(p) for p in parts])


class _PartsStage(IRDLOperation):
    parts = prop_def(ArrayAttr[SymbolRefAttr])
    coeff = prop_def(FloatAttr[Float64Type])

    @property
    def c(self) -> float:
        return self.coeff.value.data

    @property
    def part_names(self) -> list[str]:
        return [p.string_value() for p in self.parts.data]

    def verify_(self) -> None:
        if not self.parts.data:
            raise VerifyException(f"{self.name} needs at least one part")


FLOW_KINDS = ("kick", "drift", "linear", "kepler", "boris", "midpoint", "avf", "exact")


@irdl_op_definition
class FlowOp(_PartsStage):
    """The exact flow of the sum of `parts` for a time coeff * dt.

    How it flows is decided by `sym-flow-kinds` from the parts' facts and recorded as `kind`:
    `kick` (the parts depend on q alone: p -= c dt dV/dq), `drift` (p alone: q += c dt dT/dp),
    `linear` (quadratic parts of both: the exact flow of their linear vector field, a matrix
    exponential), `kepler` (a sum of Kepler problems, ham-kepler's kinetic and potential
    parts: the exact two-body flow of each body), `midpoint` (both, otherwise: the implicit
    midpoint rule, second order),
    `exact` (the whole quadratic H for the whole step; only the folded time loop runs it).

        sym.flow [@V] 5.000000e-01 as "kick"
    """

    name = "sym.flow"
    kind = opt_prop_def(StringAttr)
    assembly_format = "$parts $coeff (`as` $kind^)? attr-dict"

    def __init__(self, parts: Sequence[str], coeff: float, kind: str | None = None):
        props: dict = {"parts": _parts_attr(parts), "coeff": FloatAttr(coeff, f64)}
        if kind is not None:
            props["kind"] = StringAttr(kind)
        super().__init__(properties=props)

    @property
    def kind_name(self) -> str | None:
        return self.kind.data if self.kind is not None else None

    def verify_(self) -> None:
        super().verify_()
        if self.kind is not None and self.kind.data not in FLOW_KINDS:
            raise VerifyException(f"flow kind must be one of {FLOW_KINDS}, got {self.kind.data}")


@irdl_op_definition
class UpdateOp(_PartsStage):
    """target += coeff * dt * d(sum of parts)/d(wrt): the one state update every explicit flow
    lowers to (a kick updates p along -dV/dq, a drift q along dT/dp). The gradient is taken at
    the state before the update; both the CPU loop and the GPU kernels lower this op.

        sym.update @p, -5.000000e-01, [@V] wrt @q

    With `kahan @buf` (set by sym-kahan) the addition is compensated: `buf` is a state-sized
    buffer of the time loop's run state (listed in the sym.evolve's `carry`) holding, per
    element, the round-off that the stored target has not yet absorbed.

        sym.update @p, -5.000000e-01, [@V] wrt @q kahan @kahan_p
    """

    name = "sym.update"
    target = prop_def(SymbolRefAttr)
    wrt = prop_def(SymbolRefAttr)
    comp = opt_prop_def(SymbolRefAttr)
    assembly_format = "$target `,` $coeff `,` $parts `wrt` $wrt (`kahan` $comp^)? attr-dict"

    def __init__(self, target: str, coeff: float, parts: Sequence[str], wrt: str,
                 comp: str | None = None):
        props: dict = {
            "target": SymbolRefAttr(target), "coeff": FloatAttr(coeff, f64),
            "parts": _parts_attr(parts), "wrt": SymbolRefAttr(wrt),
        }
        if comp is not None:
            props["comp"] = SymbolRefAttr(comp)
        super().__init__(properties=props)

    @property
    def target_name(self) -> str:
        return self.target.string_value()

    @property
    def wrt_name(self) -> str:
        return self.wrt.string_value()

    @property
    def comp_name(self) -> str | None:
        """The compensation buffer of a compensated update (None: a plain one)."""
        return self.comp.string_value() if self.comp is not None else None


@irdl_op_definition
class MidpointOp(_PartsStage):
    """z' = z + c dt J grad H((z + z') / 2) for H the sum of `parts`, solved by fixed-point
    iteration to round-off (at most max_iter iterations).

    With `nodes m` (m > 1), the average vector field method (a discrete gradient) instead:
    z' = z + c dt J integral_0^1 grad H(z + s (z' - z)) ds, the integral by m-point
    Gauss-Legendre quadrature; exact, so H(z') = H(z) to round-off, when H is a polynomial of
    degree at most 2m. One node is the midpoint rule."""

    name = "sym.midpoint"
    max_iter = prop_def(IntegerAttr)
    tol = prop_def(FloatAttr[Float64Type])
    nodes = opt_prop_def(IntegerAttr)
    assembly_format = "$parts $coeff `max_iter` $max_iter `tol` $tol (`nodes` $nodes^)? attr-dict"

    def __init__(self, parts: Sequence[str], coeff: float, max_iter: int = 100,
                 tol: float = 1e-15, nodes: int = 1):
        props = {
            "parts": _parts_attr(parts), "coeff": FloatAttr(coeff, f64),
            "max_iter": IntegerAttr(max_iter, i64), "tol": FloatAttr(tol, f64),
        }
        if nodes > 1:
            props["nodes"] = IntegerAttr(nodes, i64)
        super().__init__(properties=props)

    @property
    def n_nodes(self) -> int:
        return self.nodes.value.data if self.nodes is not None else 1


class _ExactStage(_PartsStage):
    """A lowered exact flow of parts, for coeff * dt, that the time loop runs as one stage."""

    assembly_format = "$parts $coeff attr-dict"

    def __init__(self, parts: Sequence[str], coeff: float):
        super().__init__(properties={"parts": _parts_attr(parts), "coeff": FloatAttr(coeff, f64)})


@irdl_op_definition
class LinearOp(_ExactStage):
    """z <- exp(c dt A) z for the linear vector field A z + a = J grad(sum of `parts`) of
    quadratic parts: the exact flow, applied as an affine map of the whole state z = (q, p).
    The run-time builds the map from the parts' gradients once per dt (the ABI table's
    `linear` list, in the order these ops appear), so the step does one matrix-vector product.

        sym.linear [@T, @Vtrap] 1.000000e+00
    """

    name = "sym.linear"


@irdl_op_definition
class KeplerOp(_ExactStage):
    """The exact flow, for c dt, of a sum over bodies of |p_i|^2 / (2 m_i) - k_i / |q_i| (the
    parts ham-kepler marked): each body moves on its conic with mu_i = k_i / m_i, solved in
    universal variables (Stumpff functions), any eccentricity. The run-time reads m_i and k_i
    from the parts' gradients (the ABI table's `kepler` list, in the order these ops appear).

        sym.kepler [@Hkep_q, @Hkep_p] 5.000000e-01
    """

    name = "sym.kepler"


@irdl_op_definition
class BorisOp(_ExactStage):
    """One Boris step for c dt of a charge in H = |p - e A(q)|^2 / (2 m) + e phi(q): the first
    part is ham-magnetic's kinetic part, the others the potential. With v = (p - e A) / m half a
    step behind q: half an electric kick, the rotation about e B / m by 2 atan(|e B| c dt /
    2 m), half an electric kick, the drift q += c dt v; p = m v + e A(q) is stored.

        sym.boris [@K, @Phi] 1.000000e+00
    """

    name = "sym.boris"


@irdl_op_definition
class RepeatOp(IRDLOperation):
    """A sub-scheme run `count` times in a row (the inner steps of a multiple-time-step
    method); its stages are those of a scheme."""

    name = "sym.repeat"
    count = prop_def(IntegerAttr)
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = "$count attr-dict-with-keyword $body"

    def __init__(self, count: int, stages: Sequence[Operation]):
        super().__init__(properties={"count": IntegerAttr(count, i64)},
                         regions=[Region(Block(stages))])

    @property
    def n(self) -> int:
        return self.count.value.data

    @property
    def stages(self) -> list[Operation]:
        return list(self.body.block.ops)

    def verify_(self) -> None:
        if self.n < 1:
            raise VerifyException("sym.repeat needs a count >= 1")
        _verify_stages(self.stages, "sym.repeat")


STAGE_TYPES = (FlowOp, UpdateOp, LinearOp, KeplerOp, BorisOp, MidpointOp, RepeatOp)


def _verify_stages(stages: Sequence[Operation], where: str) -> None:
    if not stages:
        raise VerifyException(f"a {where} needs at least one stage")
    for st in stages:
        if not isinstance(st, STAGE_TYPES):
            raise VerifyException(f"{st.name} is not a sym stage ({STAGES_DOC})")


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
    values), with a non-finite check after every step.

    `carry` names the run state beyond q and p: state-sized buffers, zero at a fresh start,
    that every call of the loop reads and leaves for the next (sym-kahan's compensations), so
    that a run split into pieces computes what the unsplit run does.

        sym.evolve @leapfrog save ["q", "p", "H"] carry ["kahan_q", "kahan_p"]
    """

    name = "sym.evolve"
    carry = opt_prop_def(ArrayAttr[StringAttr])
    assembly_format = "$scheme `save` $save (`carry` $carry^)? attr-dict"

    @property
    def carry_names(self) -> list[str]:
        return [s.data for s in self.carry.data] if self.carry is not None else []

    def verify_(self) -> None:
        names = self.carry_names
        if len(set(names)) != len(names):
            raise VerifyException(f"sym.evolve carries a buffer twice: {names}")
        module = self.parent_op()
        if module is None:
            return
        scheme = SymbolTable.lookup_symbol(module, self.scheme)
        if not isinstance(scheme, SchemeOp):
            return
        for op in scheme.walk():
            if isinstance(op, UpdateOp) and op.comp_name is not None \
                    and op.comp_name not in names:
                raise VerifyException(
                    f"the update of @{op.target_name} is compensated in @{op.comp_name}, "
                    f"which the sym.evolve does not carry (carry {names})")


FOLD_METHODS = ("auto", "squaring", "eigen", "expm")


@irdl_op_definition
class PropagateOp(_RunOp):
    """The time loop of a linear scheme folded into matrix powers (sym-fold-linear's decision,
    with its `reason`): the one-step map M of the scheme, built exactly at run time (`auto`,
    `squaring`, `eigen`: from the compiled step; `expm`: the matrix exponential of the linear
    vector field, for the exact flow), then its powers."""

    name = "sym.propagate"
    method = prop_def(StringAttr)
    reason = prop_def(StringAttr)
    assembly_format = "$scheme `save` $save `method` $method `reason` $reason attr-dict"

    def __init__(self, scheme: str, method: str = "auto", save: Sequence[str] = ("q", "p", "H"),
                 reason: str = ""):
        super().__init__(scheme, save, method=StringAttr(method), reason=StringAttr(reason))

    def verify_(self) -> None:
        if self.method.data not in FOLD_METHODS:
            raise VerifyException(f"fold method must be one of {FOLD_METHODS}")


Sym = Dialect(
    "sym", [SchemeOp, FlowOp, UpdateOp, LinearOp, KeplerOp, BorisOp, MidpointOp, RepeatOp,
            EvolveOp, PropagateOp],
    [],
)
