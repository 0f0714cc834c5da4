"""Compile options and the stage functions behind `tpc compile --emit=...` and `tpc run`.

xDSL and the pipeline are imported by the functions that use them, not by this module: the
options and their resolution are read by a run from the compile cache, which needs no IR.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tpc.diagnostics import Loc, TpcError
from tpc.syntax import Program, Word

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

    from tpc import pipeline
    from tpc.dialects import ham

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
    shadow: bool = False  # the shadow Hamiltonian's dt^2 term, evaluated at snapshots
    project: str | None = ""  # "energy": project every step onto H = H0; None: the block's
    tangent: bool = False  # also the tangent map (run_tangent: sym-tangent, ham-derive-params)


def options_from_args(args) -> Options:
    return Options(
        integrator=getattr(args, "integrator", None),
        fold=not getattr(args, "no_fold", False),
        precision=getattr(args, "precision", None),
        newton3=getattr(args, "newton3", None) is not False,
        arch=getattr(args, "arch", "sm_90"),
        kahan=getattr(args, "kahan", None),
        shadow=bool(getattr(args, "shadow", False)),
        tangent=bool(getattr(args, "tangent", False)),
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
    if options.project is None or options.project == "":
        setting = settings.get("project")
        project = ""
        if setting is not None:
            value = setting.value
            project = value.text if isinstance(value, Word) else repr(value)
            if project != "energy":
                raise TpcError(f"project must be 'energy', got {project}", setting.value_loc)
            if options.kahan:
                raise TpcError("project = energy moves the state outside the compensated "
                               "updates of kahan; use one or the other", setting.value_loc)
        options = replace(options, project=project)
    return options


def resolve_integrator(program: Program, options: Options) -> Options:
    """The integrator from the command line, else the simulate block, else leapfrog, as the
    canonical text of its specification (tpc.passes.methods)."""
    from tpc.passes import methods

    text, loc = integrator_source(program, options.integrator)
    if text is None:
        return replace(options, integrator="leapfrog")
    try:
        spec = methods.parse(text)
        methods.check_names(spec)
    except methods.MethodError as e:
        raise TpcError(str(e), shifted(loc, text, e.offset)) from None
    return replace(options, integrator=str(spec))


def integrator_source(program: Program, given: str | None) -> tuple[str | None, Loc]:
    """The integrator's text as the user wrote it, and where it starts: the command line's
    `--integrator` (shown as its own one-line source) or the simulate block's setting."""
    setting = next((s for s in program.settings if s.name == "integrator"), None)
    if given is None and setting is not None:
        value = setting.value
        text = value.text if isinstance(value, Word) else str(value)
        return text, setting.value_loc
    if setting is not None and isinstance(setting.value, Word) and given is not None:
        from tpc.passes import methods

        try:
            if str(methods.parse(setting.value.text)) == given:
                return setting.value.text, setting.value_loc
        except methods.MethodError:
            pass
    return given, Loc("--integrator", 1, 1, given or "")


def located_at_integrator(e: TpcError, program: Program, options: Options) -> TpcError:
    """A lowering pass refuses the scheme (a flow a target cannot run): point at the
    integrator the user wrote, else at H."""
    if e.loc is not None:
        return e
    text, loc = integrator_source(program, options.integrator)
    if text is None:
        loc = program.system.hamiltonians[0].loc if program.system.hamiltonians else None
    return TpcError(e.message, loc, e.notes)


def shifted(base: Loc, text: str, offset: int) -> Loc:
    """The location of character `offset` of `text`, which starts at `base`."""
    before = text[:offset].split("\n")
    if len(before) == 1:
        return Loc(base.file, base.line, base.col + offset, base.source)
    return Loc(base.file, base.line + len(before) - 1, len(before[-1]) + 1, base.source)


def run_ham_passes(program, module: ModuleOp, runner: pipeline.PassRunner) -> None:
    """The ham-level passes; a refusal located in the .ham file shows its line and caret."""
    from tpc import pipeline

    try:
        runner.run(module, list(pipeline.HAM_PASSES))
    except TpcError as e:
        loc = e.loc
        if loc is not None and loc.source is None and loc.file == program.path:
            loc = Loc(loc.file, loc.line, loc.col, program.source)
        raise TpcError(e.message, loc, e.notes) from None


def ham_remarks(module: ModuleOp) -> list[str]:
    """ham-degree's facts, read back from the IR: the whole H, then each part."""
    from tpc.dialects import ham
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
        notes = system.attributes.get("notes")
        out += [f"remark: {n.data}" for n in (notes.data if notes is not None else ())]
        for part in system.parts:
            f = read_facts(part)
            deps = ", ".join(f.depends_on) or "nothing"
            out.append(f"remark: part @{part.part_name}: depends on {deps}; degree "
                       f"{f.degree_text}{'' if f.separable else '; couples q and p'}")
        from tpc.passes.ham_symmetry import remarks as symmetry_remarks

        out += symmetry_remarks(system)
    return out


def compile_stage(path: str, emit: str, options: Options, runner_args=None) -> StageResult:
    from tpc import pipeline

    runner = pipeline.PassRunner(
        getattr(runner_args, "print_ir_after_all", False),
        [x for x in getattr(runner_args, "print_ir_after", "").split(",") if x],
        debuginfo=getattr(runner_args, "debuginfo", False),
    )
    from tpc import lowering

    program, module = pipeline.frontend(path)
    options = resolve_options(program, options)
    run_ham_passes(program, module, runner)
    remarks = ham_remarks(module)
    if emit != "ham":
        check_integrator(program, lowering.system_of(module), options)
        try:
            module, more = lowering.lower(module, emit, options, runner)
        except TpcError as e:
            raise located_at_integrator(e, program, options) from None
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
    """Refuse, where the user wrote it, an integrator the system cannot have: a part it names
    that H does not have, parts that do not add up to H, an explicit splitting of a part that
    couples q and p (naming the part), the exact flow without folding or of a non-quadratic H."""
    from tpc.passes import methods
    from tpc.passes.ham_degree import read_facts
    from tpc.passes.sym_fold_linear import EXACT_NEEDS_FOLD
    from tpc.passes.sym_integrator import plan

    text, base = integrator_source(program, options.integrator)
    chosen = text is not None
    text = text or options.integrator or "leapfrog"
    loc = base if chosen else None
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

    def mixed(name: str, offset: int) -> TpcError:
        part = system.part(name)
        where = loc_of(part, program)
        at = shifted(loc, text, offset) if loc else None
        notes = (f"{where}: the part @{name} couples q and p",) if at and where else ()
        return TpcError(
            f"integrator '{options.integrator}' splits H into kicks and drifts, but part @{name} "
            "of H couples q and p (H is not separable), so the split would not be symplectic; use "
            "integrator = "
            "midpoint, or name the parts to flow (e.g. leapfrog(A, B): a part of both is then "
            "flowed by the implicit midpoint rule)", at or where or h_loc, notes)

    try:
        plan(system, methods.parse(text), mixed)
    except methods.MethodError as e:
        raise TpcError(str(e), shifted(base, text, e.offset)) from None


def loc_of(op, program: Program):
    """The source location of an op, with the source text for the caret (None if it has none)."""
    from xdsl.dialects.builtin import FileLineColLoc

    from tpc.diagnostics import Loc

    loc = op.location
    if isinstance(loc, FileLineColLoc):
        return Loc(loc.filename.data, loc.line.data, loc.column.data, program.source)
    return None
