"""The compilation ladder, one readable function per stage, each stage's IR kept for dumping.

    .ham --parse/irgen--> ham --ham-degree, ham-derive--> ham+gradients
         --sym-integrator, sym-fuse-stages[, sym-fold-linear]--> sym
         --sym-lower-loops--> func/scf/memref/arith/math --convert-*-to-llvm--> llvm
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from xdsl.dialects.builtin import FileLineColLoc, ModuleOp
from xdsl.ir import BlockArgument, Operation, OpResult, Region, SSAValue
from xdsl.irdl.dominance import DominanceInfo
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


# Regions, attributes and types: the xDSL parser, verifier and printer recurse a dozen frames a
# level, and tpc's own IR stays below 30 levels.
MAX_IR_NESTING = 64

# The MLIR lexer's string regex backtracks exponentially on a string it cannot close, so every
# string is checked first with an equivalent one that cannot (one character per step). Comments
# are matched too, so that a quote inside one is not taken for a string, and so is the arrow of
# a function type, so that its '>' is not taken for a closing bracket.
_IR_TOKEN = re.compile(
    r'//[^\n]*|"(?:[^"\\\n\v\f]|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"|"|->|[{}()\[\]<>]'
)
_OPENERS, _CLOSERS = "{([<", "})]>"


@dataclass
class IrText:
    """The IR text a module was parsed from, and where each of its ops starts in it, so that
    errors about ops without a location (a verifier's, a pass's refusal) point into it."""

    text: str
    path: str
    op_starts: dict[Operation, int]

    def loc(self, op: Operation | None) -> Loc | None:
        return _op_loc(op, self.text, self.path, self.op_starts)


def parse_ir(text: str, path: str) -> ModuleOp:
    return parse_ir_text(text, path)[0]


def parse_ir_text(text: str, path: str) -> tuple[ModuleOp, IrText]:
    """The module of an IR text, and the text with the ops' places in it."""
    _prescan_ir(text, path)
    parser: _SpanParser | None = None
    try:
        parser = _SpanParser(registry.context(), text, path)
        module = parser.parse_module()
    except ParseError as e:
        raise TpcError(_first_line(e), _offset_loc(path, text, _error_offset(e, text))) from None
    # Op and attribute constructors run while parsing, and each dialect raises its own exception
    # types for values it refuses (VerifyException, ValueError, AssertionError, KeyError...).
    except Exception as e:
        at = parser.in_progress[-1] if parser is not None and parser.in_progress else 0
        raise TpcError(f"invalid IR: {_first_line(e)}", _offset_loc(path, text, at)) from None
    verify(module, text, path, parser.op_starts)
    return module, IrText(text, path, parser.op_starts)


class _SpanParser(Parser):
    """Remembers where each op starts in the text, for errors about ops with no location."""

    def __init__(self, ctx, text: str, path: str):
        self.op_starts: dict[Operation, int] = {}
        self.in_progress: list[int] = []  # the starts of the ops being parsed, innermost last
        super().__init__(ctx, text, path)

    def parse_operation(self) -> Operation:
        self.in_progress.append(self._current_token.span.start)
        op = super().parse_operation()
        self.op_starts[op] = self.in_progress.pop()
        return op


def _prescan_ir(text: str, path: str) -> None:
    depth = 0
    for m in _IR_TOKEN.finditer(text):
        tok = m.group()
        if tok == '"':
            raise TpcError("unterminated string literal (or an invalid escape in it)",
                           _offset_loc(path, text, m.start()))
        if tok in _OPENERS:
            depth += 1
            if depth > MAX_IR_NESTING:
                raise TpcError(f"IR nested deeper than {MAX_IR_NESTING} levels",
                               _offset_loc(path, text, m.start()))
        elif tok in _CLOSERS:
            depth = max(0, depth - 1)


def _offset_loc(path: str, text: str, pos: int) -> Loc:
    return Loc(path, text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1, text)


def _error_offset(e: ParseError, text: str) -> int:
    """Where a parse error is; values never defined are reported at the end of the text, so
    point at the first use of the first of them instead."""
    m = re.match(r"values used but not defined: \[%([^,\]]+)", _first_line(e))
    use = re.search("%" + re.escape(m.group(1)) + r"(?![\w$.-])", text) if m else None
    return use.start() if use else e.span.start


def _first_line(e: Exception) -> str:
    msg = getattr(e, "msg", None) or str(e)
    return msg.strip().splitlines()[-1].strip() if msg.strip() else type(e).__name__


def verify(module: Operation, text: str | None = None, path: str = "<ir>",
           op_starts: dict[Operation, int] | None = None) -> None:
    """Check that every value is defined before it is used, then verify every op. An error
    names the op, at its source location, else at its place in `text` (`op_starts`). Dominance
    comes first: verifiers assume it, and fail obscurely on values defined later."""
    bad = _use_before_def(module)
    if bad is not None:
        op, index = bad
        raise TpcError(f"invalid IR: operand {index} of '{op.name}' is used before it is defined "
                       "(or outside its scope)", _op_loc(op, text, path, op_starts))
    try:
        module.verify()
    # Verifiers raise VerifyException; the structural checks of xDSL raise ValueError.
    except (VerifyException, ValueError) as e:
        op, message = _failing_op(module, e)
        raise TpcError(f"invalid IR: {message}", _op_loc(op, text, path, op_starts)) from None


