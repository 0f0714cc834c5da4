"""The pass lists behind each `--emit` stage after `ham` (Triton-style `make_<stage>`)."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import PassFailedException

from tpc.diagnostics import TpcError
from tpc.dialects import ham
from tpc.pipeline import PassRunner


def fold_remarks(module: ModuleOp, options) -> tuple[bool, list[str]]:
    """Whether sym-fold-linear applies, and the remarks that explain the decision."""
    if not options.fold:
        return False, ["remark: matrix-power folding disabled by --no-fold"]
    from tpc.passes.sym_fold_linear import fold_decision

    decision = fold_decision(module, options)
    remarks = [decision.remark]
    if decision.applies and getattr(options, "precision", "f64") == "f32":
        remarks.append("remark: precision f32: the fold reads its matrix off the float32 "
                       "step code, but the matrix powers are computed in float64")
    return decision.applies, remarks


def make_sym(module: ModuleOp, options, runner: PassRunner) -> list[str]:
    runner.run(module, ["ham-derive", f"sym-integrator{{integrator={options.integrator}}}",
                        "sym-fuse-stages"])
    applies, remarks = fold_remarks(module, options)
    if applies:
        runner.run(module, ["sym-fold-linear"])
    return remarks


def make_loops(module: ModuleOp, runner: PassRunner, newton3: bool = True,
               precision: str = "f64") -> None:
    opts = ([] if newton3 else ["newton3=false"]) + ([] if precision == "f64"
                                                     else [f"precision={precision}"])
    lower = f"sym-lower-loops{{{' '.join(opts)}}}" if opts else "sym-lower-loops"
    runner.run(module, [lower, "canonicalize", "cse"])


def make_llvm(module: ModuleOp, target: str = "cpu", runner: PassRunner | None = None) -> None:
    """Run the convert-*-to-llvm ladder through `runner` (so its IR dumps show each step),
    then check that only llvm ops are left."""
    import warnings

    from tpc.passes.llvm_pipeline import check_llvm_only, llvm_pipeline

    with warnings.catch_warnings():
        # A cast reconcile cannot remove is reported, by type, by check_llvm_only.
        warnings.filterwarnings("ignore", message="Unable to remove cast")
        (runner or PassRunner()).run(module, llvm_pipeline(target))
    check_llvm_only(module)
    module.verify()


def is_folded(module: ModuleOp) -> bool:
    from tpc.dialects import sym

    return any(isinstance(op, sym.PropagateOp) for op in module.walk())


def lower(module: ModuleOp, emit: str, options, runner: PassRunner) -> tuple[ModuleOp, list[str]]:
    """Lower a `ham` module (after ham-degree) down to `emit`."""
    try:
        remarks = make_sym(module, options, runner)
        if emit == "sym":
            return module, remarks
        precision = getattr(options, "precision", "f64")
        gpu = "sym-gpu-kernels" if precision == "f64" else f"sym-gpu-kernels{{precision={precision}}}"
        if emit == "ptx":
            # At the ham level: the gather-form pair_forces kernel needs the gradient regions.
            runner.run(module, [gpu])
        make_loops(module, runner, getattr(options, "newton3", True), precision)
        if emit == "loops":
            return module, remarks
        if emit == "ptx":
            runner.run(module, [gpu])  # GPU entry points (tpc.kernel funcs)
        make_llvm(module, "nvptx" if emit == "ptx" else "cpu", runner)
        return module, remarks
    except PassFailedException as e:
        raise TpcError(str(e).strip().splitlines()[0]) from None


def render(module: ModuleOp, emit: str, options) -> str:
    if emit == "llvm":
        from tpc.runtime.jit import llvm_ir_text

        return llvm_ir_text(module)
    from tpc.runtime.ptx import module_to_ptx

    return module_to_ptx(module, arch=getattr(options, "arch", "sm_90"))


def system_of(module: ModuleOp) -> ham.SystemOp:
    return next(op for op in module.walk() if isinstance(op, ham.SystemOp))
