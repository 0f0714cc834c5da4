"""sym-gpu-kernels: GPU kernels built from the ham and sym IR.

Runs on the ham+sym module after sym-lower-flows and before sym-lower-loops, so the kernels are
built from the IR itself (the gradient regions of H's parts, the scheme's sym.update stages):
func.funcs marked with the unit attribute `tpc.kernel`, which `tpc.runtime.ptx` gives the
`ptx_kernel` calling convention (every other function becomes internal and is inlined).
sym-lower-loops keeps the func.funcs it finds and adds `run`, which ensemble_run calls;
`tpc.lowering.make_loops(..., gpu=True)` is that sequence.

ensemble_run -- many independent copies of one small system, one thread per member:
    ensemble_run(q, p, params, inputs..., sizes..., dt, nsnap, stride, step0,
                 out_q, out_p, out_H, g, work, status, carry..., count, params_stride, n)
    member b = ctaid.x * ntid.x + tid.x; threads with b >= count return at once. With
    n = one member's state size (passed by the host, which knows it), member b owns
        q, p, g      [b*n,          (b+1)*n)          (state and gradient scratch)
        carry...     [b*n,          (b+1)*n)          (the evolve's carried state: with
                                                       sym-kahan, kahan_q and kahan_p)
        work         [b*3n,         (b+1)*3n)         (implicit-midpoint scratch)
        out_q, out_p [b*nsnap*n,    (b+1)*nsnap*n)    (snapshots, member-major)
        out_H        [b*nsnap,      (b+1)*nsnap)      (f64 in every precision)
        params       [b*params_stride, ...)           (params_stride 0: shared params)
    and runs the whole `run` time loop on them with status[b] as its status (f64,
    memref<?xf64>, in either precision: -1.0 when all went well, see sym-lower-loops).
    Inputs and sizes are shared by all members. This is the batched-run layout
    (`Simulation.run(..., batch=B, device="cuda")`).

    The thread ids are read with `llvm.call_intrinsic` of `llvm.nvvm.read.ptx.sreg.*`, and a
    member's slice is an `llvm.getelementptr` between two `unrealized_conversion_cast`s
    (memref<?xf64> <-> !llvm.ptr under the bare-pointer ABI) that the LLVM lowering's
    `reconcile-unrealized-casts` folds away.

pair_forces -- dH/dq in gather form, one thread per particle (row of the state), for a system
    whose dH/dq gradient is a set of row loops over all particles (`ham.pair_sum`, kind `<` or
    `!=`, and single `ham.sum`s, e.g. external fields):
        pair_forces(q, p, params, inputs..., sizes..., out_g)
    thread k = ctaid.x * ntid.x + tid.x writes row k of out_g (every component, so out_g
    needs no clearing) when k < N, N = the state's first dimension:
      * `i < j` pairs: the accumulates to the FIRST index of body(i=k, j) for j > k, plus
        those to the SECOND index of body(i=j, j=k) for j < k;
      * `i != j` pairs: both, for every j != k;
      * single sums: the accumulates of body(i=k).
    Only the accumulates that target row k are kept (the others, and the ops only they need,
    are dropped from a clone of the body before lowering: no atomics, no scatter). Ops of the
    body that do not depend on j (the loads of row k, m[k] * G...) are hoisted out of the j
    loop. The j loop is tiled: for each tile of ntid.x rows, every thread of the block
    (including those with k >= N, guarded by j < N) copies row j = tile + tid.x of each field
    that the body loads at j (q[j], m[j]: whole rows) into an addrspace(3) array
    (`llvm.mlir.global internal` in addrspace 3, MAX_TILE rows: blocks of at most MAX_TILE =
    256 threads), `llvm.nvvm.barrier0`, every thread runs the tile's j from shared memory,
    `llvm.nvvm.barrier0` again before the next tile is loaded. Threads with k >= N compute
    with k clamped to N - 1 and store nothing (so all threads reach every barrier; the host
    launches no block when N = 0).
    Supported shape: the loops run from 0 to N, every accumulate in a loop body indexes a
    row by one of the body's indices (further indices constant), the trailing dimensions of
    the state are static. Anything else: no pair_forces (gather_unsupported says why).

block_run -- many independent copies of a small system, one per BLOCK, one row per thread:
        block_run(q, p, params, inputs..., sizes..., dt, nsnap, stride, step0,
                  out_q, out_p, status, carry..., params_stride)
    member b = ctaid.x (q, p, carry, out_q, out_p, params sliced as in ensemble_run, n = the state
    size computed from the sizes), thread k = tid.x owns row k (blockDim.x >= rows, at most
    MAX_TILE; threads with k >= rows only take part in the barriers). The whole `run` time
    loop runs in the kernel: the one TimeLoop of sym-lower-loops with the BlockMachine
    execution model: per sym.update, row k's gradient of the update's parts in gather form
    (the pair_forces lowering, tiles included), barrier (every thread has read the old
    state), row k updated with the CPU run's axpy arithmetic (compensated_add for a
    compensated update, its compensation row in the carried buffer), barrier. FSAL and the
    closing kick at snapshot boundaries as in `run`; thread k writes its row of out_q/out_p
    at each snapshot. No energy (the runner's H is NaN). Status: status[b] (f64, -1.0 on entry)
    doubles as the block's flag: after each step each active thread checks its row
    (x * 0 == 0) and writes the step there if it is non-finite, then a barrier; every step and
    snapshot starts only while status[b] == -1, so the block stops consistently and, as in
    `run`, the snapshot holding the bad step is written and no later one.
    Built when block_unsupported says nothing: schemes of sym.update stages only (leapfrog,
    yoshida*: an implicit midpoint stage needs a block-wide iteration), every update's
    gradient in gather form (no pair sum needed). block_run_host (block_host_module) is the
    same machine for the CPU, the phases as loops over all rows with the gradient rows in a
    scratch buffer: tests compare it with the CPU `run`.

Shared-memory addresses are ptrtoint(addressof @tile) + 8 * index, inttoptr to !llvm.ptr<3>:
the xDSL -> llvmlite converter's getelementptr casts its base to an addrspace(0) pointer,
which LLVM rejects for an addrspace(3) global. NVPTX still selects ld/st.shared.

Precision (pass option `precision`, "f64" or "f32", as for sym-lower-loops, which must be given
the same): the float type T of every kernel (buffers memref<?xT>, arithmetic, shared tiles of
T, 4 or 8 bytes per element); status buffers are f64.

gather_q_host / gather_p_host -- the untiled gather loops (for k: for j: same bodies), no
    intrinsics, emitted only by `gather_module` for the CPU: tests compare them with the
    scatter-form grad_q/grad_p to validate the gather math without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpc.dialects import ham, sym
from tpc.passes.sym_lower_loops import (
    BUF,
    Emitter,
    Env,
    RegionLowering,
    TimeLoop,
    bind_env,
    buf_type,
    carry_buffer,
    compensated_add,
    env_types,
    float_type,
    make_func,
    nonfinite_probe,
    part_grad_name,
    run_types,
    state_size,
    steppable,
)
from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, llvm, scf
from xdsl.dialects.builtin import (
    IndexType,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    UnitAttr,
    VectorType,
    f32,
    f64,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import PassFailedException

KERNEL_ATTR = "tpc.kernel"
INDEX = IndexType()
SREG = "llvm.nvvm.read.ptx.sreg."


def kernel_names(module: ModuleOp) -> list[str]:
    """Names of the func.funcs / llvm.funcs marked as kernels."""
    return [op.sym_name.data for op in module.ops
            if isinstance(op, func.FuncOp | llvm.FuncOp) and KERNEL_ATTR in op.attributes]


class _B(Emitter):
    """The loop lowering's op appender, plus GPU thread ids and pointer offsets."""

    def idx(self, v: int) -> SSAValue:
        return self.i(v)

    def sreg(self, name: str) -> SSAValue:
        v = self(llvm.CallIntrinsicOp(SREG + name, [], [i32]))
        return self(arith.IndexCastOp(self(arith.ExtUIOp(v, i64)), INDEX))

    def offset(self, buf: SSAValue, off: SSAValue) -> SSAValue:
        """memref<?xT> view starting `off` elements into `buf` (T: its element type)."""
        typ = buf.type
        ptr = self(builtin.UnrealizedConversionCastOp.get([buf], [llvm.LLVMPointerType()]))
        off64 = self(arith.IndexCastOp(off, i64))
        gep = self(llvm.GEPOp(ptr, [llvm.GEP_USE_SSA_VAL], typ.element_type,
                              ssa_indices=[off64], inbounds=True))
        return self(builtin.UnrealizedConversionCastOp.get([gep], [typ]))