def _failing_op(module: Operation, e: Exception) -> tuple[Operation | None, str]:
    """The first op that fails its own checks (module.verify does not say which one did)."""
    for op in module.walk():
        try:
            op.verify(verify_nested_ops=False)
        except (VerifyException, ValueError) as inner:
            message = _verify_message(inner)
            return op, message if op.name in message else f"{message} (in {op.name})"
    return None, _verify_message(e)


def _verify_message(e: Exception) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith((" ", "^"))]
    text = lines[0] if lines else type(e).__name__
    return text.removeprefix("Operation does not verify: ")


def _op_loc(op: Operation | None, text: str | None, path: str,
            op_starts: dict[Operation, int] | None) -> Loc | None:
    loc = getattr(op, "location", None)
    if isinstance(loc, FileLineColLoc):
        return Loc(loc.filename.data, loc.line.data, loc.column.data, text)
    if op is not None and text is not None and op_starts and op in op_starts:
        return _offset_loc(path, text, op_starts[op])
    return None


def _use_before_def(module: Operation) -> tuple[Operation, int] | None:
    """An op with an operand that does not dominate it, and the operand's index. xDSL does not
    check this, and a pass that meets such a value fails with a KeyError far from the cause."""
    order: dict[Operation, int] = {}
    dominance: dict[Region, DominanceInfo] = {}
    for block in module.walk_blocks():
        for k, op in enumerate(block.ops):
            order[op] = k
    for op in module.walk():
        for index, value in enumerate(op.operands):
            if not _dominates(value, op, order, dominance):
                return op, index
    return None


def _dominates(value: SSAValue, user: Operation, order: dict[Operation, int],
               dominance: dict[Region, DominanceInfo]) -> bool:
    if isinstance(value, OpResult):
        def_block, def_op = value.owner.parent, value.owner
    elif isinstance(value, BlockArgument):
        def_block, def_op = value.owner, None
    else:
        return False
    if def_block is None:
        return False
    cur: Operation | None = user
    while cur is not None and (block := cur.parent) is not None:
        if block is def_block:
            return def_op is None or order[def_op] < order[cur]
        region = block.parent
        if region is not None and region is def_block.parent:
            info = dominance.get(region)
            if info is None:  # (not setdefault: it would build the analysis on every call)
                info = dominance[region] = DominanceInfo(region)
            return info.dominates(def_block, block)
        cur = region.parent if region is not None else None
    return False


@dataclass
class PassRunner:
    """Runs named passes over a module, dumping IR after each one when asked."""

    print_after_all: bool = False
    print_after: Sequence[str] = ()
    dump: TextIO = field(default_factory=lambda: sys.stderr)
    debuginfo: bool = False
    ir: IrText | None = None  # the text the module came from, to point refusals into it

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
        try:
            passes = [available[p.name]().from_pass_spec(p) for p in parsed]
        except ValueError as e:  # an unknown option, or a value of the wrong type
            raise TpcError(f"bad pass pipeline '{text}': {_first_line(e)}") from None
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
            raise self._refusal(e) from None
        if not dumped or dumped[-1] is not passes[-1]:
            self._dump_after(passes[-1].name, module)
        verify(module)
        return module

    def _refusal(self, e: PassFailedException) -> TpcError:
        """A pass's refusal, at the op it refused (tpc.passes.refusal) when it says which:
        its place in the IR text read, else its source location; the message names it."""
        message = _first_line(e)
        op = getattr(e, "op", None)
        if op is None:
            return TpcError(message)
        if op.name not in message:
            message = f"{message} (in {op.name})"
        loc = self.ir.loc(op) if self.ir is not None else _op_loc(op, None, "<ir>", None)
        return TpcError(message, loc)

    def wants_dump(self, name: str) -> bool:
        return self.print_after_all or name in self.print_after

    def _dump_after(self, name: str, module: ModuleOp) -> None:
        if self.wants_dump(name):
            self.dump.write(f"// -----// IR Dump After {name} //----- //\n")
            print_ir(module, self.dump, self.debuginfo)


# The ham-level passes every compilation runs before the integrator is chosen: a periodic
# box's Ewald sums and minimum images (they rewrite H, so they come before any fact), the
# facts of each part, the split of separable parts that read both q and p, the Kepler-form
# and magnetic-form parts, then the symmetries (on the parts as split) and their conserved
# quantities.
HAM_PASSES = ("ham-ewald", "ham-periodic", "ham-degree", "ham-split-parts", "ham-kepler",
              "ham-magnetic", "ham-symmetry")


def frontend(path_or_source: str, path: str | None = None) -> tuple[syntax.Program, ModuleOp]:
    """Parse a .ham file (or source text) and generate its `ham` IR."""
    if path is None:
        program = syntax.parse_file(path_or_source)
    else:
        program = syntax.parse(path_or_source, path)
    return program, irgen.generate(program)

