"""The pass lists behind each `--emit` stage after `ham` (Triton-style `make_<stage>`)."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import PassFailedException

from tpc.diagnostics import TpcError
from tpc.dialects import ham
from tpc.pipeline import PassRunner


def _spec(name: str, **options) -> str:
    opts = " ".join(f"{k}={v}" for k, v in options.items() if v is not None)
    return f"{name}{{{opts}}}" if opts else name


def make_sym(module: ModuleOp, options, runner: PassRunner) -> list[str]:
    """ham (after ham-degree) -> sym: gradients, the scheme of flows, fusion, folding. The
    folding decision is recorded in the IR; the remarks are read back from it. With kahan,
    the flows become their (compensated) updates here, before folding, which they skip."""
    from tpc.passes.sym_fold_linear import fold_remarks
    from tpc.passes.sym_kahan import kahan_remarks

    kahan = getattr(options, "kahan", False)
    runner.run(module, [
        "ham-derive", *(["ham-derive-params"] if getattr(options, "tangent", False) else []),
        f"sym-integrator{{integrator=\"{options.integrator}\"}}", "sym-flow-kinds",
        "sym-fuse-stages", *(["sym-shadow"] if getattr(options, "shadow", False) else []),
        *(["sym-project"] if getattr(options, "project", "") == "energy" else []),
        *(["sym-lower-flows", "sym-kahan"] if kahan else []),
        "sym-fold-linear" if options.fold else "sym-fold-linear{enabled=false}",
    ])
    return scheme_remarks(module) + fold_remarks(module) + kahan_remarks(module)


def scheme_remarks(module: ModuleOp) -> list[str]:
    """The synthesized methods' coefficients, residuals and error coefficients, from the IR."""
    from xdsl.dialects.builtin import ArrayAttr

    from tpc.dialects import sym

    out = []
    for op in module.body.block.ops:
        notes = op.attributes.get("coefficients") if isinstance(op, sym.SchemeOp) else None
        if isinstance(notes, ArrayAttr):
            out += [f"remark: {n.data}" for n in notes.data]
    return out


def make_loops(module: ModuleOp, runner: PassRunner, newton3: bool = True,
               precision: str = "f64", gpu: bool = False, tangent: bool = False) -> None:
    prec = None if precision == "f64" else precision
    passes = ["sym-lower-flows", *(["sym-tangent"] if tangent else [])]
    if gpu:
        passes.append(_spec("sym-gpu-kernels", precision=prec))
    passes += [_spec("sym-lower-loops", newton3=None if newton3 else "false", precision=prec),
               "canonicalize", "cse"]
    runner.run(module, passes)


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


def lower(module: ModuleOp, emit: str, options, runner: PassRunner) -> tuple[ModuleOp, list[str]]:
    """Lower a `ham` module (after ham-degree) down to `emit`."""
    try:
        remarks = make_sym(module, options, runner)
        if emit == "sym":
            return module, remarks
        precision = getattr(options, "precision", "f64")
        make_loops(module, runner, getattr(options, "newton3", True), precision,
                   gpu=emit == "ptx", tangent=getattr(options, "tangent", False))
        if emit == "loops":
            return module, remarks
        make_llvm(module, "nvptx" if emit == "ptx" else "cpu", runner)
        return module, remarks
    except PassFailedException as e:
        raise TpcError(str(e).strip().splitlines()[0]) from None


def render(module: ModuleOp, emit: str, options, optimized: bool = False) -> str:
    """The text of an llvm or ptx stage; `optimized`: the LLVM IR after O3 (what the JIT
    turns into machine code), for checking what the optimizer keeps."""
    if emit == "llvm":
        from tpc.runtime.jit import llvm_ir_text

        return llvm_ir_text(module, optimize=optimized)
    from tpc.runtime.ptx import module_to_ptx

    return module_to_ptx(module, arch=getattr(options, "arch", "sm_90"))


def system_of(module: ModuleOp) -> ham.SystemOp:
    return next(op for op in module.walk() if isinstance(op, ham.SystemOp))
