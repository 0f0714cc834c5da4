"""sym-gpu-kernels: GPU entry points around the func-level module of `sym-lower-loops`.

Runs after `sym-lower-loops` (the `run`, `energy`, `grad_<x>` func.funcs) and adds kernels:
func.funcs marked with the unit attribute `tpc.kernel`, which `tpc.runtime.ptx` gives the
`ptx_kernel` calling convention (every other function becomes internal and is inlined).

ensemble_run -- many independent copies of one small system, one thread per member:
    ensemble_run(q, p, params, inputs..., sizes..., dt, nsnap, stride, step0,
                 out_q, out_p, out_H, g, work, status, count, params_stride, n)
    member b = ctaid.x * ntid.x + tid.x; threads with b >= count return at once. With
    n = one member's state size (passed by the host, which knows it), member b owns
        q, p, g      [b*n,          (b+1)*n)          (state and gradient scratch)
        work         [b*3n,         (b+1)*3n)         (implicit-midpoint scratch)
        out_q, out_p [b*nsnap*n,    (b+1)*nsnap*n)    (snapshots, member-major)
        out_H        [b*nsnap,      (b+1)*nsnap)
        params       [b*params_stride, ...)           (params_stride 0: shared params)
    and runs the whole `run` time loop on them; its i64 status goes to status[b] (stored as
    f64 so that all buffers are memref<?xf64>: -1.0 when all went well, see sym-lower-loops).
    Inputs and sizes are shared by all members. This is the batched-run layout
    (`Simulation.run(..., batch=B, device="cuda")`).

    The thread ids are read with `llvm.call_intrinsic` of `llvm.nvvm.read.ptx.sreg.*`, and a
    member's slice is an `llvm.getelementptr` between two `unrealized_conversion_cast`s
    (memref<?xf64> <-> !llvm.ptr under the bare-pointer ABI) that the LLVM lowering's
    `reconcile-unrealized-casts` folds away.

pair_forces -- NOT generated yet. Planned: one thread per particle k computing dH/dq[k] in
    gather form from the ham.gradient's pair_sum body (for `i < j` pairs: the contribution to
    the first index from body(k, j), j > k, plus the one to the second index from body(j, k),
    j < k), with the j loop tiled through an addrspace(3) array and `llvm.nvvm.barrier0`.

The kernels use NVVM intrinsics, so only the nvptx lowering may see this pass's output; the
existing functions are left untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.passes.sym_lower_loops import BUF
from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, llvm, memref, scf
from xdsl.dialects.builtin import (
    IndexType,
    IntegerAttr,
    ModuleOp,
    UnitAttr,
    f64,
    i32,
    i64,
)
from xdsl.ir import Block, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

KERNEL_ATTR = "tpc.kernel"
INDEX = IndexType()
SREG = "llvm.nvvm.read.ptx.sreg."


def kernel_names(module: ModuleOp) -> list[str]:
    """Names of the func.funcs / llvm.funcs marked as kernels."""
    return [op.sym_name.data for op in module.ops
            if isinstance(op, func.FuncOp | llvm.FuncOp) and KERNEL_ATTR in op.attributes]


class _B:
    """A tiny op appender."""

    def __init__(self, block: Block):
        self.block = block

    def __call__(self, op):
        self.block.add_op(op)
        return op.results[0] if op.results else None

    def idx(self, v: int) -> SSAValue:
        return self(arith.ConstantOp(IntegerAttr(v, INDEX)))

    def sreg(self, name: str) -> SSAValue:
        v = self(llvm.CallIntrinsicOp(SREG + name, [], [i32]))
        return self(arith.IndexCastOp(self(arith.ExtUIOp(v, i64)), INDEX))

    def offset(self, buf: SSAValue, off: SSAValue) -> SSAValue:
        """memref<?xf64> view starting `off` elements into `buf`."""
        ptr = self(builtin.UnrealizedConversionCastOp.get([buf], [llvm.LLVMPointerType()]))
        off64 = self(arith.IndexCastOp(off, i64))
        gep = self(llvm.GEPOp(ptr, [llvm.GEP_USE_SSA_VAL], f64, ssa_indices=[off64],
                              inbounds=True))
        return self(builtin.UnrealizedConversionCastOp.get([gep], [BUF]))


def _find(module: ModuleOp, pred) -> func.FuncOp | None:
    return next((op for op in module.ops if isinstance(op, func.FuncOp) and pred(op)), None)


def add_kernels(module: ModuleOp) -> None:
    """Add the kernels to a func-level module from sym-lower-loops (idempotent)."""
    run = _find(module, lambda f: f.sym_name.data == "run")
    if run is None:
        raise PassFailedException("sym-gpu-kernels: no 'run' function (run sym-lower-loops)")
    if _find(module, lambda f: KERNEL_ATTR in f.attributes) is not None:
        return
    n_env = len(run.function_type.inputs.data) - 9
    # run(env..., dt, nsnap, stride, step0, out_q, out_p, out_H, g, work)
    module.body.block.add_op(build_ensemble_run(run, n_env))


@dataclass(frozen=True)
class SymGpuKernelsPass(ModulePass):
    """Add GPU kernels (ensemble_run) around the func-level loops from sym-lower-loops."""

    name = "sym-gpu-kernels"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        add_kernels(op)


def build_ensemble_run(run: func.FuncOp, n_env: int) -> func.FuncOp:
    """The ensemble_run kernel around `run` (signature in the module header)."""
    types = [*run.function_type.inputs.data, BUF, INDEX, INDEX, INDEX]
    block = Block(arg_types=types)
    b = _B(block)
    args = list(block.args)
    env = args[:n_env]
    dt, nsnap, stride, step0, out_q, out_p, out_h, g, work = args[n_env:n_env + 9]
    status, count, pstride, n = args[n_env + 9:]
    q, p, params = env[:3]

    member = b(arith.AddiOp(b(arith.MuliOp(b.sreg("ctaid.x"), b.sreg("ntid.x"))),
                            b.sreg("tid.x")))
    inside = b(arith.CmpiOp(member, count, "ult"))
    then = Block()
    t = _B(then)
    bn = t(arith.MuliOp(member, n))
    b3n = t(arith.MuliOp(bn, t.idx(3)))
    bs = t(arith.MuliOp(member, nsnap))
    bsn = t(arith.MuliOp(bs, n))
    bp = t(arith.MuliOp(member, pstride))
    new_env = [t.offset(q, bn), t.offset(p, bn), t.offset(params, bp), *env[3:]]
    st = t(func.CallOp("run", [*new_env, dt, nsnap, stride, step0, t.offset(out_q, bsn),
                               t.offset(out_p, bsn), t.offset(out_h, bs), t.offset(g, bn),
                               t.offset(work, b3n)], [i64]))
    t(memref.StoreOp.get(t(arith.SIToFPOp(st, f64)), status, [member]))
    t(scf.YieldOp())
    b(scf.IfOp(inside, [], Region(then), Region(Block([scf.YieldOp()]))))
    b(func.ReturnOp())
    fn = func.FuncOp("ensemble_run", (types, []), Region(block))
    fn.attributes[KERNEL_ATTR] = UnitAttr()
    return fn