def _find(module: ModuleOp, pred) -> func.FuncOp | None:
    return next((op for op in module.ops if isinstance(op, func.FuncOp) and pred(op)), None)


def add_kernels(module: ModuleOp, precision: str = "f64") -> None:
    """Add every kernel the module's system and scheme allow (idempotent)."""
    ft = float_type(precision)
    system = _system(module)
    if system is None:
        raise PassFailedException(
            "sym-gpu-kernels: no ham.system (run it before sym-lower-loops)")
    if _find(module, lambda f: f.sym_name.data == "ensemble_run") is not None:
        return
    scheme = _scheme(module, system)
    exact = [op for op in scheme.walk() if isinstance(op, sym.LinearOp | sym.KeplerOp | sym.BorisOp)] \
        if scheme is not None else []
    if exact:
        raise PassFailedException(
            f"sym-gpu-kernels: integrator '{scheme.attributes['integrator'].data}' flows "
            f"parts {exact[0].parts} exactly ({exact[0].name}), which GPU kernels do not run "
            "yet; run it on the CPU, or name the parts so that each flow is a kick or a drift")
    carry = _carry(module, system)
    kernels = gpu_kernel_module(system, ft, scheme, carry)
    for op in list(kernels.ops):
        op.detach()
        module.body.block.add_op(op)
    if scheme is not None and steppable(scheme):
        module.body.block.add_op(build_ensemble_run(system, ft, len(carry)))
        # `run` comes from sym-lower-loops; declared here so the module verifies in between.
        module.body.block.add_op(func.FuncOp.external(
            "run", run_types(system, ft, ncarry=len(carry)), []))


@dataclass(frozen=True)
class SymGpuKernelsPass(ModulePass):
    """Add GPU kernels built from the ham and sym IR: ensemble_run, pair_forces, block_run."""

    name = "sym-gpu-kernels"
    precision: str = "f64"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        add_kernels(op, self.precision)
        # Device code has no heap scratch for a cell list: its pair sums test every pair.
        for pair in [o for o in op.walk() if isinstance(o, ham.PairSumOp)]:
            if "cells" in pair.attributes:
                del pair.attributes["cells"]


