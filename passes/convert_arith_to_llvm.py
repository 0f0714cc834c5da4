"""`convert-arith-to-llvm`: scalar `arith` ops to the `llvm` dialect.

xDSL ships no arith -> llvm lowering, so this is ours. Index-typed operands are
cast to i64 (see `llvm_types`); results are cast back so the pass can run in
any order with the other conversions.

Floating-point semantics are kept exactly: no fast-math flags are ever emitted
(flags present on the arith ops are dropped, not translated), because the front
half relies on compensated (Kahan) summation surviving optimisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tpc.passes.llvm_types import from_llvm, llvm_type, to_llvm_all, unsupported
from xdsl.context import Context
from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    i1,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

PASS_NAME = "convert-arith-to-llvm"

# Emitters take (op, converted operands, op list to append to) and return the
# LLVM-typed result value.
Emitter = Callable[[Operation, list[SSAValue], list[Operation]], SSAValue]


def _emit(ops: list[Operation], op: Operation) -> SSAValue:
    ops.append(op)
    return op.results[0]


def _binary(cls: type[Operation]) -> Emitter:
    return lambda _op, a, ops: _emit(ops, cls(a[0], a[1]))


def _cast(cls: type[Operation]) -> Emitter:
    return lambda op, a, ops: _emit(ops, cls(a[0], llvm_type(op.results[0].type)))


def _int_const(value: int, typ: Attribute, ops: list[Operation]) -> SSAValue:
    return _emit(ops, llvm.ConstantOp(IntegerAttr(value, typ), typ))


def _icmp(pred: str, lhs: SSAValue, rhs: SSAValue, ops: list[Operation]) -> SSAValue:
    flag = llvm.ICmpPredicateFlag(pred)
    return _emit(ops, llvm.ICmpOp(lhs, rhs, IntegerAttr(flag.to_int(), 64)))


def _constant(op: Operation, _a: list[SSAValue], ops: list[Operation]) -> SSAValue:
    value = op.properties.get("value")
    typ = llvm_type(op.results[0].type)
    if isinstance(value, IntegerAttr):
        raw = value.value.data
        if typ == i1:
            raw &= 1  # i1 "true" may be stored as -1
        return _emit(ops, llvm.ConstantOp(IntegerAttr(raw, typ), typ))
    if isinstance(value, FloatAttr):
        return _emit(ops, llvm.ConstantOp(value, typ))
    raise unsupported(PASS_NAME, op, f"constant value {value} (only scalar int/float)")


def _cmpi(op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
    from xdsl.dialects.arith import CMPI_COMPARISON_OPERATIONS

    pred = CMPI_COMPARISON_OPERATIONS[op.properties["predicate"].value.data]
    return _icmp(pred, a[0], a[1], ops)


def _cmpf(op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
    from xdsl.dialects.arith import CMPF_COMPARISON_OPERATIONS

    pred = CMPF_COMPARISON_OPERATIONS[op.properties["predicate"].value.data]
    if pred in ("false", "true"):
        # The llvm translator has no always-false/true fcmp; a constant is exact.
        return _int_const(1 if pred == "true" else 0, i1, ops)
    return _emit(ops, llvm.FCmpOp(a[0], a[1], pred))


def _select_pred(pred: str) -> Emitter:
    """max/min on integers as icmp + select (no intrinsic declarations needed)."""

    def emit(_op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
        cond = _icmp(pred, a[0], a[1], ops)
        return _emit(ops, llvm.SelectOp(cond, a[0], a[1]))

    return emit


def _float_intrinsic(base: str) -> Emitter:
    def emit(op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
        typ = op.results[0].type
        name = f"llvm.{base}.{_float_suffix(op, typ)}"
        return _emit(ops, llvm.CallIntrinsicOp(name, a, [typ]))

    return emit


def _float_suffix(op: Operation, typ: Attribute) -> str:
    if typ == builtin.f64:
        return "f64"
    if typ == builtin.f32:
        return "f32"
    raise unsupported(PASS_NAME, op, f"float type {typ}")


def _fp_to_int_sat(base: str) -> Emitter:
    """fptosi/fptoui via the saturating intrinsics.

    The llvm dialect has no fptosi op. `llvm.fptosi.sat` agrees with fptosi on
    every in-range input and is defined (saturates, NaN -> 0) where fptosi
    would be poison, so it is a valid refinement.
    """

    def emit(op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
        res = llvm_type(op.results[0].type)
        if not isinstance(res, IntegerType):
            raise unsupported(PASS_NAME, op, f"result type {res}")
        src = _float_suffix(op, a[0].type)
        name = f"llvm.{base}.sat.i{res.width.data}.{src}"
        return _emit(ops, llvm.CallIntrinsicOp(name, a, [res]))

    return emit


def _int_resize(signed: bool) -> Emitter:
    """index_cast / extsi / trunci: pick trunc, sext/zext or nothing by width."""

    def emit(op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
        src = a[0].type
        dst = llvm_type(op.results[0].type)
        assert isinstance(src, IntegerType) and isinstance(dst, IntegerType)
        sw, dw = src.width.data, dst.width.data
        if sw == dw:
            return a[0]
        if sw > dw:
            return _emit(ops, llvm.TruncOp(a[0], dst))
        cls = llvm.SExtOp if signed else llvm.ZExtOp
        return _emit(ops, cls(a[0], dst))

    return emit


def _floordivsi(_op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
    """q = a sdiv b, minus one when the remainder is non-zero and its sign
    differs from the divisor's (round toward -inf)."""
    lhs, rhs = a
    typ = lhs.type
    quot = _emit(ops, llvm.SDivOp(lhs, rhs))
    rem = _emit(ops, llvm.SRemOp(lhs, rhs))
    zero = _int_const(0, typ, ops)
    one = _int_const(1, typ, ops)
    rem_nz = _icmp("ne", rem, zero, ops)
    rem_neg = _icmp("slt", rem, zero, ops)
    rhs_neg = _icmp("slt", rhs, zero, ops)
    signs_differ = _emit(ops, llvm.XOrOp(rem_neg, rhs_neg))
    adjust = _emit(ops, llvm.AndOp(rem_nz, signs_differ))
    quot_m1 = _emit(ops, llvm.SubOp(quot, one))
    return _emit(ops, llvm.SelectOp(adjust, quot_m1, quot))


