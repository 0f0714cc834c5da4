"""The compilation ladder, one readable function per stage, each stage's IR kept for dumping.

    .ham --parse/irgen--> ham --ham-degree, ham-derive--> ham+gradients
         --sym-integrator, sym-fuse-stages[, sym-fold-linear]--> sym
         --sym-lower-loops--> func/scf/memref/arith/math --convert-*-to-llvm--> llvm
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from xdsl.dialects.builtin import FileLineColLoc, ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import (
    ArgSpecParseError,
    ParseError,
    PassFailedException,
    VerifyException,
)

from tpc import irgen, registry, syntax
from tpc.diagnostics import Loc, TpcError


def print_ir(module: Operation, out: TextIO, debuginfo: bool = False) -> None:
    Printer(stream=out, print_debuginfo=debuginfo).print_op(module)
    out.write("\n")


def parse_ir(text: str, path: str) -> ModuleOp:
    try:
        module = Parser(registry.context(), text, path).parse_module()
    except ParseError as e:
        line, col = _span_line_col(e, text)
        raise TpcError(_first_line(e), Loc(path, line, col, text)) from None
    verify(module, text, path)
    return module


def _span_line_col(e: ParseError, text: str) -> tuple[int, int]:
    start = e.span.start
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col


def _first_line(e: Exception) -> str:
    msg = getattr(e, "msg", None) or str(e)
    return msg.strip().splitlines()[-1].strip() if msg.strip() else type(e).__name__


def verify(module: Operation, text: str | None = None, path: str = "<ir>") -> None:
    try:
        module.verify()
    except VerifyException as e:
        raise TpcError(f"invalid IR: {_verify_message(e)}", _op_loc(e, text)) from None


def _verify_message(e: VerifyException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith((" ", "^"))]
    return lines[0] if lines else str(e)


def _op_loc(e: VerifyException, text: str | None) -> Loc | None:
    op = getattr(e, "op", None)
    loc = getattr(op, "location", None)
    if isinstance(loc, FileLineColLoc):
        return Loc(loc.filename.data, loc.line.data, loc.column.data, text)
    return None


@dataclass
class PassRunner:
    """Runs named passes over a module, dumping IR after each one when asked."""

    print_after_all: bool = False
    print_after: Sequence[str] = ()
    dump: TextIO = field(default_factory=lambda: sys.stderr)
    debuginfo: bool = False

    def run(self, module: ModuleOp, spec: str | Sequence[str]) -> ModuleOp:
        from xdsl.passes import ModulePass, PassPipeline
        from xdsl.utils.arg_spec import parse_pipeline

        text = spec if isinstance(spec, str) else ",".join(spec)
        if not text:
            return module
        available = registry.all_passes()
        try:
            parsed = list(parse_pipeline(text))
        except (ArgSpecParseError, ParseError) as e:
            raise TpcError(f"bad pass pipeline '{text}': {_first_line(e)}") from None
        for p in parsed:
            if p.name not in available:
                raise TpcError(f"unknown pass '{p.name}' (see 'tpc passes')")
        passes = [available[p.name]().from_pass_spec(p) for p in parsed]
        ctx = registry.context()

        # xDSL calls back as (pass that just ran, module, pass about to run): once
        # before the first pass with nothing behind it, and once after the last pass
        # with nothing ahead. Dump under the name of the pass that just ran, and make
        # sure the last pass is dumped even on an xDSL that skips the final call.
        dumped: list[ModulePass] = []

        def callback(previous: ModulePass | None, module_op: ModuleOp, _next: object) -> None:
            if previous is not None:
                dumped.append(previous)
                self._dump_after(previous.name, module_op)

        try:
            PassPipeline(tuple(passes), callback).apply(ctx, module)
        except PassFailedException as e:
            raise TpcError(_first_line(e)) from None
        if not dumped or dumped[-1] is not passes[-1]:
            self._dump_after(passes[-1].name, module)
        verify(module)
        return module

    def wants_dump(self, name: str) -> bool:
        return self.print_after_all or name in self.print_after

    def _dump_after(self, name: str, module: ModuleOp) -> None:
        if self.wants_dump(name):
            self.dump.write(f"// -----// IR Dump After {name} //----- //\n")
            print_ir(module, self.dump, self.debuginfo)


# The ham-level passes every compilation runs before the integrator is chosen: the facts of
# each part, then the split of separable parts that read both q and p.
HAM_PASSES = ("ham-degree", "ham-split-parts")


def frontend(path_or_source: str, path: str | None = None) -> tuple[syntax.Program, ModuleOp]:
    """Parse a .ham file (or source text) and generate its `ham` IR."""
    if path is None:
        program = syntax.parse_file(path_or_source)
    else:
        program = syntax.parse(path_or_source, path)
    return program, irgen.generate(program)