def build_ensemble_run(system: ham.SystemOp, ft: Attribute = f64,
                       ncarry: int = 0) -> func.FuncOp:
    """The ensemble_run kernel around `run` (signature in the module header)."""
    n_env = len(env_types(system, ft))
    run_in = run_types(system, ft, ncarry=ncarry)  # status (f64): one per member, as in run
    types = [*run_in, INDEX, INDEX, INDEX]
    block = Block(arg_types=types)
    b = _B(block)
    args = list(block.args)
    env = args[:n_env]
    dt, nsnap, stride, step0, out_q, out_p, out_h, g, work = args[n_env:n_env + 9]
    status = args[n_env + 9]
    carry = args[n_env + 10:n_env + 10 + ncarry]
    count, pstride, n = args[n_env + 10 + ncarry:]
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
    t(func.CallOp("run", [*new_env, dt, nsnap, stride, step0, t.offset(out_q, bsn),
                          t.offset(out_p, bsn), t.offset(out_h, bs), t.offset(g, bn),
                          t.offset(work, b3n), t.offset(status, member),
                          *[t.offset(c, bn) for c in carry]], []))
    t(scf.YieldOp())
    b(scf.IfOp(inside, [], Region(then), Region(Block([scf.YieldOp()]))))
    b(func.ReturnOp())
    fn = func.FuncOp("ensemble_run", (types, []), Region(block))
    fn.attributes[KERNEL_ATTR] = UnitAttr()
    return fn


# ------------------------------------------------------------------ gather kernels

MAX_TILE = 256
SHARED = 3  # the NVPTX shared address space
SPTR = llvm.LLVMPointerType(IntAttr(SHARED))


class GatherUnsupported(Exception):
    """The gradient is not a set of row loops that the gather form can invert."""


def _const_index(v: SSAValue) -> int | None:
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return op.value.value.data
    return None


def _is_rows(v: SSAValue, rows: int | str) -> bool:
    if isinstance(rows, int):
        return _const_index(v) == rows
    return isinstance(v.owner, ham.DimOp) and v.owner.size.string_value() == rows


def _row_offset(system: ham.SystemOp, field: str, indices, width: int) -> tuple[int, int]:
    """(static offset within a row, row size) of `field[arg, c1, c2...]`."""
    shape = system.field_shape(field)
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise GatherUnsupported(f"'{field}' has a symbolic trailing dimension")
    consts = [_const_index(v) for v in indices[1:]]
    if any(c is None for c in consts):
        raise GatherUnsupported(f"'{field}' is indexed by a non-constant column")
    off, stride = 0, 1
    for k in range(len(rest) - 1, -1, -1):
        if k < len(consts):
            off += consts[k] * stride
        stride *= rest[k]
    if off + width > stride:
        raise GatherUnsupported(f"'{field}' access past the end of its row")
    return off, stride


def _width(t: Attribute) -> int:
    return t.get_shape()[0] if isinstance(t, VectorType) else 1


def _has_accumulate(op: Operation) -> bool:
    return any(isinstance(o, ham.AccumulateOp) for o in op.walk())


@dataclass
class Role:
    """The part of one row loop's body that contributes to row k, with k = args[own]."""

    loop: ham.SumOp | ham.PairSumOp
    own: int
    body: Block  # a clone of the loop body, only accumulates to args[own] kept
    holder: Operation  # the clone that owns `body` (kept alive)

    @property
    def other(self) -> int | None:
        return None if isinstance(self.loop, ham.SumOp) else 1 - self.own

    def depends_on_other(self) -> set[Operation]:
        """Ops of the body that (transitively) use the other particle's index."""
        if self.other is None:
            return set()
        tainted: set[SSAValue] = {self.body.args[self.other]}
        ops: set[Operation] = set()
        for op in self.body.ops:
            uses = {o for sub in op.walk() for o in sub.operands}
            if uses & tainted or op.regions:
                ops.add(op)
                tainted.update(op.results)
        return ops


def _role(system: ham.SystemOp, loop, own: int, rows) -> Role | None:
    holder = loop.clone()
    body = holder.body.block
    for op in list(body.ops):
        if isinstance(op, ham.AccumulateOp):
            first = op.indices[0] if op.indices else None
            if first not in body.args:
                raise GatherUnsupported("an accumulate's row is not one of the loop's indices")
            if system.field_shape(op.field.string_value())[0] != rows:
                raise GatherUnsupported("an accumulate into a field of other rows")
            _row_offset(system, op.field.string_value(), op.indices, _width(op.value.type))
            if first is not body.args[own]:
                op.detach()
                op.erase()
        elif op.regions and _has_accumulate(op):
            raise GatherUnsupported("an accumulate nested in an inner loop")
    changed = True
    while changed:  # DCE: drop what only the dropped accumulates needed
        changed = False
        for op in reversed(list(body.ops)):
            if isinstance(op, ham.AccumulateOp | ham.YieldOp) or _has_accumulate(op):
                continue
            if all(not r.uses for r in op.results):
                op.detach()
                op.erase()
                changed = True
    if not any(isinstance(op, ham.AccumulateOp) for op in body.ops):
        return None
    return Role(loop, own, body, holder)


@dataclass
class GatherPlan:
    system: ham.SystemOp
    field: str
    rows: int | str
    rowsize: int
    prelude: list[Operation]
    loops: list[tuple[Operation, list[Role]]]

    @property
    def has_pairs(self) -> bool:
        return any(isinstance(lp, ham.PairSumOp) for lp, _ in self.loops)


