"""The `tpc` command: compile, opt, passes, run."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from tpc.diagnostics import TpcError
from tpc.output import check_writable, write_text
from tpc.syntax import MAX_SOURCE_BYTES, decode_source, read_bytes

EMIT_STAGES = ("ham", "sym", "loops", "llvm", "ptx")  # the --emit ladder, in order


def _add_ir_dump_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print-ir-after-all", action="store_true", help="dump the IR after each pass")
    p.add_argument("--print-ir-after", default="", metavar="PASS[,PASS]",
                   help="dump the IR after the named passes")
    p.add_argument("--debuginfo", action="store_true", help="print source locations on ops")


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--integrator", help="override the simulate block's integrator")
    p.add_argument("--no-fold", action="store_true", help="never replace the time loop by a "
                   "matrix power, even for quadratic H")
    p.add_argument("--precision", choices=("f64", "f32"), default=None,
                   help="floating-point type of the state and of all generated arithmetic "
                   "(default: the simulate block's `precision`, else f64)")
    p.add_argument("--kahan", action=argparse.BooleanOptionalAction, default=None,
                   help="compensated (Kahan-Babuska-Neumaier) state updates: near-f64 long-run "
                   "accuracy at f32 cost (default: the simulate block's `kahan`, else off)")
    # None when not given (on), so that a resumed run can tell a flag that repeats its file's
    # setting from one that contradicts it.
    p.add_argument("--newton3", action=argparse.BooleanOptionalAction, default=None,
                   help="symmetric pair forces (each pair once) on the CPU (default on)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tpc", description="A compiler for Hamiltonian physics.")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a .ham file and emit one stage")
    c.add_argument("file")
    c.add_argument("--emit", default="ptx", choices=EMIT_STAGES)
    c.add_argument("-o", "--output", help="output file ('-' for stdout)")
    c.add_argument("--arch", default="sm_90", help="GPU architecture for --emit=ptx")
    c.add_argument("--remarks", action="store_true", help="explain the optimization decisions")
    c.add_argument("--shadow", action="store_true",
                   help="add the shadow Hamiltonian's leading term (dt^2, or dt^4 for a fourth-order scheme: sym-shadow) and its functions")
    c.add_argument("--tangent", action="store_true",
                   help="add the tangent map (sym-tangent, ham-derive-params): run_tangent")
    c.add_argument("--optimized", action="store_true",
                   help="with --emit=llvm: the IR after O3, as the JIT compiles it")
    _add_compile_options(c)
    _add_ir_dump_flags(c)

    o = sub.add_parser("opt", help="run passes on IR text, like xdsl-opt")
    o.add_argument("file", help="an .mlir file, or '-' for stdin")
    o.add_argument("-p", "--passes", default="", help="comma-separated pass pipeline")
    o.add_argument("-o", "--output", default="-")
    _add_ir_dump_flags(o)

    sub.add_parser("passes", help="list the passes with a one-line description")

    en = sub.add_parser("energy", help="H and its parts at the initial state (no stepping)")
    en.add_argument("file")
    en.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a param")
    en.add_argument("--init", help="initial state file (.json or .npz)")
    en.add_argument("--remarks", action="store_true")
    _add_compile_options(en)

    r = sub.add_parser("run", help="compile and run a simulation")
    r.add_argument("file")
    r.add_argument("--steps", type=int)
    r.add_argument("--dt", type=float)
    r.add_argument("--save-every", type=int)
    r.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a param")
    r.add_argument("--init", help="initial state file (.json or .npz)")
    r.add_argument("--resume", metavar="OUT.npz", help="continue the run that wrote OUT.npz, "
                   "bitwise as if uninterrupted (--steps N: N more steps)")
    r.add_argument("-o", "--output", help="output: .npz (atomic, the default: FILE.npz, or the "
                   "file resumed from), .h5 (HDF5, streamed as the run goes) or .xyz or .dcd "
                   "(particle positions)")
    r.add_argument("--compress", action="store_true", help="gzip the HDF5 datasets")
    r.add_argument("--ensemble", metavar="ENS.npz", help="run the members in ENS.npz (states "
                   "[B, ...], params and inputs per member or shared); writes batch-first "
                   "arrays")
    r.add_argument("--workers", type=int, help="with --ensemble: on a local Dask cluster of N "
                   "worker processes")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="with --ensemble: on the Dask "
                   "cluster of this scheduler")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default cpu")
    r.add_argument("--remarks", action="store_true")
    r.add_argument("--shadow", action="store_true",
                   help="evaluate the integrator's shadow Hamiltonian H + dt^2 H2 (order 4: "
                   "H + dt^4 H4) at snapshots "
                   "(saved as H_shadow), and report how much better it is conserved than H")
    r.add_argument("--check-invariants", type=float, metavar="TOL",
                   help="stop (exit 3) at the first snapshot where the energy or a proved "
                   "conserved quantity drifted by more than TOL (relative)")
    r.add_argument("--lyapunov", action="store_true",
                   help="also the maximal Lyapunov exponent and MEGNO of the run's orbit, by the "
                   "tangent map (printed; saved as lyapunov, lyapunov_t, lyapunov_history, "
                   "megno)")
    r.add_argument("--quiet", action="store_true")
    _add_compile_options(r)

    pl = sub.add_parser("plot", help="plot a run: relative energy error against t, phase "
                        "portraits")
    pl.add_argument("file", help="a tpc run output (.npz or .h5)")
    pl.add_argument("-o", "--output", help="the picture, .png or .pdf (default: FILE.png)")
    return ap


def _emit(path: str | None, text: str) -> None:
    """Write an output (stdout for None or '-'), atomically for a file."""
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        write_text(path, text)


def _check_output(path: str | None) -> None:
    if path not in (None, "-"):
        check_writable(path)


def cmd_opt(args: argparse.Namespace) -> int:
    from tpc.pipeline import PassRunner, parse_ir_text, print_ir

    _check_output(args.output)
    path = args.file
    text = _read_stdin() if path == "-" else _read(path)
    module, ir = parse_ir_text(text, path)
    runner = PassRunner(args.print_ir_after_all, _split(args.print_ir_after),
                        debuginfo=args.debuginfo, ir=ir)
    runner.run(module, args.passes)
    out = io.StringIO()
    print_ir(module, out, args.debuginfo)
    _emit(args.output, out.getvalue())
    return 0


def _read(path: str) -> str:
    return decode_source(read_bytes(path, f"'{path}'", MAX_SOURCE_BYTES), path, ".mlir")


def _read_stdin() -> str:
    data = sys.stdin.buffer.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise TpcError(f"cannot read stdin: larger than the limit of {MAX_SOURCE_BYTES >> 20} MiB")
    return decode_source(data, "-", ".mlir")


def _split(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def cmd_passes(args: argparse.Namespace) -> int:
    from tpc.registry import available_passes, pass_summary

    names = available_passes()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {pass_summary(name)}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from tpc import compiler

    out_path = args.output
    if out_path is None and args.emit == "ptx":
        out_path = str(Path(args.file).with_suffix(".ptx"))
    _check_output(out_path)
    options = compiler.options_from_args(args)
    result = compiler.compile_stage(args.file, args.emit, options, runner_args=args)
    if args.remarks:
        for line in result.remarks:
            print(line, file=sys.stderr)
    _emit(out_path, result.text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tpc import runner

    return runner.main(args)


def cmd_energy(args: argparse.Namespace) -> int:
    from tpc import energy

    return energy.main(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from tpc.plot import plot_file

    print(f"wrote {plot_file(args.file, args.output)}")
    return 0


COMMANDS = {"opt": cmd_opt, "passes": cmd_passes, "compile": cmd_compile, "run": cmd_run,
            "energy": cmd_energy, "plot": cmd_plot}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TpcError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
