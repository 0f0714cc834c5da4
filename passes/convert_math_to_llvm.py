"""`convert-math-to-llvm`: `math` ops to LLVM intrinsics or library calls.

target="cpu":   LLVM intrinsics (`llvm.sin.f64`, ...) through `llvm.call_intrinsic`;
                the JIT resolves the resulting libm calls in-process. Functions
                with no intrinsic (expm1, cbrt, ...) become calls to libm.
                `math.fpowi` calls a small helper defined in the module, because
                `llvm.powi` with a run-time exponent needs `__powidf2` from
                compiler-rt, which a Python process need not have loaded.
target="nvptx": calls to libdevice (`__nv_sin`, `__nv_powi`, ...), declared in
                the module; sqrt/fabs/floor/ceil/fma/... stay intrinsics since
                the NVPTX back end selects them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tpc.passes.llvm_types import LLVMLoweringError, unsupported
from xdsl.context import Context
from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, IntegerType, f32, f64, i32, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import SymbolTable

PASS_NAME = "convert-math-to-llvm"

# math op -> LLVM intrinsic base name; valid on every target.
_INTRINSICS_ANY = {
    "math.sqrt": "sqrt",
    "math.absf": "fabs",
    "math.floor": "floor",
    "math.ceil": "ceil",
    "math.trunc": "trunc",
    "math.round": "round",
    "math.roundeven": "roundeven",
    "math.fma": "fma",
    "math.copysign": "copysign",
}

# Transcendentals: intrinsics on the CPU, libdevice on NVPTX.
_TRANSCENDENTAL = {
    "math.sin": "sin",
    "math.cos": "cos",
    "math.tan": "tan",
    "math.exp": "exp",
    "math.exp2": "exp2",
    "math.log": "log",
    "math.log2": "log2",
    "math.log10": "log10",
    "math.sinh": "sinh",
    "math.cosh": "cosh",
    "math.tanh": "tanh",
    "math.asin": "asin",
    "math.acos": "acos",
    "math.atan": "atan",
    "math.atan2": "atan2",
    "math.powf": "pow",
}

# No LLVM intrinsic exists: libm on the CPU, libdevice on NVPTX.
_LIBRARY_ONLY = {
    "math.expm1": "expm1",
    "math.log1p": "log1p",
    "math.cbrt": "cbrt",
    "math.erf": "erf",
    "ham.erfc": "erfc",
    "math.asinh": "asinh",
    "math.acosh": "acosh",
    "math.atanh": "atanh",
}

TARGETS = ("cpu", "nvptx")


def _suffix(op: Operation, typ: Attribute) -> str:
    if typ == f64:
        return "f64"
    if typ == f32:
        return "f32"
    raise unsupported(PASS_NAME, op, f"only f32/f64 scalars, got {typ}")


@dataclass
class MathToLLVMPattern(RewritePattern):
    target: str
    # Functions the rewritten code calls (declarations, or the powi helper).
    decls: dict[str, llvm.FuncOp] = field(default_factory=dict)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        if not op.name.startswith("math.") and op.name != "ham.erfc":
            return
        typ = op.results[0].type
        sfx = _suffix(op, typ)
        args = list(op.operands)
        new_ops: list[Operation] = []
        name = op.name
        if name == "math.round" and self.target == "nvptx":
            # llvm.round has no NVPTX lowering; libdevice rounds half away from zero too
            new_ops.append(self._call(self._libname("round", sfx), args, typ))
        elif name in _INTRINSICS_ANY or (self.target == "cpu" and name in _TRANSCENDENTAL):
            base = _INTRINSICS_ANY.get(name) or _TRANSCENDENTAL[name]
            new_ops.append(llvm.CallIntrinsicOp(f"llvm.{base}.{sfx}", args, [typ]))
        elif name in _TRANSCENDENTAL or name in _LIBRARY_ONLY:
            base = _TRANSCENDENTAL.get(name) or _LIBRARY_ONLY[name]
            new_ops.append(self._call(self._libname(base, sfx), args, typ))
        elif name == "math.rsqrt":
            new_ops += self._rsqrt(args[0], typ, sfx)
        elif name == "math.fpowi":
            new_ops += self._fpowi(op, args[0], args[1], typ, sfx)
        else:
            raise unsupported(PASS_NAME, op, f"no lowering for target '{self.target}'")
        rewriter.replace(op, new_ops, [new_ops[-1].results[0]])

    def _libname(self, base: str, sfx: str) -> str:
        single = "f" if sfx == "f32" else ""
        prefix = "__nv_" if self.target == "nvptx" else ""
        return f"{prefix}{base}{single}"

    def _declare(self, name: str, inputs: list[Attribute], output: Attribute) -> None:
        ftype = llvm.LLVMFunctionType(inputs, output)
        known = self.decls.get(name)
        if known is not None and known.function_type != ftype:
            raise LLVMLoweringError(f"{PASS_NAME}: '{name}' used with two signatures")
        if known is None:
            self.decls[name] = llvm.FuncOp(name, ftype, linkage=llvm.LinkageAttr("external"))

    def _call(self, name: str, args: list[SSAValue], typ: Attribute) -> llvm.CallOp:
        self._declare(name, [a.type for a in args], typ)
        return llvm.CallOp(name, *args, return_type=typ)

    def _rsqrt(self, x: SSAValue, typ: Attribute, sfx: str) -> list[Operation]:
        if self.target == "nvptx":
            return [self._call(self._libname("rsqrt", sfx), [x], typ)]
        one = llvm.ConstantOp(FloatAttr(1.0, typ), typ)
        root = llvm.CallIntrinsicOp(f"llvm.sqrt.{sfx}", [x], [typ])
        return [one, root, llvm.FDivOp(one, root)]

    def _fpowi(
        self, op: Operation, base: SSAValue, exp: SSAValue, typ: Attribute, sfx: str
    ) -> list[Operation]:
        if not isinstance(exp.type, IntegerType):
            raise unsupported(PASS_NAME, op, f"exponent type {exp.type}")
        # libdevice's powi takes i32; our helper takes i64 so no range is lost.
        want = i32 if self.target == "nvptx" else i64
        ops: list[Operation] = []
        width, want_w = exp.type.width.data, want.width.data
        if width > want_w:
            ops.append(llvm.TruncOp(exp, want))
        elif width < want_w:
            ops.append(llvm.SExtOp(exp, want))
        n = ops[-1].results[0] if ops else exp
        if self.target == "nvptx":
            ops.append(self._call(self._libname("powi", sfx), [base, n], typ))
            return ops
        name = f"__tpc_powi_{sfx}"
        if name not in self.decls:
            self.decls[name] = build_powi_helper(name, typ)
        ops.append(llvm.CallOp(name, base, n, return_type=typ))
        return ops


def build_powi_helper(name: str, typ: Attribute) -> llvm.FuncOp:
    """`typ name(typ x, i64 n)`: x**n by binary exponentiation; 1/x**|n| for n < 0.

    |n| is taken with a wrapping negate and consumed with logical shifts, so
    n = INT64_MIN works as 2**63.
    """
    entry = Block(arg_types=[typ, i64])
    loop = Block(arg_types=[typ, i64, typ])
    body = Block()
    exit_ = Block(arg_types=[typ])
    x, n = entry.args

    def c_int(v: int) -> llvm.ConstantOp:
        return llvm.ConstantOp(IntegerAttr(v, i64), i64)

    zero, one_i, one_f = c_int(0), c_int(1), llvm.ConstantOp(FloatAttr(1.0, typ), typ)
    slt = IntegerAttr(llvm.ICmpPredicateFlag.SLT.to_int(), 64)
    neg = llvm.ICmpOp(n, zero.result, slt)
    minus_n = llvm.SubOp(zero.result, n)
    mag = llvm.SelectOp(neg, minus_n, n)
    entry.add_ops([zero, one_i, one_f, neg, minus_n, mag, llvm.BrOp(loop, x, mag, one_f.result)])

    b, e, acc = loop.args
    eq = IntegerAttr(llvm.ICmpPredicateFlag.EQ.to_int(), 64)
    ne = IntegerAttr(llvm.ICmpPredicateFlag.NE.to_int(), 64)
    zero_l = c_int(0)
    done = llvm.ICmpOp(e, zero_l.result, eq)
    loop.add_ops([zero_l, done, llvm.CondBrOp(done, exit_, [acc], body, [])])

    zero_b, one_b = c_int(0), c_int(1)
    bit = llvm.AndOp(e, one_b.result)
    odd = llvm.ICmpOp(bit.res, zero_b.result, ne)
    acc_x = llvm.FMulOp(acc, b)
    acc_next = llvm.SelectOp(odd, acc_x, acc)
    b_sq = llvm.FMulOp(b, b)
    e_next = llvm.LShrOp(e, one_b.result)
    body.add_ops(
        [zero_b, one_b, bit, odd, acc_x, acc_next, b_sq, e_next]
        + [llvm.BrOp(loop, b_sq, e_next, acc_next)]
    )

    (r,) = exit_.args
    one_e = llvm.ConstantOp(FloatAttr(1.0, typ), typ)
    inv = llvm.FDivOp(one_e, r)
    res = llvm.SelectOp(neg, inv, r)
    exit_.add_ops([one_e, inv, res, llvm.ReturnOp(res)])

    return llvm.FuncOp(
        name,
        llvm.LLVMFunctionType([typ, i64], typ),
        linkage=llvm.LinkageAttr("internal"),
        body=Region([entry, loop, body, exit_]),
    )


@dataclass(frozen=True)
class ConvertMathToLLVMPass(ModulePass):
    """Lower math ops; `target` is "cpu" (intrinsics/libm) or "nvptx" (libdevice)."""

    name = "convert-math-to-llvm"

    target: str = "cpu"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        if self.target not in TARGETS:
            raise LLVMLoweringError(f"{PASS_NAME}: unknown target '{self.target}'")
        pattern = MathToLLVMPattern(self.target)
        PatternRewriteWalker(pattern).rewrite_module(op)
        # Declarations go to the top of the module, in first-use order.
        where = InsertPoint.at_start(op.body.block)
        for name, decl in pattern.decls.items():
            other = SymbolTable.lookup_symbol(op, name)
            if other is None:
                Rewriter.insert_op(decl, where)
                where = InsertPoint.after(decl)
            elif not (isinstance(other, llvm.FuncOp) and other.function_type == decl.function_type):
                raise LLVMLoweringError(
                    f"{PASS_NAME}: symbol '{name}' already exists and is not the expected "
                    f"llvm.func {decl.function_type}"
                )