def gather_plan(system: ham.SystemOp, field: str, parts=None) -> GatherPlan:
    """The gather form of d(sum of parts)/d(field) (all parts when None)."""
    grads = system.gradients(field, parts)
    if not grads:
        raise GatherUnsupported(f"no gradient for '{field}' (run ham-derive)")
    shape = system.state.shape.shape
    if not shape:
        raise GatherUnsupported("a scalar state has no rows")
    rows = shape[0]
    rowsize = _row_offset(system, field, [], 0)[1]
    prelude, loops = [], []
    for op in [o for grad in grads for o in grad.body.block.ops]:
        if isinstance(op, ham.YieldOp):
            continue
        if isinstance(op, ham.SumOp | ham.PairSumOp):
            if _const_index(op.lower) != 0 or not _is_rows(op.upper, rows):
                raise GatherUnsupported("a loop that does not run over all rows")
            if isinstance(op, ham.PairSumOp) and op.kind.data not in ("lt", "ne"):
                raise GatherUnsupported(f"pair kind '{op.kind.data}'")
            if op.results:
                # a sum over all rows that every row's gradient reads (|sum p|^2 / 2m):
                # each thread would need the whole reduction first
                raise GatherUnsupported("a reduction over all rows inside the gradient")
            owns = (0,) if isinstance(op, ham.SumOp) else (0, 1)
            roles = [r for own in owns if (r := _role(system, op, own, rows)) is not None]
            loops.append((op, roles))
        elif isinstance(op, ham.AccumulateOp) or op.regions:
            raise GatherUnsupported("an accumulate outside a row loop")
        else:
            prelude.append(op)
    if not loops:
        raise GatherUnsupported("no row loop in the gradient")
    return GatherPlan(system, field, rows, rowsize, prelude, loops)


def gather_unsupported(system: ham.SystemOp, field: str | None = None) -> str | None:
    """Why no gather kernel can be built for dH/d(field) (None: it can)."""
    try:
        plan = gather_plan(system, field or system.state.names[0])
    except GatherUnsupported as e:
        return str(e)
    if field is None and not plan.has_pairs:
        return "no pair sum in dH/dq"
    return None


class GatherLowering(RegionLowering):
    """RegionLowering whose accumulates add to per-row registers (`contrib`) and whose loads
    of the other particle's row may come from a shared-memory tile."""

    def __init__(self, env: Env, emit: Emitter, rowsize: int):
        self.ft = emit.ft
        super().__init__(env, emit)
        self.rowsize = rowsize
        self.contrib: list[SSAValue | None] = [None] * rowsize
        self.done: set[Operation] = set()  # hoisted ops
        self.tile: dict[str, str] = {}  # field -> shared global
        self.other: SSAValue | None = None  # the body arg read from the tile
        self.jj: SSAValue | None = None  # its position in the tile

    def op(self, op: Operation) -> None:
        e = self.emit
        if op in self.done:
            return
        if isinstance(op, ham.AccumulateOp):
            off, _ = _row_offset(self.env.system, op.field.string_value(), op.indices, 1)
            for c, v in enumerate(self.get(op.value)):
                old = self.contrib[off + c]
                self.contrib[off + c] = v if old is None else e.add(old, v)
            return
        if (isinstance(op, ham.LoadOp) and self.other is not None and op.indices
                and op.indices[0] is self.other and op.field_name in self.tile):
            width = _width(op.result.type)
            off, rs = _row_offset(self.env.system, op.field_name, op.indices, width)
            base = e.imul(self.jj, e.i(rs))
            vals = [e(llvm.LoadOp(_shared_ptr(e, op.field_name, e.iadd(base, e.i(off + c))),
                                  self.ft)) for c in range(width)]
            self.values[op.results[0]] = vals
            return
        super().op(op)

    def contribution(self, role: Role, e: Emitter, own: SSAValue, other: SSAValue | None,
                     accs: list[SSAValue]) -> list[SSAValue]:
        """accs + the role body's contributions with args[own] = own, args[other] = other."""
        args = role.body.args
        self.values[args[role.own]] = [own]
        if role.other is not None:
            self.values[args[role.other]] = [other]
        self.contrib = [None] * self.rowsize
        self.block(role.body, e)
        return [a if c is None else e.add(a, c) for a, c in zip(accs, self.contrib)]

    def hoist(self, role: Role, e: Emitter, own: SSAValue) -> None:
        """Lower the ops of the body that do not depend on the other index, once, into e."""
        self.values[role.body.args[role.own]] = [own]
        variant = role.depends_on_other()
        saved, self.emit = self.emit, e
        try:
            for op in role.body.ops:
                if op in variant or isinstance(op, ham.AccumulateOp | ham.YieldOp):
                    continue
                self.op(op)
                self.done.add(op)
        finally:
            self.emit = saved


def _pair_step(lo: GatherLowering, roles: list[Role], kind: str, e: Emitter, k: SSAValue,
               j: SSAValue, accs: list[SSAValue], tiled: bool) -> list[SSAValue]:
    """accs + the contributions of the pair (k, j) to row k (nothing when j == k)."""
    first = [r for r in roles if r.own == 0]
    second = [r for r in roles if r.own == 1]
    types = [e.ft] * len(accs)

    def run(rs: list[Role]):
        def fn(ie: Emitter) -> list[SSAValue]:
            out = accs
            for r in rs:
                lo.other = r.body.args[r.other] if tiled else None
                out = lo.contribution(r, ie, k, j, out)
            lo.other = None
            return out
        return fn

    def keep(ie: Emitter) -> list[SSAValue]:
        return accs

    if kind == "ne":
        return e.if_(e(arith.CmpiOp(j, k, "ne")), run(first + second), keep, types)
    # i < j: body(k, j) for j > k, body(j, k) for j < k
    return e.if_(e(arith.CmpiOp(j, k, "ugt")), run(first),
                 lambda ie: ie.if_(ie(arith.CmpiOp(j, k, "ult")), run(second), keep, types),
                 types)


