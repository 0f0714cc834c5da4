"""Shared pieces of the `*-to-llvm` conversion passes.

Every conversion pass works op-by-op: it converts the operands it needs to
LLVM-compatible types with `builtin.unrealized_conversion_cast`, emits `llvm`
ops, and casts results back to the original types. Each pass is therefore valid
on its own (and testable on its own); `reconcile-unrealized-casts` removes the
cast pairs once the whole ladder has run.

Type mapping (the ABI agreed with the front half):
  index                 -> i64
  memref<?xT>, <NxT>    -> !llvm.ptr   (bare pointer, sizes travel separately)
  everything else       -> unchanged (i1/i32/i64/f32/f64 are LLVM types already)
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntAttr,
    IntegerType,
    MemRefType,
    NoneAttr,
    StridedLayoutAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter

from tpc.diagnostics import TpcError


class LLVMLoweringError(TpcError):
    """An op or type that the CPU/GPU back end does not know how to lower.

    A TpcError, so the driver reports it as `error: <message>` without a traceback."""


def unsupported(pass_name: str, op: Operation, why: str = "") -> LLVMLoweringError:
    detail = f": {why}" if why else ""
    return LLVMLoweringError(f"{pass_name}: cannot lower '{op.name}'{detail}")


def check_flat_memref(typ: MemRefType, where: str) -> None:
    """Only flat 1-D identity-layout memrefs cross the bare-pointer ABI."""
    if typ.get_num_dims() != 1:
        raise LLVMLoweringError(f"{where}: only 1-D memrefs are supported, got {typ}")
    layout = typ.layout
    if isinstance(layout, StridedLayoutAttr):
        strides = [s.data if isinstance(s, IntAttr) else None for s in layout.strides.data]
        offset = layout.offset.data if isinstance(layout.offset, IntAttr) else None
        if strides != [1] or offset != 0:
            raise LLVMLoweringError(f"{where}: non-identity layout is not supported: {typ}")
    elif not isinstance(layout, NoneAttr):
        raise LLVMLoweringError(f"{where}: non-identity layout is not supported: {typ}")


def llvm_type(typ: Attribute) -> Attribute:
    """The LLVM-dialect type a value of `typ` is represented by."""
    if isinstance(typ, IndexType):
        return i64
    if isinstance(typ, MemRefType):
        check_flat_memref(typ, "type conversion")
        return llvm.LLVMPointerType()
    return typ


def element_llvm_type(typ: MemRefType) -> Attribute:
    return llvm_type(typ.element_type)


def byte_size(typ: Attribute) -> int:
    """Natural alignment of a scalar element; used for load/store `align`."""
    if isinstance(typ, Float64Type):
        return 8
    if isinstance(typ, Float32Type):
        return 4
    if isinstance(typ, IntegerType):
        return max(1, typ.width.data // 8)
    if isinstance(typ, llvm.LLVMPointerType):
        return 8
    raise LLVMLoweringError(f"no byte size known for element type {typ}")


def to_llvm(value: SSAValue, new_ops: list[Operation]) -> SSAValue:
    """`value` as its LLVM type, appending a cast to `new_ops` when needed."""
    target = llvm_type(value.type)
    if target == value.type:
        return value
    cast = builtin.UnrealizedConversionCastOp.get([value], [target])
    new_ops.append(cast)
    return cast.results[0]


def to_llvm_all(values: Sequence[SSAValue], new_ops: list[Operation]) -> list[SSAValue]:
    return [to_llvm(v, new_ops) for v in values]


def from_llvm(value: SSAValue, original: Attribute, new_ops: list[Operation]) -> SSAValue:
    """Cast an LLVM-typed `value` back to the `original` type its users expect."""
    if value.type == original:
        return value
    cast = builtin.UnrealizedConversionCastOp.get([value], [original])
    new_ops.append(cast)
    return cast.results[0]


def convert_block_args(block: Block) -> None:
    """Give `block` LLVM-typed arguments; casts at its start keep old uses valid."""
    casts: list[Operation] = []
    for arg in block.args:
        target = llvm_type(arg.type)
        if target == arg.type:
            continue
        original = arg.type
        new_arg = Rewriter.replace_value_with_new_type(arg, target)
        cast = builtin.UnrealizedConversionCastOp.get([new_arg], [original])
        new_arg.replace_uses_with_if(cast.results[0], lambda use, c=cast: use.operation is not c)
        casts.append(cast)
    if casts:
        Rewriter.insert_op(casts, InsertPoint.at_start(block))
