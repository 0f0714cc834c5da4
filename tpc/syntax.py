"""The .ham front end: Lark grammar -> a small AST with a source location on every node."""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import lark

from tpc.diagnostics import Loc, TpcError, source_lines

# ------------------------------------------------------------------------------ AST


@dataclass
class Node:
    loc: Loc = field(repr=False, compare=False)


@dataclass
class Num(Node):
    value: float
    is_int: bool


@dataclass
class Name(Node):
    id: str


@dataclass
class BinOp(Node):
    op: str  # + - * / ^
    lhs: Node
    rhs: Node


@dataclass
class Neg(Node):
    operand: Node


@dataclass
class Call(Node):
    fn: str
    args: list[Node]


@dataclass
class Index(Node):
    array: str
    indices: list[Node]


@dataclass
class Reduction(Node):
    """sum(i: e), sum(i < j: e), sum(i != j: e), sum(i in a..b: e), or sum(e) (vars empty)."""

    vars: list[str]
    kind: str  # "all" | "index" | "lt" | "ne" | "range"
    body: Node
    lower: Node | None = None
    upper: Node | None = None


@dataclass
class Decl(Node):
    name: str


@dataclass
class ParamDecl(Decl):
    value: float


@dataclass
class ArrayDecl(Decl):
    shape: list[int | str]
    dim_locs: list[Loc]


@dataclass
class StateDecl(Node):
    q: ArrayDecl
    p: ArrayDecl


@dataclass
class LetDecl(Decl):
    expr: Node


@dataclass
class HDecl(Node):
    expr: Node


@dataclass
class ObserveDecl(Decl):
    """observe NAME = EXPR: computed at snapshots, saved by name."""

    expr: Node


@dataclass
class BoxDecl(Decl):
    lengths: list[float]  # one (cubic) or one per axis (orthorhombic)
    length_locs: list[Loc]


@dataclass
class Option(Node):
    """`name = value` after `cutoff` or `ewald`: a number or a bare word."""

    name: str
    value: float | str
    value_loc: Loc


@dataclass
class CutoffDecl(Decl):
    value: float
    options: list[Option]


@dataclass
class EwaldDecl(Node):
    options: list[Option]


@dataclass
class Setting(Decl):
    value: object  # float | int | str | list | Word
    value_loc: Loc


@dataclass(frozen=True)
class Word:
    """A bare identifier on the right of a simulate setting (`integrator = leapfrog`)."""

    text: str


@dataclass
class System(Node):
    name: str
    params: list[ParamDecl]
    inputs: list[ArrayDecl]
    states: list[StateDecl]
    lets: list[LetDecl]
    hamiltonians: list[HDecl]
    boxes: list[BoxDecl]
    cutoffs: list[CutoffDecl]
    ewalds: list[EwaldDecl]
    observes: list[ObserveDecl] = field(default_factory=list)


@dataclass
class Program:
    system: System
    settings: list[Setting]
    path: str
    source: str


# --------------------------------------------------------------------------- parsing

_GRAMMAR_PATH = Path(__file__).parent / "grammar.lark"
_PARSER: lark.Lark | None = None