def _tiled_fields(plan: GatherPlan) -> dict[str, int]:
    """Fields loaded at the other particle's row in a pair body -> their (static) row size."""
    out: dict[str, int] = {}
    for loop, roles in plan.loops:
        if not isinstance(loop, ham.PairSumOp):
            continue
        for r in roles:
            for op in r.body.walk():
                if (isinstance(op, ham.LoadOp) and op.indices
                        and op.indices[0] is r.body.args[r.other]
                        and plan.system.field_shape(op.field_name)[0] == plan.rows):
                    try:
                        out[op.field_name] = _row_offset(plan.system, op.field_name, [], 0)[1]
                    except GatherUnsupported:
                        pass  # a symbolic row: read from global memory
    return out


def _shared_name(field: str) -> str:
    return f"__tpc_tile_{field}"


def _sreg(e: Emitter, name: str) -> SSAValue:
    v = e(llvm.CallIntrinsicOp(SREG + name, [], [i32]))
    return e(arith.IndexCastOp(e(arith.ExtUIOp(v, i64)), INDEX))


def _shared_ptr(e: Emitter, field: str, at: SSAValue) -> SSAValue:
    """&tile_field[at] in addrspace(3) (elements of e.ft: 8 or 4 bytes). Integer arithmetic,
    not llvm.getelementptr: the xDSL -> llvmlite converter casts a GEP's base to an
    addrspace(0) pointer."""
    size = _bytes(e.ft)
    base = e(llvm.PtrToIntOp(e(llvm.AddressOfOp(_shared_name(field), SPTR)), i64))
    off = e(arith.MuliOp(e(arith.IndexCastOp(at, i64)),
                         e(arith.ConstantOp(IntegerAttr(size, i64)))))
    return e(llvm.IntToPtrOp.create(operands=[e(arith.AddiOp(base, off))], result_types=[SPTR]))


def _bytes(ft: Attribute) -> int:
    return 4 if ft == f32 else 8


def _emit_gather(plan: GatherPlan, e: Emitter, env: Env, k: SSAValue, gpu: bool,
                 tid: SSAValue | None = None) -> list[SSAValue]:
    """The row-k gradient (rowsize values of e.ft), emitted into e."""
    lo = GatherLowering(env, e, plan.rowsize)
    for op in plan.prelude:
        lo.op(op)
    rows = lo.dim(plan.rows, e)
    accs = [e.f(0.0) for _ in range(plan.rowsize)]
    tiles = _tiled_fields(plan) if gpu else {}
    lo.tile = {f: _shared_name(f) for f in tiles}
    for loop, roles in plan.loops:
        if not roles:
            continue
        if isinstance(loop, ham.SumOp):
            for r in roles:
                accs = lo.contribution(r, e, k, None, accs)
            continue
        for r in roles:
            lo.hoist(r, e, k)
        kind = loop.kind.data
        if gpu:
            accs = _tile_loop(lo, roles, kind, e, k, rows, tid, tiles, accs)
        else:
            def plain(ie: Emitter, j: SSAValue, a: list[SSAValue], roles=roles,
                      kind=kind) -> list[SSAValue]:
                return _pair_step(lo, roles, kind, ie, k, j, a, tiled=False)
            accs = e.for_(e.i(0), rows, plain, accs)
    return accs


def _barrier(e: Emitter) -> None:
    e(llvm.CallIntrinsicOp("llvm.nvvm.barrier0", [], []))


def _tile_loop(lo: GatherLowering, roles: list[Role], kind: str, e: Emitter, k: SSAValue,
               rows: SSAValue, tid: SSAValue, tiles: dict[str, int],
               accs: list[SSAValue]) -> list[SSAValue]:
    """for t0 in 0..N step ntid: load rows t0 + tid into the tiles, barrier, gather the
    tile's j from them, barrier."""
    ntid = _sreg(e, "ntid.x")
    block = Block(arg_types=[INDEX, *[e.ft] * len(accs)])
    te = Emitter(block, e.ft)
    t0, carried = block.args[0], list(block.args[1:])
    jt = te.iadd(t0, tid)

    def load_tile(ie: Emitter) -> list:
        for field, rs in tiles.items():
            gbase, sbase = ie.imul(jt, ie.i(rs)), ie.imul(tid, ie.i(rs))
            for c in range(rs):
                v = ie.load(lo.buffers[field], ie.iadd(gbase, ie.i(c)))
                ie(llvm.StoreOp(v, _shared_ptr(ie, field, ie.iadd(sbase, ie.i(c)))))
        return []

    te.if_(te(arith.CmpiOp(jt, rows, "ult")), load_tile, lambda ie: [], [])
    _barrier(te)
    count = te(arith.MinUIOp(ntid, te(arith.SubiOp(rows, t0))))

    def inner(ie: Emitter, jj: SSAValue, a: list[SSAValue]) -> list[SSAValue]:
        lo.jj = jj
        return _pair_step(lo, roles, kind, ie, k, ie.iadd(t0, jj), a, tiled=True)

    new = te.for_(te.i(0), count, inner, carried)
    _barrier(te)
    te(scf.YieldOp(*new))
    loop = scf.ForOp(e.i(0), rows, ntid, accs, block)
    e(loop)
    return list(loop.results)