def _ceildivsi(_op: Operation, a: list[SSAValue], ops: list[Operation]) -> SSAValue:
    """q = a sdiv b, plus one when the remainder is non-zero and has the same
    sign as the divisor (round toward +inf)."""
    lhs, rhs = a
    typ = lhs.type
    quot = _emit(ops, llvm.SDivOp(lhs, rhs))
    rem = _emit(ops, llvm.SRemOp(lhs, rhs))
    zero = _int_const(0, typ, ops)
    one = _int_const(1, typ, ops)
    rem_nz = _icmp("ne", rem, zero, ops)
    rem_neg = _icmp("slt", rem, zero, ops)
    rhs_neg = _icmp("slt", rhs, zero, ops)
    same_sign = _icmp("eq", rem_neg, rhs_neg, ops)
    adjust = _emit(ops, llvm.AndOp(rem_nz, same_sign))
    quot_p1 = _emit(ops, llvm.AddOp(quot, one))
    return _emit(ops, llvm.SelectOp(adjust, quot_p1, quot))


EMITTERS: dict[str, Emitter] = {
    "arith.constant": _constant,
    "arith.addi": _binary(llvm.AddOp),
    "arith.subi": _binary(llvm.SubOp),
    "arith.muli": _binary(llvm.MulOp),
    "arith.divsi": _binary(llvm.SDivOp),
    "arith.divui": _binary(llvm.UDivOp),
    "arith.remsi": _binary(llvm.SRemOp),
    "arith.remui": _binary(llvm.URemOp),
    "arith.floordivsi": _floordivsi,
    "arith.ceildivsi": _ceildivsi,
    "arith.andi": _binary(llvm.AndOp),
    "arith.ori": _binary(llvm.OrOp),
    "arith.xori": _binary(llvm.XOrOp),
    "arith.shli": _binary(llvm.ShlOp),
    "arith.shrsi": _binary(llvm.AShrOp),
    "arith.shrui": _binary(llvm.LShrOp),
    "arith.maxsi": _select_pred("sgt"),
    "arith.minsi": _select_pred("slt"),
    "arith.maxui": _select_pred("ugt"),
    "arith.minui": _select_pred("ult"),
    "arith.addf": _binary(llvm.FAddOp),
    "arith.subf": _binary(llvm.FSubOp),
    "arith.mulf": _binary(llvm.FMulOp),
    "arith.divf": _binary(llvm.FDivOp),
    "arith.remf": _binary(llvm.FRemOp),
    "arith.negf": lambda _op, a, ops: _emit(ops, llvm.FNegOp(a[0])),
    # maximumf/minimumf propagate NaN (IEEE 754-2019 maximum), maxnumf/minnumf
    # return the non-NaN operand: these are exactly the two LLVM intrinsic pairs.
    "arith.maximumf": _float_intrinsic("maximum"),
    "arith.minimumf": _float_intrinsic("minimum"),
    "arith.maxnumf": _float_intrinsic("maxnum"),
    "arith.minnumf": _float_intrinsic("minnum"),
    "arith.cmpi": _cmpi,
    "arith.cmpf": _cmpf,
    "arith.select": lambda _op, a, ops: _emit(ops, llvm.SelectOp(a[0], a[1], a[2])),
    "arith.index_cast": _int_resize(signed=True),
    "arith.index_castui": _int_resize(signed=False),
    "arith.extsi": _int_resize(signed=True),
    "arith.extui": _int_resize(signed=False),
    "arith.trunci": _int_resize(signed=True),
    "arith.sitofp": _cast(llvm.SIToFPOp),
    "arith.fptosi": _fp_to_int_sat("fptosi"),
    "arith.fptoui": _fp_to_int_sat("fptoui"),
    "arith.extf": _cast(llvm.FPExtOp),
    "arith.truncf": _cast(llvm.FPTruncOp),
    "arith.bitcast": _cast(llvm.BitcastOp),
}


class ArithToLLVMPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not op.name.startswith("arith."):
            return
        emitter = EMITTERS.get(op.name)
        if emitter is None:
            raise unsupported(PASS_NAME, op, "no llvm lowering for this arith op")
        if len(op.results) != 1:
            raise unsupported(PASS_NAME, op, "expected exactly one result")
        result_type = op.results[0].type
        if not isinstance(llvm_type(result_type), IntegerType | Float32Type | Float64Type):
            raise unsupported(PASS_NAME, op, f"only scalar types, got {result_type}")
        new_ops: list[Operation] = []
        args = to_llvm_all(op.operands, new_ops)
        value = emitter(op, args, new_ops)
        if isinstance(result_type, IndexType) or value.type != result_type:
            value = from_llvm(value, result_type, new_ops)
        rewriter.replace(op, new_ops, [value])


@dataclass(frozen=True)
class ConvertArithToLLVMPass(ModulePass):
    """Lower scalar arith ops to llvm ops (index as i64, no fast-math)."""

    name = "convert-arith-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        PatternRewriteWalker(ArithToLLVMPattern()).rewrite_module(op)
