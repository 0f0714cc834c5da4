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
PRECISIONS = ("f64", "f32")


@dataclass(frozen=True)
class Options:
    """Everything that changes generated code; its repr is part of the compile-cache key."""

    integrator: str | None = None  # None: the simulate block's, else leapfrog
    fold: bool = True
    precision: str | None = "f64"  # None: the simulate block's, else f64
    newton3: bool = True
    arch: str = "sm_90"  # GPU architecture for PTX
    kahan: bool | None = False  # compensated state updates (sym-kahan); None: the block's


def options_from_args(args) -> Options:
    return Options(
        integrator=getattr(args, "integrator", None),
        fold=not getattr(args, "no_fold", False),
        precision=getattr(args, "precision", None),
        newton3=getattr(args, "newton3", True),
        arch=getattr(args, "arch", "sm_90"),
        kahan=getattr(args, "kahan", None),
    )


@dataclass
class StageResult:
    text: str
    module: ModuleOp | None
    remarks: list[str] = field(default_factory=list)
    program: Program | None = None


def resolve_options(program: Program, options: Options) -> Options:
    """The options a caller left open (None) from the simulate block, else their defaults:
    the integrator, the precision (`precision = f32`) and `kahan = true`."""
    options = resolve_integrator(program, options)
    settings = {s.name: s for s in program.settings}
    if options.precision is None:
        setting = settings.get("precision")
        name = "f64"
        if setting is not None:
            value = setting.value
            name = value.text if isinstance(value, Word) else str(value)
            if name not in PRECISIONS:
                raise TpcError(f"unknown precision '{name}' (known: {', '.join(PRECISIONS)})",
                               setting.value_loc)
        options = replace(options, precision=name)
    if options.kahan is None:
        setting = settings.get("kahan")
        on = False
        if setting is not None:
            value = setting.value
            word = value.text if isinstance(value, Word) else None
            if word not in ("true", "false"):
                shown = word if word is not None else repr(value)
                raise TpcError(f"kahan must be true or false, got {shown}", setting.value_loc)
            on = word == "true"
        options = replace(options, kahan=on)
    return options


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
    """ham-degree's facts, read back from the IR: the whole H, then each part."""
    from tpc.passes.ham_degree import read_facts

    out = []
    for system in module.walk():
        if not isinstance(system, ham.SystemOp) or "degree" not in system.hamiltonian.attributes:
            continue
        facts = read_facts(system.hamiltonian)
        out.append(f"remark: H has degree {facts.degree_text}; "
                   f"{'separable' if facts.separable else 'not separable'} (T(p) + V(q))")
        if facts.why:
            out.append(f"remark: {facts.why}")
        for part in system.parts:
            f = read_facts(part)
            deps = ", ".join(f.depends_on) or "nothing"
            out.append(f"remark: part @{part.part_name}: depends on {deps}; degree "
                       f"{f.degree_text}{'' if f.separable else '; couples q and p'}")
    return out


def compile_stage(path: str, emit: str, options: Options, runner_args=None) -> StageResult:
    runner = pipeline.PassRunner(
        getattr(runner_args, "print_ir_after_all", False),
        [x for x in getattr(runner_args, "print_ir_after", "").split(",") if x],
        debuginfo=getattr(runner_args, "debuginfo", False),
    )
    from tpc import lowering

    program, module = pipeline.frontend(path)
    options = resolve_options(program, options)
    runner.run(module, list(pipeline.HAM_PASSES))
    remarks = ham_remarks(module)
    if emit != "ham":
        check_integrator(program, lowering.system_of(module), options)
        module, more = lowering.lower(module, emit, options, runner)
        remarks += more
    if emit in ("llvm", "ptx"):
        text = lowering.render(module, emit, options,
                               optimized=getattr(runner_args, "optimized", False))
    else:
        buf = io.StringIO()
        pipeline.print_ir(module, buf, runner.debuginfo)
        text = buf.getvalue()
    return StageResult(text, module, remarks, program)


def check_integrator(program: Program, system: ham.SystemOp, options: Options) -> None:
    """Refuse, where the user chose it, an integrator the system cannot have: an explicit
    splitting of a non-separable H (naming the part that couples q and p), or the exact flow
    without folding or of a non-quadratic H."""
    from tpc.passes.ham_degree import read_facts
    from tpc.passes.sym_fold_linear import EXACT_NEEDS_FOLD

    setting = next((s for s in program.settings if s.name == "integrator"), None)
    loc = setting.value_loc if setting is not None and options.integrator == getattr(
        setting.value, "text", None) else None
    facts = read_facts(system.hamiltonian)
    h_loc = program.system.hamiltonians[0].loc if program.system.hamiltonians else None
    if options.kahan and options.integrator in ("exact", "midpoint"):
        from tpc.passes.sym_kahan import EXACT, MIDPOINT

        kahan = next((s for s in program.settings if s.name == "kahan"), None)
        raise TpcError(EXACT if options.integrator == "exact" else MIDPOINT,
                       loc or (kahan.value_loc if kahan is not None else None))
    if options.integrator == "exact":
        if not options.fold:
            raise TpcError(EXACT_NEEDS_FOLD, loc or h_loc)
        if not facts.quadratic:
            raise TpcError("integrator 'exact' needs a quadratic H (a linear Hamiltonian "
                           f"vector field), but {facts.why or 'H is not quadratic'}", loc or h_loc)
        return
    if facts.separable or options.integrator == "midpoint":
        return
    part = next(p for p in system.parts if not read_facts(p).separable)
    where = _loc_of(part, program)
    notes = (f"{where}: the part @{part.part_name} couples q and p",) if loc and where else ()
    raise TpcError(
        f"integrator '{options.integrator}' splits H into kicks and drifts, but H is not "
        "separable (a term couples q and p), so the split would not be symplectic; "
        "use integrator = midpoint",
        loc or where, notes,
    )


def _loc_of(op, program: Program):
    from xdsl.dialects.builtin import FileLineColLoc

    from tpc.diagnostics import Loc

    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return Loc(loc.filename.data, loc.line.data, loc.column.data, program.source)
    return None