def _store_row(e: Emitter, out: SSAValue, k: SSAValue, vals: list[SSAValue]) -> None:
    base = e.imul(k, e.i(len(vals)))
    for c, v in enumerate(vals):
        e.store(v, out, e.iadd(base, e.i(c)))


def build_gather_kernel(plan: GatherPlan, name: str, ft: Attribute = f64) -> func.FuncOp:
    """The GPU kernel: one thread per row, tiled pair loops (signature in the header)."""
    system = plan.system
    types = [*env_types(system, ft), buf_type(ft)]
    block = Block(arg_types=types)
    e = Emitter(block, ft)
    env = bind_env(system, list(block.args[:-1]))
    out = block.args[-1]
    tid = _sreg(e, "tid.x")
    k = e.iadd(e.imul(_sreg(e, "ctaid.x"), _sreg(e, "ntid.x")), tid)
    rows = e.i(plan.rows) if isinstance(plan.rows, int) else env.sizes[plan.rows]
    active = e(arith.CmpiOp(k, rows, "ult"))
    last = e(arith.SubiOp(rows, e.i(1)))
    kc = e(arith.SelectOp(active, k, last))  # k >= N: compute row N - 1, store nothing
    vals = _emit_gather(plan, e, env, kc, gpu=True, tid=tid)

    def store(ie: Emitter) -> list:
        _store_row(ie, out, k, vals)
        return []

    e.if_(active, store, lambda ie: [], [])
    e(func.ReturnOp())
    fn = func.FuncOp(name, (types, []), Region(block))
    fn.attributes[KERNEL_ATTR] = UnitAttr()
    return fn


def build_gather_host(plan: GatherPlan, name: str, ft: Attribute = f64,
                      accumulate: bool = False, private: bool = False) -> func.FuncOp:
    """The same gather loops for the CPU: for k in 0..N (no tiles, no intrinsics); rows are
    stored, or added to `out` with accumulate."""
    system = plan.system

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        env = bind_env(system, args[:-1])
        rows = e.i(plan.rows) if isinstance(plan.rows, int) else env.sizes[plan.rows]
        out = args[-1]

        def row(ie: Emitter, k: SSAValue, _: list) -> list:
            vals = _emit_gather(plan, ie, env, k, gpu=False)
            if accumulate:
                base = ie.imul(k, ie.i(len(vals)))
                vals = [ie.add(ie.load(out, ie.iadd(base, ie.i(c))), v)
                        for c, v in enumerate(vals)]
            _store_row(ie, out, k, vals)
            return []

        e.for_(e.i(0), rows, row)
        return []

    return make_func(name, [*env_types(system, ft), buf_type(ft)], [], body, private=private,
                     ft=ft)


def gather_accumulate_host(system: ham.SystemOp, grad: ham.GradientOp,
                           ft: Attribute = f64) -> func.FuncOp | None:
    """grad_<part>_<field> in gather form for the CPU (--no-newton3), or None when the
    gradient has no gather form."""
    try:
        plan = gather_plan(system, grad.wrt_name, [grad.part_name])
    except GatherUnsupported:
        return None
    return build_gather_host(plan, part_grad_name(grad.part_name, grad.wrt_name), ft,
                             accumulate=True, private=True)


def _shared_globals(plans: list[GatherPlan], ft: Attribute = f64) -> list[llvm.GlobalOp]:
    sizes: dict[str, int] = {}
    for plan in plans:
        for field, rs in _tiled_fields(plan).items():
            sizes[field] = max(sizes.get(field, 0), rs)
    return [llvm.GlobalOp(llvm.LLVMArrayType(IntAttr(MAX_TILE * rs), ft),
                          _shared_name(f), "internal", addr_space=SHARED, alignment=_bytes(ft))
            for f, rs in sizes.items()]


def _system(module: ModuleOp) -> ham.SystemOp | None:
    """The module's (first) ham.system, None at func level."""
    systems = [op for op in module.ops if isinstance(op, ham.SystemOp)]
    return systems[0] if systems else None


def gpu_kernel_module(system: ham.SystemOp, ft: Attribute = f64, scheme=None,
                      carry: list[str] | None = None) -> ModuleOp:
    """pair_forces (when dH/dq has a pair sum in gather form), block_run (when `scheme` is
    given and block_unsupported says nothing) and their shared arrays; an empty module when
    neither can be built."""
    q, _ = system.state.names
    plans: list[GatherPlan] = []
    funcs: list[Operation] = []
    if gather_unsupported(system) is None:
        plans.append(gather_plan(system, q))
        funcs.append(build_gather_kernel(plans[0], "pair_forces", ft))
    if scheme is not None and block_unsupported(system, scheme) is None:
        plans += list(_update_plans(system, scheme).values())
        funcs.append(build_block_run(system, scheme, ft, carry or []))
    if not funcs:
        return ModuleOp([])
    return ModuleOp([*_shared_globals(plans, ft), *funcs])


def gather_module(system: ham.SystemOp, ft: Attribute = f64) -> ModuleOp:
    """The CPU gather functions gather_q_host / gather_p_host (those that exist: the total
    gradient of each field), to be appended to a func-level module of the same system and
    lowered for the CPU."""
    funcs = []
    for tag, name in zip("qp", system.state.names):
        if gather_unsupported(system, name) is None:
            funcs.append(build_gather_host(gather_plan(system, name), f"gather_{tag}_host", ft))
    return ModuleOp(funcs)


