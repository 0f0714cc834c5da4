"""Compile options and the stage functions behind `tpc compile --emit=...` and `tpc run`."""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

from xdsl.dialects.builtin import ModuleOp

from tpc import pipeline
from tpc.diagnostics import TpcError
from tpc.dialects import ham
from tpc.syntax import Program, Word

INTEGRATORS = ("leapfrog", "yoshida4", "yoshida6", "yoshida8", "midpoint", "exact")


@dataclass(frozen=True)
class Options:
    """Everything that changes generated code; its repr is part of the compile-cache key."""

    integrator: str | None = None  # None: the simulate block's, else leapfrog
    fold: bool = True
    precision: str = "f64"
    newton3: bool = True
    arch: str = "sm_90"  # GPU architecture for PTX


def options_from_args(args) -> Options:
    return Options(
        integrator=getattr(args, "integrator", None),
        fold=not getattr(args, "no_fold", False),
        precision=getattr(args, "precision", "f64"),
        newton3=getattr(args, "newton3", True),
        arch=getattr(args, "arch", "sm_90"),
    )


@dataclass
class StageResult:
    text: str
    module: ModuleOp | None
    remarks: list[str] = field(default_factory=list)
    program: Program | None = None


def resolve_integrator(program: Program, options: Options) -> Options:
    """The integrator from the command line, else the simulate block, else leapfrog."""
    if options.integrator is not None:
        name, loc = options.integrator, None
    else:
        setting = next((s for s in program.settings if s.name == "integrator"), None)
        if setting is None:
            return replace(options, integrator="leapfrog")
        value = setting.value
        name = value.text if isinstance(value, Word) else str(value)
        loc = setting.value_loc
    if name not in INTEGRATORS:
        raise TpcError(f"unknown integrator '{name}' (known: {', '.join(INTEGRATORS)})", loc)
    return replace(options, integrator=name)


def ham_remarks(module: ModuleOp) -> list[str]:
    out = []
    for op in module.walk():
        if isinstance(op, ham.HamiltonianOp) and "degree" in op.attributes:
            deg = op.attributes["degree"]
            deg_text = getattr(deg, "data", None) or str(deg.value.data)
            sep = op.attributes["separable"].value.data
            out.append(
                f"remark: H has degree {deg_text}; "
                f"{'separable' if sep else 'not separable'} (T(p) + V(q))"
            )
            if "why" in op.attributes:
                out.append(f"remark: {op.attributes['why'].data}")
    return out


def compile_stage(path: str, emit: str, options: Options, runner_args=None) -> StageResult:
    runner = pipeline.PassRunner(
        getattr(runner_args, "print_ir_after_all", False),
        [x for x in getattr(runner_args, "print_ir_after", "").split(",") if x],
        debuginfo=getattr(runner_args, "debuginfo", False),
    )
    from tpc import lowering
    from tpc.api import SystemInfo

    program, module = pipeline.frontend(path)
    options = resolve_integrator(program, options)
    runner.run(module, ["ham-degree"])
    remarks = ham_remarks(module)
    if emit != "ham":
        check_integrator(program, SystemInfo.of(lowering.system_of(module)), options)
        module, more = lowering.lower(module, emit, options, runner)
        remarks += more
    if emit in ("llvm", "ptx"):
        text = lowering.render(module, emit, options)
    else:
        buf = io.StringIO()
        pipeline.print_ir(module, buf, runner.debuginfo)
        text = buf.getvalue()
    return StageResult(text, module, remarks, program)


def check_integrator(program: Program, info, options: Options) -> None:
    """An explicit splitting of a non-separable H is refused where the user chose it."""
    from tpc.passes.sym_fold_linear import check_exact

    check_exact(options, info.quadratic, getattr(info, "why", ""))
    if info.separable or options.integrator in ("midpoint", "exact"):
        return
    setting = next((s for s in program.settings if s.name == "integrator"), None)
    loc = setting.value_loc if setting is not None and options.integrator == getattr(
        setting.value, "text", None) else program.system.hamiltonians[0].loc
    raise TpcError(
        f"integrator '{options.integrator}' splits H into kicks and drifts, but H is not "
        "separable (a term couples q and p), so the split would not be symplectic; "
        "use integrator = midpoint",
        loc,
    )