def _parser() -> lark.Lark:
    """The LALR parser, built on first use; lark caches its tables (keyed by the grammar)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = lark.Lark(_GRAMMAR_PATH.read_text(), parser="lalr", propagate_positions=True,
                            maybe_placeholders=False, cache=True)
    return _PARSER

_TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "NAME": "a name",
    "NUMBER": "a number", "INT": "an integer", "STRING": "a string", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "COMPARE": "'<' or '!='",
    "$END": "end of file",
}


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(t, repr(t.lower()) if t.isupper() else t) for t in expected})
    if len(words) > 6:
        return ""
    return " (expected " + ", ".join(words) + ")"


class _Builder(lark.visitors.Transformer_NonRecursive):
    """Parse tree -> AST. Non-recursive: a 500-term sum is a 500-deep tree."""

    def __init__(self, path: str, source: str):
        super().__init__()
        self.path, self.source = path, source

    def loc(self, meta_or_token) -> Loc:
        return Loc(self.path, meta_or_token.line, meta_or_token.column, self.source)

    # numbers -------------------------------------------------------------
    def _number(self, tok: lark.Token) -> Num:
        text = str(tok).replace("_", "")
        # float() straight from the text: int() refuses more than 4,300 digits
        value = float(text)
        if not math.isfinite(value):
            raise TpcError(f"number {abbreviate(text)} is too large for a 64-bit float "
                           "(the largest is about 1.8e308)", self.loc(tok))
        return Num(self.loc(tok), value, text.isdigit())

    @lark.v_args(meta=True)
    def number(self, meta, children):
        return self._number(children[0])

    def pos_number(self, children):
        return self._number(children[0])

    @lark.v_args(meta=True)
    def neg_number(self, meta, children):
        n = self._number(children[0])
        return Num(self.loc(meta), -n.value, n.is_int)  # the location of the '-' sign

    # expressions ---------------------------------------------------------
    @lark.v_args(meta=True)
    def name(self, meta, children):
        return Name(self.loc(children[0]), str(children[0]))

    def _bin(op):  # noqa: N805 - a factory of transformer methods
        @lark.v_args(meta=True)
        def method(self, meta, children):
            lhs, rhs = children
            return BinOp(self.loc(meta), op, lhs, rhs)

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    @lark.v_args(meta=True)
    def neg(self, meta, children):
        return Neg(self.loc(meta), children[0])

    @lark.v_args(meta=True)
    def call(self, meta, children):
        fn, *args = children
        return Call(self.loc(fn), str(fn), [a for a in args if a is not None])

    @lark.v_args(meta=True)
    def index(self, meta, children):
        arr, *idx = children
        return Index(self.loc(arr), str(arr), idx)

    @lark.v_args(meta=True)
    def pair_sum(self, meta, children):
        i, cmp, j, body = children
        return Reduction(self.loc(meta), [str(i), str(j)], "lt" if cmp == "<" else "ne", body)

    @lark.v_args(meta=True)
    def index_sum(self, meta, children):
        i, body = children
        return Reduction(self.loc(meta), [str(i)], "index", body)

    @lark.v_args(meta=True)
    def range_sum(self, meta, children):
        i, lo, hi, body = children
        return Reduction(self.loc(meta), [str(i)], "range", body, lo, hi)

    @lark.v_args(meta=True)
    def full_sum(self, meta, children):
        return Reduction(self.loc(meta), [], "all", children[0])

    # declarations --------------------------------------------------------
    def dim_int(self, children):
        from tpc.limits import MAX_DIM

        tok = children[0]
        if len(tok) > len(str(MAX_DIM)) or int(tok) > MAX_DIM:  # int() refuses 4,300 digits
            raise TpcError(f"dimension {abbreviate(tok)} exceeds the limit of {MAX_DIM}",
                           self.loc(tok))
        return (int(tok), self.loc(tok))

    def dim_name(self, children):
        return (str(children[0]), self.loc(children[0]))

    def shape(self, children):
        return children

    def array_decl(self, children):
        name, dims = children
        return ArrayDecl(self.loc(name), str(name), [d for d, _ in dims], [dl for _, dl in dims])

    def param_item(self, children):
        name, num = children
        return ParamDecl(self.loc(name), str(name), num.value)

    def param_decl(self, children):
        return ("params", children)

    def input_decl(self, children):
        return ("inputs", children)

    @lark.v_args(meta=True)
    def state_decl(self, meta, children):
        return ("states", [StateDecl(self.loc(meta), *children)])

    def let_decl(self, children):
        name, expr = children
        return ("lets", [LetDecl(self.loc(name), str(name), expr)])

    @lark.v_args(meta=True)
    def h_decl(self, meta, children):
        return ("hamiltonians", [HDecl(self.loc(meta), children[0])])

    def observe_decl(self, children):
        name, expr = children
        return ("observes", [ObserveDecl(self.loc(name), str(name), expr)])

    @lark.v_args(meta=True)
    def box_decl(self, meta, children):
        name, *nums = children
        return ("boxes", [BoxDecl(self.loc(meta), str(name), [n.value for n in nums],
                                  [n.loc for n in nums])])

    @lark.v_args(meta=True)
    def cutoff_decl(self, meta, children):
        name, num, *options = children
        return ("cutoffs", [CutoffDecl(self.loc(meta), str(name), num.value, options)])

    @lark.v_args(meta=True)
    def ewald_decl(self, meta, children):
        return ("ewalds", [EwaldDecl(self.loc(meta), list(children))])

    def option(self, children):
        name, value = children
        if isinstance(value, Num):
            return Option(self.loc(name), str(name), value.value, value.loc)
        return Option(self.loc(name), str(name), str(value), self.loc(value))

    @lark.v_args(meta=True)
    def system(self, meta, children):
        name, *decls = children
        groups: dict[str, list] = {
            k: [] for k in ("params", "inputs", "states", "lets", "hamiltonians", "boxes",
                            "cutoffs", "ewalds", "observes")
        }
        for kind, items in decls:
            groups[kind].extend(items)
        return System(self.loc(name), str(name), **groups)

    # simulate ------------------------------------------------------------
    def string(self, children):
        return (str(children[0])[1:-1], self.loc(children[0]))

    def word(self, children):
        text = str(children[0])
        special = {"nan": math.nan, "inf": math.inf}
        value = special.get(text.lower(), Word(text))
        return (value, self.loc(children[0]))

    @lark.v_args(meta=True)
    def method(self, meta, children):
        # kept as text: tpc.passes.methods parses it, for the simulate block and --integrator
        return (Word(self.source[meta.start_pos:meta.end_pos]), self.loc(meta))

    @lark.v_args(meta=True)
    def list(self, meta, children):
        items = [c for c in children if c is not None]
        return ([self._plain(c) for c in items], self.loc(meta))

    def _plain(self, v):
        if isinstance(v, Num):
            return int(v.value) if v.is_int else v.value
        return v[0]

    def setting(self, children):
        name, value = children
        loc = value.loc if isinstance(value, Num) else value[1]
        return Setting(self.loc(name), str(name), self._plain(value), loc)

    def simulate(self, children):
        first: dict[str, Setting] = {}
        for s in children:
            if s.name in first:
                raise TpcError(f"'{s.name}' is set twice (first at {first[s.name].loc})", s.loc)
            first[s.name] = s
        return children

    def start(self, children):
        system, *rest = children
        return system, (rest[0] if rest else [])


def parse(source: str, path: str = "<input>") -> Program:
    from tpc import limits

    source = source.removeprefix("\ufeff")
    _check_characters(source, path)
    try:
        tree = _parser().parse(source)
        system, settings = _Builder(path, source).transform(tree)
    except lark.UnexpectedCharacters as e:
        loc = Loc(path, e.line, e.column, source)
        raise TpcError(f"unexpected character {source[e.pos_in_stream]!r}", loc) from None
    except lark.UnexpectedToken as e:
        if e.token.type == "$END":
            raise _end_of_file(source, path, e.expected) from None
        loc = Loc(path, e.token.line, e.token.column, source)
        raise TpcError(f"unexpected {abbreviate(str(e.token))!r}"
                       + _describe_expected(e.expected), loc) from None
    except lark.UnexpectedEOF as e:
        raise _end_of_file(source, path, set(e.expected)) from None
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, TpcError):
            raise e.orig_exc from None
        raise
    program = Program(system, settings, path, source)
    limits.check(program)
    return program


def _end_of_file(source: str, path: str, expected: set[str]) -> TpcError:
    lines = source_lines(source)
    if all(not ln.strip() or ln.lstrip().startswith("#") for ln in lines):
        return TpcError("the file is empty (expected 'system NAME { ... }')",
                        Loc(path, 1, 1, source))
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    loc = Loc(path, len(lines), len(lines[-1]) + 1, source)
    return TpcError("unexpected end of file" + _describe_expected(expected), loc)


def abbreviate(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-8:]} ({len(text)} characters)"


def loc_at(path: str, text: str, pos: int) -> Loc:
    """The location of character `pos`, counting lines the way the lexer does."""
    line_start = text.rfind("\n", 0, pos) + 1
    return Loc(path, text.count("\n", 0, pos) + 1, pos - line_start + 1, text)


# Tab, newline, carriage return and form feed are whitespace; any other control character
# means the file is not .ham text (a NUL is the usual sign of a binary file). A lone surrogate
# stands for a byte that is not UTF-8 (read_source decodes with "surrogateescape").
_BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\udc80-\udcff]")


def _check_characters(source: str, path: str) -> None:
    """The first character that cannot be in a .ham file, whichever kind it is."""
    m = _BAD_CHARACTER.search(source)
    if m is None:
        return
    c = m.group()
    shown = re.sub("[\ud800-\udfff]", "\ufffd", source)  # one for one: columns stay
    if "\udc80" <= c <= "\udcff":
        raise TpcError(f"invalid UTF-8 (byte 0x{ord(c) - 0xDC00:02X}); a .ham file must be UTF-8 "
                       "text", loc_at(path, shown, m.start()))
    raise TpcError(f"control character U+{ord(c):04X} in the source (a .ham file is text)",
                   loc_at(path, shown, m.start()))


MAX_SOURCE_BYTES = 16 << 20


def read_bytes(path: str | Path, what: str, limit: int, loc: Loc | None = None) -> bytes:
    """A regular file's bytes, at most `limit` of them; `what` names it in errors ("'f.ham'").
    A FIFO or a device would block or never end, so the type is checked before opening."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TpcError(f"cannot read {what}: not a regular file", loc)
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise TpcError(f"cannot read {what}: {e.strerror or e}", loc) from None
    if len(data) > limit:
        raise TpcError(f"cannot read {what}: larger than the limit of {limit >> 20} MiB",
                       loc)
    return data


def read_source(path: str | Path) -> str:
    """A .ham file's text; parse() reports its first byte that is not UTF-8 text."""
    return read_bytes(path, f"'{path}'", MAX_SOURCE_BYTES).decode("utf-8", "surrogateescape")


def decode_source(data: bytes, path: str, kind: str) -> str:
    """UTF-8 text, or an error at the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = data.decode("utf-8", errors="replace")
        loc = loc_at(path, shown, len(data[: e.start].decode("utf-8")))
        raise TpcError(f"invalid UTF-8 (byte 0x{data[e.start]:02X}); a {kind} file must be UTF-8 "
                       "text", loc) from None


def parse_file(path: str | Path) -> Program:
    return parse(read_source(path), str(path))