# ------------------------------------------------------------------ block_run

class BlockMachine:
    """The TimeLoop's execution model for one member per GPU block (gpu=True: thread k = tid.x
    owns row k, llvm.nvvm.barrier0 between the phases) and its CPU emulation block_run_host
    (gpu=False: each phase is a loop over all rows, the gradient rows go through a scratch
    buffer g). Per update: phase 1, every row computes its gradient row in gather form from
    the old state; barrier (everyone has read the old state); phase 2, every row updates its
    own row (target += a g, the CPU run's axpy arithmetic); barrier (the next stage reads the
    new state). The status lives in status[at] (f64); each row checks itself after a step,
    then a barrier makes the status visible to every row."""

    def __init__(self, system: ham.SystemOp, scheme, env: Env, ft: Attribute, gpu: bool,
                 e: Emitter, out_q, out_p, status, at, n, g=None,
                 carry: dict[str, SSAValue] | None = None):
        self.env, self.ft, self.gpu = env, ft, gpu
        self.carry = carry or {}
        self.out_q, self.out_p, self.status, self.at, self.n, self.g = (
            out_q, out_p, status, at, n, g)
        self.plans = _update_plans(system, scheme)
        plan = next(iter(self.plans.values()))  # block_unsupported: one row size for all
        self.rs = plan.rowsize
        self.rows = e.i(plan.rows) if isinstance(plan.rows, int) else env.sizes[plan.rows]
        self.q_name, _ = system.state.names
        if gpu:
            self.k = _sreg(e, "tid.x")
            self.active = e(arith.CmpiOp(self.k, self.rows, "ult"))
            self.kc = e(arith.SelectOp(self.active, self.k, e(arith.SubiOp(self.rows, e.i(1)))))

    def rows_do(self, e: Emitter, fn) -> None:
        """fn(e, k) for every owned row: the thread's own row (if active), or all rows."""
        if self.gpu:
            e.if_(self.active, lambda ie: (fn(ie, self.k), [])[1], lambda ie: [], [])
        else:
            e.for_(e.i(0), self.rows, lambda ie, k, _: (fn(ie, k), [])[1])

    def sync(self, e: Emitter) -> None:
        if self.gpu:
            _barrier(e)

    def update(self, e: Emitter, op, a: SSAValue) -> None:
        """target[row] += a * d(parts)/d(wrt)[row] for every row, gradients from the old
        state."""
        plan = self.plans.get(_plan_key(op))
        if plan is None:
            return  # the parts do not depend on the field
        target = self.env.q if op.target_name == self.q_name else self.env.p
        comp = carry_buffer(self.carry, op)
        rs = self.rs

        def update(ie: Emitter, k: SSAValue, vals: list[SSAValue]) -> None:
            base = ie.imul(k, ie.i(rs))
            for c, v in enumerate(vals):
                at = ie.iadd(base, ie.i(c))
                if comp is None:
                    ie.store(ie.add(ie.load(target, at), ie.mul(a, v)), target, at)
                    continue
                x, err = compensated_add(ie, ie.load(target, at), ie.mul(a, v),
                                         ie.load(comp, at))
                ie.store(x, target, at)
                ie.store(err, comp, at)

        if self.gpu:
            vals = _emit_gather(plan, e, self.env, self.kc, gpu=True, tid=self.k)
            _barrier(e)
            self.rows_do(e, lambda ie, k: update(ie, k, vals))
            _barrier(e)
            return

        def phase1(ie: Emitter, k: SSAValue) -> None:
            _store_row(ie, self.g, k, _emit_gather(plan, ie, self.env, k, gpu=False))

        def phase2(ie: Emitter, k: SSAValue) -> None:
            base = ie.imul(k, ie.i(rs))
            update(ie, k, [ie.load(self.g, ie.iadd(base, ie.i(c))) for c in range(rs)])

        self.rows_do(e, phase1)
        self.rows_do(e, phase2)

    def check(self, e: Emitter, loop: TimeLoop, gstep: SSAValue) -> SSAValue:
        zero, rs, env = e.f(0.0), self.rs, self.env

        def check(ie: Emitter, k: SSAValue) -> None:
            base = ie.imul(k, ie.i(rs))
            tot = zero
            for c in range(rs):
                tot = ie.add(tot, nonfinite_probe(ie, env, ie.iadd(base, ie.i(c)), zero))
            ok = ie(arith.CmpfOp(tot, zero, "oeq"))
            ie.if_(ok, lambda te: [], lambda fe: (loop.fail(fe, gstep), [])[1], [])

        self.rows_do(e, check)
        self.sync(e)  # every row sees the status before the next step
        return loop.healthy(e)  # the whole block's verdict, the same in every thread

    def save(self, e: Emitter, s: SSAValue) -> None:
        base = e.imul(s, self.n)
        rs, env = self.rs, self.env

        def save(ie: Emitter, k: SSAValue) -> None:
            for c in range(rs):
                idx = ie.iadd(ie.imul(k, ie.i(rs)), ie.i(c))
                ie.store(ie.load(env.q, idx), self.out_q, ie.iadd(base, idx))
                ie.store(ie.load(env.p, idx), self.out_p, ie.iadd(base, idx))

        self.rows_do(e, save)

    def midpoint(self, e, stage, dt):
        raise PassFailedException("block_run cannot run implicit stages")


def _plan_key(op) -> tuple:
    return (tuple(op.part_names), op.wrt_name)


