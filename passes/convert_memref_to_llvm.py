"""`convert-memref-to-llvm`: 1-D memref access over bare pointers.

A memref is just `!llvm.ptr` to its first element (see `llvm_types`), so
    memref.load %m[%i]  ->  llvm.getelementptr inbounds %p[%i] + llvm.load
    memref.store        ->  llvm.getelementptr inbounds %p[%i] + llvm.store
    memref.alloca       ->  llvm.alloca (static sizes hoisted to the entry block)
    memref.alloc        ->  llvm.call @malloc(count * element size); memref.dealloc -> @free
                            (scratch too large for the stack, such as a cell list of N entries;
                            the CPU target only: device code has no malloc of ours)
GEPs are emitted directly (no ptrtoint arithmetic) so LLVM's alias analysis
and vectoriser see plain array indexing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tpc.passes.llvm_types import (
    LLVMLoweringError,
    byte_size,
    check_flat_memref,
    element_llvm_type,
    from_llvm,
    to_llvm,
    unsupported,
)
from xdsl.context import Context
from xdsl.dialects import builtin, llvm, memref
from xdsl.dialects.builtin import IntegerAttr, MemRefType, i64
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import SymbolTable

PASS_NAME = "convert-memref-to-llvm"

# Functions whose entry block takes hoisted static allocas.
_FUNCTION_OPS = ("func.func", "llvm.func")


def _memref_type(op: Operation, value: SSAValue) -> MemRefType:
    typ = value.type
    if not isinstance(typ, MemRefType):
        raise unsupported(PASS_NAME, op, f"expected a memref operand, got {typ}")
    try:
        check_flat_memref(typ, PASS_NAME)
    except LLVMLoweringError as err:
        raise unsupported(PASS_NAME, op, str(err)) from None
    return typ


def _element_address(
    op: Operation, ref: SSAValue, indices: tuple[SSAValue, ...], new_ops: list[Operation]
) -> tuple[SSAValue, MemRefType]:
    typ = _memref_type(op, ref)
    if len(indices) != 1:
        raise unsupported(PASS_NAME, op, f"expected one index, got {len(indices)}")
    ptr = to_llvm(ref, new_ops)
    index = to_llvm(indices[0], new_ops)
    gep = llvm.GEPOp.from_mixed_indices(
        ptr, [index], pointee_type=element_llvm_type(typ), inbounds=True
    )
    new_ops.append(gep)
    return gep.result, typ


class LoadPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, memref.LoadOp):
            return
        new_ops: list[Operation] = []
        addr, typ = _element_address(op, op.memref, tuple(op.indices), new_ops)
        elem = element_llvm_type(typ)
        load = llvm.LoadOp(addr, elem, alignment=byte_size(elem))
        new_ops.append(load)
        value = from_llvm(load.dereferenced_value, op.res.type, new_ops)
        rewriter.replace(op, new_ops, [value])


class StorePattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, memref.StoreOp):
            return
        new_ops: list[Operation] = []
        addr, typ = _element_address(op, op.memref, tuple(op.indices), new_ops)
        value = to_llvm(op.value, new_ops)
        new_ops.append(llvm.StoreOp(value, addr, alignment=byte_size(element_llvm_type(typ))))
        rewriter.replace(op, new_ops, [])


def _entry_block(op: Operation) -> Block | None:
    parent = op.parent_op()
    while parent is not None and parent.name not in _FUNCTION_OPS:
        parent = parent.parent_op()
    if parent is None or not parent.regions or not parent.regions[0].blocks:
        return None
    return parent.regions[0].blocks.first


class AllocaPattern(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not isinstance(op, memref.AllocaOp):
            return
        typ = _memref_type(op, op.memref)
        elem = element_llvm_type(typ)
        align = max(byte_size(elem), op.alignment.value.data if op.alignment else 0)
        new_ops: list[Operation] = []
        if op.dynamic_sizes:
            count = to_llvm(op.dynamic_sizes[0], new_ops)
            where = InsertPoint.before(op)
        else:
            const = llvm.ConstantOp(IntegerAttr(typ.get_shape()[0], i64), i64)
            new_ops.append(const)
            count = const.result
            # A static alloca in the entry block is what SROA/mem2reg promote,
            # and it does not grow the stack when the alloca sits in a loop.
            entry = _entry_block(op)
            where = InsertPoint.at_start(entry) if entry is not None else InsertPoint.before(op)
        alloca = llvm.AllocaOp(count, elem, alignment=align)
        new_ops.append(alloca)
        value = from_llvm(alloca.res, typ, new_ops)
        rewriter.insert(new_ops, where)
        rewriter.replace(op, [], [value])


@dataclass
class HeapPattern(RewritePattern):
    decls: dict[str, llvm.FuncOp] = field(default_factory=dict)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if isinstance(op, memref.AllocOp):
            typ = _memref_type(op, op.memref)
            new_ops: list[Operation] = []
            if op.dynamic_sizes:
                count = to_llvm(op.dynamic_sizes[0], new_ops)
            else:
                const = llvm.ConstantOp(IntegerAttr(typ.get_shape()[0], i64), i64)
                new_ops.append(const)
                count = const.result
            size = llvm.ConstantOp(IntegerAttr(byte_size(element_llvm_type(typ)), i64), i64)
            nbytes = llvm.MulOp(count, size.result)
            call = llvm.CallOp("malloc", nbytes.res, return_type=llvm.LLVMPointerType())
            self._declare("malloc", [i64], llvm.LLVMPointerType())
            new_ops += [size, nbytes, call]
            value = from_llvm(call.returned, typ, new_ops)
            rewriter.replace(op, new_ops, [value])
        elif isinstance(op, memref.DeallocOp):
            new_ops = []
            ptr = to_llvm(op.memref, new_ops)
            self._declare("free", [llvm.LLVMPointerType()], llvm.LLVMVoidType())
            new_ops.append(llvm.CallOp("free", ptr))
            rewriter.replace(op, new_ops, [])

    def _declare(self, name: str, inputs: list, output) -> None:
        if name not in self.decls:
            self.decls[name] = llvm.FuncOp(name, llvm.LLVMFunctionType(inputs, output),
                                           linkage=llvm.LinkageAttr("external"))


class RejectOtherMemrefOps(RewritePattern):
    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if op.name.startswith("memref.") and not isinstance(
            op, memref.LoadOp | memref.StoreOp | memref.AllocaOp | memref.AllocOp
            | memref.DeallocOp
        ):
            raise unsupported(PASS_NAME, op, "only load, store, alloca, alloc and dealloc are "
                                             "supported")


@dataclass(frozen=True)
class ConvertMemrefToLLVMPass(ModulePass):
    """Lower memref.load/store/alloca of flat 1-D memrefs to llvm GEP/load/store/alloca."""

    name = "convert-memref-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        heap = HeapPattern()
        PatternRewriteWalker(
            GreedyRewritePatternApplier(
                [LoadPattern(), StorePattern(), AllocaPattern(), heap, RejectOtherMemrefOps()]
            )
        ).rewrite_module(op)
        where = InsertPoint.at_start(op.body.block)
        for name, decl in heap.decls.items():
            if SymbolTable.lookup_symbol(op, name) is None:
                Rewriter.insert_op(decl, where)
                where = InsertPoint.after(decl)