def _update_plans(system: ham.SystemOp, scheme) -> dict[tuple, GatherPlan]:
    """The gather plan of every sym.update of the scheme (updates whose parts have no
    gradient with respect to the field move nothing and have no plan)."""
    plans: dict[tuple, GatherPlan] = {}
    for op in scheme.walk():
        if isinstance(op, sym.UpdateOp) and _plan_key(op) not in plans:
            if system.gradients(op.wrt_name, op.part_names):
                plans[_plan_key(op)] = gather_plan(system, op.wrt_name, op.part_names)
    return plans


def block_unsupported(system: ham.SystemOp, scheme) -> str | None:
    """Why no block_run can be built (None: it can)."""
    if scheme is None:
        return "no sym.scheme for the system"
    if any(not isinstance(st, sym.UpdateOp) for st in scheme.walk() if st is not scheme):
        return "the scheme has stages other than sym.update (block_run runs explicit " \
               "splittings only; run sym-lower-flows first)"
    try:
        plans = _update_plans(system, scheme)
    except GatherUnsupported as e:
        return f"a gradient is not in gather form: {e}"
    if not plans:
        return "no update moves the state"
    if len({p.rowsize for p in plans.values()}) > 1:
        return "updates of rows of different sizes"
    return None


def build_block_run(system: ham.SystemOp, scheme, ft: Attribute = f64,
                    carry: list[str] | tuple = ()) -> func.FuncOp:
    """The block_run kernel (signature in the module header): one member per block."""
    buf = buf_type(ft)
    types = [*env_types(system, ft), ft, INDEX, INDEX, INDEX, buf, buf, BUF,
             *[buf] * len(carry), INDEX]
    block = Block(arg_types=types)
    e = Emitter(block, ft)
    b = _B(block)
    n_env = len(env_types(system, ft))
    args = list(block.args)
    env0 = bind_env(system, args[:n_env])
    dt, nsnap, stride, step0, out_q, out_p, status = args[n_env:n_env + 7]
    carried, pstride = args[n_env + 7:-1], args[-1]
    member = b.sreg("ctaid.x")
    n = state_size(env0, e)
    bn = e.imul(member, n)
    bsn = e.imul(e.imul(member, nsnap), n)
    env = bind_env(system, [b.offset(env0.q, bn), b.offset(env0.p, bn),
                            b.offset(env0.params, e.imul(member, pstride)), *args[3:n_env]])
    machine = BlockMachine(system, scheme, env, ft, True, e, b.offset(out_q, bsn),
                           b.offset(out_p, bsn), status, member, n,
                           carry={c: b.offset(v, bn) for c, v in zip(carry, carried)})
    TimeLoop(scheme, machine).emit(e, dt, nsnap, stride, step0)
    e(func.ReturnOp())
    fn = func.FuncOp("block_run", (types, []), Region(block))
    fn.attributes[KERNEL_ATTR] = UnitAttr()
    return fn


def build_block_host(system: ham.SystemOp, scheme, ft: Attribute = f64,
                     carry: list[str] | tuple = ()) -> func.FuncOp:
    """block_run_host(env..., dt, nsnap, stride, step0, out_q, out_p, g, status, carry...):
    the same schedule for one member on the CPU (rows in sequence per phase; status[0],
    f64)."""
    buf = buf_type(ft)

    def body(e: Emitter, args: list[SSAValue]) -> list[SSAValue]:
        n_env = len(env_types(system, ft))
        env = bind_env(system, args[:n_env])
        dt, nsnap, stride, step0, out_q, out_p, g, status = args[n_env:n_env + 8]
        machine = BlockMachine(system, scheme, env, ft, False, e, out_q, out_p, status,
                               e.i(0), state_size(env, e), g,
                               carry=dict(zip(carry, args[n_env + 8:])))
        TimeLoop(scheme, machine).emit(e, dt, nsnap, stride, step0)
        return []

    return make_func("block_run_host",
                     [*env_types(system, ft), ft, INDEX, INDEX, INDEX, buf, buf, buf, BUF,
                      *[buf] * len(carry)],
                     [], body, private=False, ft=ft)


def _carry(module: ModuleOp, system: ham.SystemOp) -> list[str]:
    """The carried run state of the system's sym.evolve (sym-kahan's compensations)."""
    scheme = _scheme(module, system)
    for op in module.ops:
        if isinstance(op, sym.EvolveOp) and scheme is not None \
                and op.scheme.string_value() == scheme.sym_name.data:
            return op.carry_names
    return []


def _scheme(module: ModuleOp, system: ham.SystemOp):
    """The scheme that the module's sym.evolve / sym.propagate runs for `system`, or None."""
    schemes = {s.sym_name.data: s for s in module.ops if isinstance(s, sym.SchemeOp)}
    for op in module.ops:
        if isinstance(op, sym.EvolveOp | sym.PropagateOp):
            sc = schemes.get(op.scheme.string_value())
            if sc is not None and sc.system.string_value() == system.sym_name.data:
                return sc
    return None


def block_host_module(module: ModuleOp, ft: Attribute = f64) -> ModuleOp:
    """block_run_host for the ham+sym module's system (empty when block_run is unsupported),
    to be appended to the func-level module and lowered for the CPU."""
    system = _system(module)
    scheme = _scheme(module, system) if system is not None else None
    if system is None or block_unsupported(system, scheme) is not None:
        return ModuleOp([])
    return ModuleOp([build_block_host(system, scheme, ft, _carry(module, system))])
